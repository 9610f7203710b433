"""scikit-learn estimators trained by fastnn: ``MLPClassifier`` and ``MLPRegressor``.

They take scikit-learn's constructor parameters for its MLP estimators (same names, defaults
and meaning) plus fastnn's own (``dropout``, ``batch_norm``, ``device``, ``dtype``, ``precision``, any
fastnn optimizer as ``solver``), and pass ``sklearn.utils.estimator_checks.check_estimator``, so they
work in ``Pipeline``, ``GridSearchCV``, ``RandomizedSearchCV`` and ``cross_val_score``.
Underneath, each is a ``fastnn.Sequential`` trained by a ``fastnn.Trainer`` one epoch at a time.

The loss is scikit-learn's: the mean over samples of log-loss (summed over the outputs of a
multi-label problem) or half the mean squared error, plus ``alpha / (2 n_batch) * sum ||W||^2``
for each minibatch of ``n_batch`` rows (weights only, not biases). What differs from
scikit-learn: ``solver='lbfgs'`` is not available (a ValueError says so; ``max_fun`` is
checked and otherwise unused, as scikit-learn does for its other solvers), 'poisson' loss is
not available, the weights start Glorot-uniform as scikit-learn's but the biases at zero, and a
pickled estimator keeps its weights but not its optimizer state (``partial_fit`` after
unpickling starts a fresh optimizer).

Needs scikit-learn (``pip install fastnn[sklearn]``); ``import fastnn`` never imports it.
"""

from __future__ import annotations

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a test with sklearn hidden
    raise ImportError("fastnn.sklearn needs scikit-learn; install it with pip install 'fastnn[sklearn]'.") from exc

import numbers
import sys
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from ._checks import check_choice, check_dtype_name, check_float, check_int
from .backends.base import ACTIVATIONS, PRECISIONS
from .data import _check_bool
from .layers import Activation, BatchNorm, Dense, Dropout
from .losses import MSE, BinaryCrossEntropy, CrossEntropy
from .model import Sequential
from .optim import OPTIMIZERS, SGD, Adam, get_optimizer
from .trainer import Trainer

#: scikit-learn's activation names -> fastnn's (fastnn's own names are accepted too)
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
#: scikit-learn initialises every layer with Glorot's uniform rule
_INIT = "xavier_uniform"
_OUT_ACTIVATIONS = {"softmax": "softmax", "logistic": "sigmoid", "identity": None}


class _HalfMSE(MSE):
    """scikit-learn's squared loss: mean((pred - y)^2) / 2 over every element."""

    def count(self, n_samples, n_out):
        return 2 * n_samples * n_out


class _SampleBCE(BinaryCrossEntropy):
    """scikit-learn's binary log-loss: summed over the outputs, averaged over the samples."""

    per_element = False


class _BaseMLP(BaseEstimator):
    """Shared fitting loop of MLPClassifier and MLPRegressor (see the module docstring)."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dropout=0.0, batch_norm=False, device="cpu",
                 dtype=None, precision="fp32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.device = device
        self.dtype = dtype
        self.precision = precision

    # ------------------------------------------------------------ parameters
    def _check_params(self):
        """Check every constructor parameter, as scikit-learn does at fit time."""
        owner = type(self).__name__
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        sizes = [check_int(owner, "each hidden_layer_sizes entry", h, low=1) for h in sizes]
        if self.activation not in _ACTIVATIONS:
            check_choice(owner, "activation", self.activation, (*_ACTIVATIONS, *(a for a in ACTIVATIONS if a
                                                                                 not in ("softmax", "sigmoid"))))
        if self.solver == "lbfgs":
            raise ValueError(f"{owner}: solver 'lbfgs' is not available in fastnn (it trains by minibatch "
                             f"gradient descent); use solver='adam' or 'sgd', or another fastnn optimizer name.")
        check_choice(owner, "solver", self.solver, tuple(OPTIMIZERS))
        check_float(owner, "alpha", self.alpha, low=0.0)
        if self.batch_size != "auto":
            check_int(owner, "batch_size", self.batch_size, low=1)
        check_choice(owner, "learning_rate", self.learning_rate, ("constant", "invscaling", "adaptive"))
        check_float(owner, "learning_rate_init", self.learning_rate_init, low=0.0, low_open=True)
        check_float(owner, "power_t", self.power_t, low=0.0)
        check_int(owner, "max_iter", self.max_iter, low=1)
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping", "batch_norm"):
            _check_bool(owner, name, getattr(self, name))
        check_float(owner, "tol", self.tol, low=0.0)
        check_float(owner, "momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_float(owner, "validation_fraction", self.validation_fraction, low=0.0, high=1.0, high_open=True)
        for name in ("beta_1", "beta_2"):
            check_float(owner, name, getattr(self, name), low=0.0, high=1.0, high_open=True)
        check_float(owner, "epsilon", self.epsilon, low=0.0, low_open=True)
        check_int(owner, "n_iter_no_change", self.n_iter_no_change, low=1)
        check_int(owner, "max_fun", self.max_fun, low=1)
        check_float(owner, "dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        if self.dtype is not None:
            check_dtype_name(owner, self.dtype)
        check_choice(owner, "precision", self.precision, PRECISIONS)
        if self.precision == "bf16" and self.dtype is not None and np.dtype(self.dtype) != np.float32:
            raise ValueError(f"{owner}: precision='bf16' trains a float32 model; got dtype={self.dtype!r}. Leave "
                             f"dtype unset (float32 under bf16) or set dtype='float32'.")
        return sizes

    def _make_optimizer(self):
        """The fastnn optimizer for ``solver`` (SGD and Adam take scikit-learn's options)."""
        lr = self.learning_rate_init
        if self.solver == "sgd":
            return SGD(lr, momentum=self.momentum, nesterov=self.nesterovs_momentum and self.momentum > 0)
        if self.solver == "adam":
            return Adam(lr, betas=(self.beta_1, self.beta_2), eps=self.epsilon)
        return get_optimizer(self.solver, lr=lr, owner=type(self).__name__)

    def _make_model(self, sizes, n_in, n_out, dtype, seed):
        act = _ACTIVATIONS.get(self.activation, self.activation)
        act = None if act == "identity" else act
        layers = []
        for h in sizes:
            if self.batch_norm:
                layers += [Dense(h, init=_INIT), BatchNorm()] + ([Activation(act)] if act else [])
            else:
                layers.append(Dense(h, activation=act, init=_INIT))
            if self.dropout:
                layers.append(Dropout(self.dropout))
        layers.append(Dense(n_out, activation=_OUT_ACTIVATIONS[self.out_activation_], init=_INIT))
        return Sequential(layers, input_dim=n_in, seed=seed, device=self.device, dtype=dtype)

    def _make_trainer(self, n_samples, seed):
        owner = type(self).__name__
        if self.batch_size == "auto":
            bs = min(200, n_samples)
        else:
            bs = self.batch_size
            if bs > n_samples:
                warnings.warn(f"{owner}: batch_size {bs} is larger than the {n_samples} samples; it is clipped.",
                              UserWarning, stacklevel=3)
                bs = n_samples
        loss = {"softmax": CrossEntropy(), "logistic": _SampleBCE(), "identity": _HalfMSE()}[self.out_activation_]
        # scikit-learn adds alpha / (2 n_batch) ||W||^2 to each batch's mean loss
        return Trainer(self.model_, loss, self._make_optimizer(), batch_size=bs, l2=self.alpha / (2 * bs),
                       shuffle=self.shuffle, seed=seed, precision=self.precision)

    # ------------------------------------------------------------ fitting
    def _fit(self, X, y, incremental=False):
        sizes = self._check_params()
        first = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first)
        targets = self._encode(y)
        rng = check_random_state(self.random_state)
        if first:
            dtype = self.dtype if self.dtype is not None else (  # float32 or float64 (validate_data)
                np.float32 if self.precision == "bf16" else X.dtype)
            self.n_outputs_ = targets.shape[1] if self.out_activation_ != "softmax" else len(self.classes_)
            self.model_ = self._make_model(sizes, X.shape[1], self.n_outputs_, dtype, int(rng.randint(2 ** 31)))
            self.n_layers_ = len(sizes) + 2
            self.n_iter_, self.t_ = 0, 0
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_, self.validation_scores_, self.best_validation_score_ = np.inf, None, None
        if self.early_stopping and incremental:
            raise ValueError(f"{type(self).__name__}.partial_fit: early_stopping=True is not supported; it needs "
                             f"whole epochs over one training set (use fit).")
        early = self.early_stopping
        if early:
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            X, X_val, targets, y_val = train_test_split(X, targets, random_state=rng,
                                                        test_size=self.validation_fraction, stratify=stratify)
            if len(X_val) < 2:
                raise ValueError(f"{type(self).__name__}: the validation set is too small ({len(X_val)} samples); "
                                 f"increase validation_fraction or the size of the data.")
            y_val = self._decode_targets(y_val)
            if self.validation_scores_ is None:  # warm start from a fit without early stopping
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
            best = self.model_.get_weights()
        if first or not incremental or getattr(self, "_trainer", None) is None:
            # a new optimizer for every fit, kept across partial_fit calls, as scikit-learn
            self._trainer = self._make_trainer(len(X), int(rng.randint(2 ** 31)))
            self._lr_scale = 1.0
        model_dtype = self.model_.dtype
        X = np.ascontiguousarray(X, dtype=model_dtype)
        targets = np.ascontiguousarray(targets) if self.out_activation_ == "softmax" else \
            np.ascontiguousarray(targets, dtype=model_dtype)
        trainer = self._trainer
        self.n_iter_ = 0  # epochs of this call, as scikit-learn counts them
        try:
            for _ in range(self.max_iter):
                # scikit-learn's rates act for solver='sgd' only
                trainer.optimizer.lr_scale = self._lr_scale if self.solver == "sgd" else 1.0
                history = trainer.fit(X, targets, epochs=1, verbose=0)
                self.n_iter_ += 1
                self.t_ += len(X)
                self.loss_ = history["loss"][-1]
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}", file=sys.stdout)
                if early:
                    score = self._score_arrays(X_val, y_val)
                    self.validation_scores_.append(score)
                    improved = score >= self.best_validation_score_ + self.tol
                    if score > self.best_validation_score_:
                        self.best_validation_score_ = score
                        best = self.model_.get_weights()
                else:
                    improved = self.loss_ <= self.best_loss_ - self.tol
                    self.best_loss_ = min(self.best_loss_, self.loss_)
                self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
                if self.learning_rate == "invscaling":  # learning_rate_init / (samples seen + 1)^power_t
                    self._lr_scale = 1.0 / (self.t_ + 1) ** self.power_t
                if self._no_improvement_count > self.n_iter_no_change:
                    if self.verbose:
                        print(f"{'Validation score' if early else 'Training loss'} did not improve more than "
                              f"tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs.", file=sys.stdout)
                    # 'adaptive': divide the rate by 5 instead of stopping, until it is at most 1e-6
                    if self.solver != "sgd" or self.learning_rate != "adaptive" or \
                            self.learning_rate_init * self._lr_scale <= 1e-6:
                        break
                    self._lr_scale /= 5.0
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                                  f"optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", UserWarning, stacklevel=3)
        if early:
            self.model_.set_weights(best)
        self._export_weights()
        return self

    def _export_weights(self):
        """coefs_ and intercepts_ as scikit-learn shapes them: (n_in, n_out) and (n_out,)."""
        dense = [layer for layer in self.model_.layers if isinstance(layer, Dense)]
        self.coefs_ = [w for w, _ in (layer.weights for layer in dense)]
        self.intercepts_ = [b for _, b in (layer.weights for layer in dense)]

    def fit(self, X, y):
        """Fit the model to data matrix X and target(s) y; returns self.

        Trains up to ``max_iter`` epochs, stopping when the training loss (or, with
        ``early_stopping``, the validation score) has not improved by ``tol`` for
        ``n_iter_no_change`` consecutive epochs; a ConvergenceWarning says when it did not stop.
        """
        return self._fit(X, y, incremental=False)

    # ------------------------------------------------------------ predicting
    def _forward(self, X):
        """The model's output for validated X: thread-safe, as Sequential.predict (per-thread
        workspaces), so predict/predict_proba/score may run from several threads at once."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.model_.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------ pickling
    def __getstate__(self):
        # the model travels as its weights (NumPy arrays) and is rebuilt on unpickling, so that
        # no backend or device buffer is pickled; the optimizer state is not kept
        state = dict(self.__dict__)
        model = state.pop("model_", None)
        state.pop("_trainer", None)
        if model is not None:
            state["_weights"] = model.get_weights()
            state["_model_spec"] = (model.input_dim, model.dtype.name, model.seed)
        return state

    def __setstate__(self, state):
        weights = state.pop("_weights", None)
        spec = state.pop("_model_spec", None)
        self.__dict__.update(state)
        if weights is not None:
            n_in, dtype, seed = spec
            self.model_ = self._make_model(self._check_params(), n_in, self.n_outputs_, dtype, seed)
            self.model_.set_weights(weights)
            self._trainer = None


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: softmax (multi-class), logistic (binary or
    multi-label) outputs trained on log-loss, with scikit-learn's interface.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (100,)
        Width of each hidden layer, >= 1.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default 'relu'
        Hidden activation; fastnn's names ('gelu', 'elu', ...) are accepted too.
    solver : {'adam', 'sgd'} or a fastnn optimizer name, default 'adam'
        'sgd' is SGD with ``momentum`` and ``nesterovs_momentum``; 'adam' takes ``beta_1``,
        ``beta_2``, ``epsilon``; other names ('rmsprop', 'adamw', 'nadam', ...) use fastnn's
        defaults with ``learning_rate_init``. 'lbfgs' is not available (ValueError).
    alpha : float, default 1e-4, >= 0
        L2 penalty, scikit-learn's scaling: alpha / (2 n_batch) * sum ||W||^2 per minibatch.
    batch_size : int or 'auto', default 'auto' (min(200, n_samples))
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default 'constant'
        For solver='sgd' only, as scikit-learn: 'invscaling' uses learning_rate_init /
        (samples seen + 1)^power_t, 'adaptive' divides the rate by 5 whenever the loss (or
        validation score) stalls for n_iter_no_change epochs, stopping below 1e-6.
    learning_rate_init : float, default 1e-3, > 0
    power_t : float, default 0.5
    max_iter : int, default 200
        Epochs (for 'sgd'/'adam', as in scikit-learn).
    shuffle, random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
    early_stopping, validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun :
        As in scikit-learn's MLPClassifier (max_fun is checked and unused: it is for lbfgs).
    dropout : float, default 0, in [0, 1)
        fastnn: a Dropout layer of this rate after each hidden layer.
    batch_norm : bool, default False
        fastnn: Dense -> BatchNorm -> activation in each hidden layer.
    device : {'cpu', 'cuda', 'reference'}, default 'cpu'
    dtype : {'float32', 'float64'} or None, default None (the dtype of X: float32 stays float32)

    Attributes: ``classes_``, ``loss_`` (the last epoch's), ``best_loss_``, ``loss_curve_``, ``validation_scores_``,
    ``best_validation_score_``, ``t_``, ``coefs_``, ``intercepts_``, ``n_features_in_``,
    ``feature_names_in_``, ``n_iter_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``,
    ``model_`` (the fastnn.Sequential).

    >>> from fastnn.sklearn import MLPClassifier
    >>> import fastnn as fnn
    >>> X, y = fnn.datasets.load_iris()
    >>> clf = MLPClassifier((16,), max_iter=300, learning_rate_init=0.01, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32), multi_output=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        multilabel = type_of_target(y).startswith("multilabel")
        if reset:
            if incremental and not multilabel:
                if getattr(self, "_partial_classes", None) is None:
                    raise ValueError("MLPClassifier.partial_fit: classes must be given on the first call; "
                                     "pass classes=np.unique(y_all).")
                self._label_binarizer = LabelBinarizer().fit(self._partial_classes)
            else:
                self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
            if len(self.classes_) < 2 and not multilabel:
                raise ValueError(f"MLPClassifier: y has one class ({self.classes_.tolist()[0]!r}); a classifier needs "
                                 f"at least 2 classes.")
            self.out_activation_ = "logistic" if multilabel or len(self.classes_) == 2 else "softmax"
        unseen = np.setdiff1d(unique_labels(y), self.classes_) if not multilabel else []
        if len(unseen) or (multilabel and y.shape[1] != len(self.classes_)):
            raise ValueError(f"MLPClassifier: y holds labels {np.asarray(unseen).tolist()[:5]} that are not in "
                             f"classes_ = {self.classes_.tolist()}; give every label in classes= on the first "
                             f"partial_fit, or refit without warm_start.")
        return X, y

    def _encode(self, y):
        """Training targets: int labels (softmax) or 0/1 columns (logistic)."""
        if self.out_activation_ == "softmax":
            return np.searchsorted(self.classes_, y).astype(np.int64)
        return self._label_binarizer.transform(y).astype(np.float64)

    def _decode_targets(self, targets):
        """Validation labels in the user's coding, from encoded training targets."""
        if self.out_activation_ == "softmax":
            return self.classes_[targets]
        return self._label_binarizer.inverse_transform(targets)

    def _score_arrays(self, X, y):
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self._predict_encoded(self.model_.predict(X))))

    def _predict_encoded(self, proba):
        if self.out_activation_ == "softmax":
            return self.classes_[proba.argmax(axis=1)]
        return self._label_binarizer.inverse_transform(proba, threshold=0.5)

    def partial_fit(self, X, y, classes=None):
        """Update the model with one epoch over (X, y); ``classes`` (every label that can
        occur) is needed on the first call, except for multi-label 0/1 targets."""
        if not hasattr(self, "model_"):
            self._partial_classes = None if classes is None else np.unique(classes)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"MLPClassifier.partial_fit: classes={classes!r} differ from classes_ = "
                             f"{self.classes_.tolist()} of the first call.")
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predicted labels (n_samples,), or a 0/1 matrix (n_samples, n_classes) for multi-label."""
        return self._predict_encoded(self._forward(X))

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        proba = self._forward(X).astype(np.float64)
        if self.out_activation_ == "logistic" and len(self.classes_) == 2 and proba.shape[1] == 1:
            return np.hstack([1.0 - proba, proba])
        return proba

    def predict_log_proba(self, X):
        """log of predict_proba."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: identity outputs trained on half the mean squared
    error, with scikit-learn's interface; multi-output y (n_samples, n_outputs) allowed.

    Parameters: as MLPClassifier (see there): hidden_layer_sizes, activation, solver, alpha,
    batch_size, learning_rate, learning_rate_init, power_t, max_iter, shuffle, random_state,
    tol, verbose, warm_start, momentum, nesterovs_momentum, early_stopping (scored by R^2),
    validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun, and fastnn's
    dropout, batch_norm, device, dtype.

    Attributes: as MLPClassifier's, without ``classes_``; ``out_activation_`` is 'identity'.

    >>> import numpy as np
    >>> from fastnn.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1); y = X[:, 0] ** 2
    >>> reg = MLPRegressor((32,), max_iter=500, learning_rate_init=0.01, random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.9
    True
    """

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32), multi_output=True,
                             y_numeric=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if reset:
            self.out_activation_ = "identity"
        if not reset and (1 if y.ndim == 1 else y.shape[1]) != self.n_outputs_:
            raise ValueError(f"MLPRegressor: y has {1 if y.ndim == 1 else y.shape[1]} outputs; the model was fit "
                             f"with {self.n_outputs_}.")
        return X, y

    def _encode(self, y):
        return np.asarray(y, dtype=np.float64).reshape(len(y), -1)

    def _decode_targets(self, targets):
        return targets

    def _score_arrays(self, X, y):
        from sklearn.metrics import r2_score

        return float(r2_score(y, self.model_.predict(X)))

    def partial_fit(self, X, y):
        """Update the model with one epoch over (X, y)."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predictions (n_samples,), or (n_samples, n_outputs) for multi-output y."""
        out = self._forward(X).astype(np.float64)
        return out[:, 0] if out.shape[1] == 1 else out


__all__ = ["MLPClassifier", "MLPRegressor"]
