"""fastnn.sklearn: scikit-learn's estimator checks, model selection, and the behaviour of the
parameters scikit-learn defines (skipped when scikit-learn is absent)."""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn as fnn  # noqa: E402
from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# short fits on purpose; the tests that are about the warning catch it with pytest.warns
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# the default parameters, as check_estimator(MLPClassifier()) runs them (~3 s for both)
CHECKED = [MLPClassifier(random_state=0), MLPRegressor(random_state=0)]


@parametrize_with_checks(CHECKED)
def test_check_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def _iris():
    X, y = fnn.datasets.load_iris()
    return fnn.data.Standardizer().fit_transform(X).astype(np.float64), y


def _sk_loss(est, X, Y, alpha):
    """scikit-learn's loss definition, from the fitted coefs_ and intercepts_ (float64)."""
    from scipy.special import expit, softmax

    a = X
    for i, (w, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        a = a @ w + b
        if i < len(est.coefs_) - 1:
            a = np.maximum(a, 0)
    if est.out_activation_ == "identity":
        data = ((a - Y) ** 2).mean() / 2
    elif est.out_activation_ == "softmax":
        data = -np.log(softmax(a, axis=1)[np.arange(len(Y)), Y]).mean()
    else:
        p = expit(a)
        data = -(Y * np.log(p) + (1 - Y) * np.log(1 - p)).sum() / len(Y)
    return data + 0.5 * alpha * sum((w ** 2).sum() for w in est.coefs_) / len(X)


@pytest.mark.parametrize("kind", ["regression", "multi_output", "binary", "multiclass", "multilabel"])
def test_loss_is_sklearns_definition(kind):
    # lr ~ 0 and one full batch: loss_curve_[0] is the loss at the weights the fit ends with
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    targets = {"regression": X[:, 0], "multi_output": X[:, :2], "binary": (X[:, 0] > 0).astype(int),
               "multiclass": np.digitize(X[:, 0], [-0.5, 0.5]), "multilabel": (X[:, :2] > 0).astype(int)}
    y = targets[kind]
    est = (MLPRegressor if kind in ("regression", "multi_output") else MLPClassifier)(
        hidden_layer_sizes=(5,), solver="sgd", momentum=0.0, learning_rate_init=1e-12, alpha=0.5, max_iter=1,
        batch_size=40, shuffle=False, random_state=0)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        est.fit(X, y)
    Y = y.reshape(40, -1).astype(float) if kind != "multiclass" else y
    assert est.loss_curve_[0] == pytest.approx(_sk_loss(est, X, Y, 0.5), rel=1e-9)


def test_shapes_and_attributes_match_sklearn():
    X, y = _iris()
    ours = MLPClassifier(hidden_layer_sizes=(8, 6), max_iter=5, random_state=0)
    theirs = sklearn.neural_network.MLPClassifier(hidden_layer_sizes=(8, 6), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y), theirs.fit(X, y)
    for name in ("n_iter_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_", "t_"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_]
    assert [b.shape for b in ours.intercepts_] == [b.shape for b in theirs.intercepts_]
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    assert len(ours.loss_curve_) == 5 and ours.best_loss_ == min(ours.loss_curve_)
    assert ours.validation_scores_ is None and ours.best_validation_score_ is None
    assert ours.predict_proba(X).shape == (150, 3)


def test_fits_iris_and_a_curve_like_sklearn():
    X, y = _iris()
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=300, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.95
    assert clf.n_iter_ < 300  # stopped on the plateau rule, without a warning
    Xr = np.linspace(-1, 1, 200).reshape(-1, 1)
    reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=500, random_state=0)
    assert reg.fit(Xr, Xr[:, 0] ** 2).score(Xr, Xr[:, 0] ** 2) > 0.9


def test_early_stopping_keeps_the_best_validation_weights():
    X, y = _iris()
    clf = MLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, n_iter_no_change=5, learning_rate_init=0.01,
                        max_iter=300, random_state=0).fit(X, y)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the weights kept are those of the best epoch: refit for exactly that many epochs
    best = int(np.argmax(clf.validation_scores_)) + 1
    again = MLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, n_iter_no_change=1000, learning_rate_init=0.01,
                          max_iter=best, random_state=0)
    with pytest.warns(ConvergenceWarning):
        again.fit(X, y)
    for a, b in zip(clf.coefs_, again.coefs_):
        np.testing.assert_array_equal(a, b)


def test_convergence_warning_at_max_iter():
    X, y = _iris()
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        MLPClassifier(max_iter=3, random_state=0).fit(X, y)


def test_multilabel_and_multi_output():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 4))
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] < 0.5], axis=1).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=300, random_state=0).fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    assert clf.predict(X).shape == (200, 3) and set(np.unique(clf.predict(X))) <= {0, 1}
    assert clf.score(X, Y) > 0.8  # subset accuracy
    T = np.stack([X[:, 0] + X[:, 1], X[:, 2] - X[:, 3]], axis=1)
    reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=300, random_state=0).fit(X, T)
    assert reg.predict(X).shape == (200, 2) and reg.score(X, T) > 0.9


def test_string_labels_binary_and_predict_proba():
    X, y = _iris()
    keep = y < 2
    labels = np.array(["setosa", "versicolor"])[y[keep]]
    clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.01, max_iter=100, random_state=0)
    clf.fit(X[keep], labels)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    proba = clf.predict_proba(X[keep])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (clf.predict(X[keep]) == labels).mean() == 1.0


@pytest.mark.parametrize("solver, learning_rate", [("sgd", "constant"), ("sgd", "invscaling"), ("sgd", "adaptive"),
                                                   ("adam", "constant"), ("rmsprop", "constant")])
def test_solvers_and_learning_rates(solver, learning_rate):
    X, y = _iris()
    clf = MLPClassifier(hidden_layer_sizes=(16,), solver=solver, learning_rate=learning_rate, learning_rate_init=0.05
                        if solver == "sgd" else 0.01, max_iter=400, random_state=0, n_iter_no_change=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.score(X, y) > (0.6 if learning_rate == "invscaling" else 0.9)
    if learning_rate == "invscaling":  # the rate of the last epoch: init / (samples seen before it + 1)^power_t
        assert clf._trainer.optimizer.lr_scale == pytest.approx(1 / (150 * (clf.n_iter_ - 1) + 1) ** 0.5)


def test_lbfgs_and_bad_parameters_raise_naming_them():
    X, y = _iris()
    with pytest.raises(ValueError, match="solver 'lbfgs' is not available in fastnn"):
        MLPClassifier(solver="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="unknown activation 'softsign'"):
        MLPClassifier(activation="softsign").fit(X, y)
    with pytest.raises(ValueError, match="validation_fraction must be < 1.0"):
        MLPRegressor(validation_fraction=1.0, early_stopping=True).fit(X, y)
    with pytest.raises(ValueError, match="classes must be given on the first call"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="partial_fit: early_stopping=True is not supported"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="the validation set is too small"):
        MLPRegressor(early_stopping=True, validation_fraction=0.01).fit(X[:50], y[:50])


def test_partial_fit_warm_start_and_pickle():
    X, y = _iris()
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    for _ in range(50):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 1 and clf.t_ == 50 * 150 and len(clf.loss_curve_) == 50  # scikit-learn's counts
    assert clf.score(X, y) > 0.9 and clf.loss_ == clf.loss_curve_[-1]
    restored = pickle.loads(pickle.dumps(clf))
    assert b"fastnn.model" not in pickle.dumps(clf)  # weights as arrays, not fastnn objects
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    restored.partial_fit(X, y)
    assert restored.t_ == 51 * 150
    warm = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, y)
        first = [c.copy() for c in warm.coefs_]
        warm.fit(X, y)
    assert warm.n_iter_ == 5 and len(warm.loss_curve_) == 10 and not np.array_equal(first[0], warm.coefs_[0])


def test_fastnn_options_dropout_batch_norm_float32():
    X, y = _iris()
    clf = MLPClassifier(hidden_layer_sizes=(32,), dropout=0.1, batch_norm=True, learning_rate_init=0.01,
                        max_iter=200, random_state=0).fit(X.astype(np.float32), y)
    assert clf.model_.dtype == np.float32 and clf.score(X, y) > 0.9
    assert [type(layer).__name__ for layer in clf.model_.layers] == ["Dense", "BatchNorm", "Activation", "Dropout",
                                                                      "Dense"]


def test_model_selection_pipeline_grid_random_cross_val():
    from scipy.stats import loguniform
    from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = fnn.datasets.load_iris()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=150, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid = GridSearchCV(pipe, {"mlpclassifier__learning_rate_init": [1e-3, 1e-2],
                                   "mlpclassifier__hidden_layer_sizes": [(4,), (16,)]}, cv=3).fit(X, y)
        assert len(grid.cv_results_["params"]) == 4
        assert grid.best_params_["mlpclassifier__learning_rate_init"] == 1e-2 and grid.best_score_ > 0.9
        search = RandomizedSearchCV(pipe, {"mlpclassifier__alpha": loguniform(1e-5, 1e-1)}, n_iter=3, cv=3,
                                    random_state=0).fit(X, y)
        assert search.best_score_ > 0.8
        scores = cross_val_score(make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), max_iter=200,
                                                                              learning_rate_init=0.01, random_state=0)),
                                 X[:, :3], X[:, 3], cv=KFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and scores.min() > 0.5


def test_import_fastnn_does_not_import_sklearn_and_missing_sklearn_is_named():
    code = ("import sys, fastnn as fnn; fnn.Sequential; fnn.Trainer; fnn.tuning; fnn.Ensemble\n"
            "assert 'sklearn' not in sys.modules\n"
            "sys.modules['sklearn'] = None\n"
            "try:\n    fnn.sklearn\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'fastnn[sklearn]'" in out


@pytest.mark.parametrize("learning_rate", ["constant", "adaptive"])
def test_plateau_rule_counts_epochs_as_sklearn(learning_rate):
    # tol so large that no epoch after the first counts as an improvement: the epochs run are
    # then set by the rule alone (and, for 'adaptive', by the divisions of the rate by 5)
    X, y = _iris()
    params = dict(hidden_layer_sizes=(4,), solver="sgd", learning_rate=learning_rate, learning_rate_init=0.1,
                  tol=10.0, n_iter_no_change=1, max_iter=100, random_state=0)
    ours = MLPClassifier(**params).fit(X, y)
    theirs = sklearn.neural_network.MLPClassifier(**params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == (19 if learning_rate == "adaptive" else 3)
    if learning_rate == "adaptive":
        assert ours._trainer.optimizer.lr_scale == pytest.approx(5.0 ** -8)


def test_labels_outside_classes_are_refused():
    X, y = _iris()
    clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    with pytest.raises(ValueError, match=r"y holds labels \[2\] that are not in classes_ = \[0, 1\]"):
        clf.partial_fit(X, y, classes=[0, 1])
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1])
    with pytest.raises(ValueError, match=r"y holds labels \[2\]"):
        clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="classes=.* differ from classes_"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
