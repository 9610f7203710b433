"""The bad-input table: every public entry point rejects bad arguments and arrays with an error
whose message names the owner, the argument, the value and the remedy (docs/ARCHITECTURE.md, "Kernels
never see unchecked input"), and accepts the good-but-unusual inputs (non-contiguous, Fortran-ordered,
integer, bool) with the same result."""


import numpy as np
import pytest

import fastnn as fnn


from _helpers import CPU_BUILT, DEVICE, DEVICES, needs_cpu  # noqa: F401

L = fnn.layers
RNG = np.random.default_rng(0)
X = RNG.standard_normal((20, 5)).astype(np.float32)
Y = np.arange(20) % 3


def model(n_out=3, device=DEVICE, dtype="float32", input_dim=5, last=None):
    layers = [L.Dense(4, activation="relu"), L.Dense(n_out, activation=last)]
    return fnn.Sequential(layers, input_dim=input_dim, seed=0, device=device, dtype=dtype)


def trainer(n_out=3, loss="cross_entropy", device=DEVICE, **kw):
    return fnn.Trainer(model(n_out, device), loss, fnn.optim.SGD(0.1), seed=0, **kw)


def fit(t=None, X=X, y=Y, **kw):
    t = trainer() if t is None else t
    return t.fit(X, y, epochs=kw.pop("epochs", 1), verbose=0, **kw)


def with_value(arr, index, value):
    arr = np.array(arr, copy=True)
    arr[index] = value
    return arr


CHOICES_ACT = r"choose one of 'identity', 'sigmoid', 'tanh', 'relu', 'leaky_relu', 'elu', 'gelu', 'softplus', " \
              r"'silu', 'softmax'\."

CASES = [
    # ---- NaN / inf in X, for each entry point
    ("fit-X-nan", lambda: fit(X=with_value(X, (3, 2), np.nan)), ValueError,
     r"^Trainer\.fit: X contains NaN or inf \(first at index \[3, 2\]: nan\); remove or impute"),
    ("fit-X-inf", lambda: fit(X=with_value(X, (0, 4), -np.inf)), ValueError,
     r"^Trainer\.fit: X contains NaN or inf \(first at index \[0, 4\]: -inf\)"),
    ("predict-X-inf", lambda: model().predict(with_value(X, (1, 0), np.inf)), ValueError,
     r"^Sequential\.predict: X contains NaN or inf \(first at index \[1, 0\]: inf\)"),
    ("evaluate-X-nan", lambda: trainer().evaluate(with_value(X, (19, 1), np.nan), Y), ValueError,
     r"^Trainer\.evaluate: X contains NaN or inf \(first at index \[19, 1\]: nan\)"),
    ("trainer-predict-X-nan", lambda: trainer().predict(with_value(X, (2, 2), np.nan)), ValueError,
     r"X contains NaN or inf \(first at index \[2, 2\]: nan\)"),
    ("validation-X-nan", lambda: fit(validation=(with_value(X, (5, 0), np.nan), Y)), ValueError,
     r"^Trainer\.fit \(validation\): X contains NaN or inf \(first at index \[5, 0\]: nan\)"),
    ("fit-y-nan", lambda: fit(trainer(1, "mse"), y=with_value(np.zeros(20), 7, np.nan)), ValueError,
     r"^Trainer\.fit: y contains NaN or inf \(first at index \[7\]: nan\)"),
    # ---- lengths and shapes
    ("X-y-lengths", lambda: fit(y=Y[:-1]), ValueError,
     r"^Trainer\.fit: inputs must have the same number of samples; X has 20, y has 19\."),
    ("evaluate-lengths", lambda: trainer().evaluate(X[:7], Y), ValueError,
     r"^Trainer\.evaluate: inputs must have the same number of samples; X has 7, y has 20\."),
    ("predict-features", lambda: model().predict(X[:, :4]), ValueError,
     r"^Sequential\.predict: X has 4 features; the model was built for 5\.$"),
    ("fit-features", lambda: fit(X=np.ones((20, 6))), ValueError,
     r"^Trainer\.fit: X has 6 features; the model was built for 5\.$"),
    ("evaluate-features", lambda: trainer().evaluate(X[:, :3], Y), ValueError,
     r"^Trainer\.evaluate: X has 3 features; the model was built for 5\.$"),
    ("X-3d", lambda: model().predict(X.reshape(20, 5, 1)), ValueError,
     r"^Sequential\.predict: X must be 2-D; got 3-D with shape \(20, 5, 1\)\.$"),
    ("fit-X-3d", lambda: fit(X=X.reshape(4, 5, 5)), ValueError,
     r"^Trainer\.fit: X must be 2-D; got 3-D with shape \(4, 5, 5\)"),
    ("X-1d", lambda: model().predict(X[0]), ValueError,
     r"^Sequential\.predict: X must be 2-D; got 1-D with shape \(5,\); for one feature use X\.reshape\(-1, 1\), "
     r"for one sample X\.reshape\(1, -1\)\.$"),
    ("X-0d", lambda: model().predict(3.0), ValueError, r"X must be 2-D; got 0-D with shape \(\)"),
    ("X-empty", lambda: model().predict(np.zeros((0, 5), np.float32)), ValueError,
     r"^Sequential\.predict: X is empty \(shape \(0, 5\)\); pass at least one sample\.$"),
    ("fit-X-empty", lambda: fit(X=np.zeros((0, 5)), y=np.zeros(0, int)), ValueError,
     r"^Trainer\.fit: X is empty \(shape \(0, 5\)\)"),
    ("X-ragged", lambda: model().predict([[1, 2, 3, 4, 5], [1, 2]]), TypeError,
     r"^Sequential\.predict: X must be a rectangular array of numbers"),
    # ---- labels for cross_entropy
    ("label-too-big", lambda: fit(y=with_value(Y, 4, 3)), ValueError,
     r"^Trainer\.fit: y must be in \[0, 3\) for a model with 3 outputs; got the label 3; map labels to 0\.\.2 "
     r"or widen the last layer\.$"),
    ("label-negative", lambda: fit(y=with_value(Y, 0, -1)), ValueError,
     r"^Trainer\.fit: y must be in \[0, 3\) for a model with 3 outputs; got the label -1"),
    ("label-non-integer", lambda: fit(y=with_value(Y.astype(float), 6, 1.5)), ValueError,
     r"^Trainer\.fit: y must hold integer class labels; got the non-integer value 1\.5; for soft or one-hot "
     r"targets pass a 2-D array\.$"),
    ("label-evaluate", lambda: trainer().evaluate(X, with_value(Y, 2, 7)), ValueError,
     r"^Trainer\.evaluate: y must be in \[0, 3\).*got the label 7"),
    ("soft-targets-columns", lambda: fit(y=np.ones((20, 4)) / 4), ValueError,
     r"^Trainer\.fit: one-hot/soft y must have 3 columns for a model with 3 outputs; got 4\.$"),
    ("soft-targets-negative", lambda: fit(y=with_value(np.ones((20, 3)) / 3, (1, 1), -0.5)), ValueError,
     r"^Trainer\.fit: soft targets y must be non-negative; got -0\.5\.$"),
    ("labels-2d-strings", lambda: fit(y=np.array(["a", "b"] * 10)), TypeError,
     r"^Trainer\.fit: y must hold numbers \(bool, int or float32/float64\); got dtype <U1"),
    ("cross-entropy-1-output", lambda: fit(trainer(1), y=np.zeros(20, int)), ValueError,
     r"^Trainer\.fit: cross_entropy needs a model with at least 2 outputs \(one per class\); this one has 1; "
     r"for a single output use binary_cross_entropy\.$"),
    # ---- binary cross-entropy and regression targets
    ("bce-above-1", lambda: fit(trainer(1, "binary_cross_entropy"), y=with_value(np.zeros(20), 3, 2.0)),
     ValueError, r"^Trainer\.fit: y must be in \[0, 1\] for binary_cross_entropy; got 2\.0\.$"),
    ("bce-negative", lambda: fit(trainer(1, "binary_cross_entropy"), y=with_value(np.ones(20), 3, -0.5)),
     ValueError, r"^Trainer\.fit: y must be in \[0, 1\] for binary_cross_entropy; got -0\.5\.$"),
    ("mse-target-shape", lambda: fit(trainer(2, "mse"), y=np.zeros((20, 3))), ValueError,
     r"^Trainer\.fit: y must have shape \(n_samples, 2\) for a model with 2 outputs; got \(20, 3\)\.$"),
    # ---- batch size and epochs
    ("batch-size-0", lambda: trainer(batch_size=0), ValueError, r"^Trainer: batch_size must be >= 1; got 0\.$"),
    ("batch-size-negative", lambda: trainer(batch_size=-8), ValueError,
     r"^Trainer: batch_size must be >= 1; got -8\.$"),
    ("batch-size-float", lambda: trainer(batch_size=2.0), TypeError,
     r"^Trainer: batch_size must be an integer; got 2\.0\.$"),
    ("batch-size-bool", lambda: trainer(batch_size=True), TypeError,
     r"^Trainer: batch_size must be an integer; got True\.$"),
    ("predict-batch-size-0", lambda: model().predict(X, batch_size=0), ValueError,
     r"^Sequential\.predict: batch_size must be >= 1; got 0\.$"),
    ("epochs-negative", lambda: fit(epochs=-1), ValueError, r"^Trainer\.fit: epochs must be >= 0; got -1\.$"),
    ("epochs-float", lambda: fit(epochs=2.5), TypeError, r"^Trainer\.fit: epochs must be an integer; got 2\.5\.$"),
    # ---- unknown names list the choices
    ("activation", lambda: L.Dense(3, activation="rleu"), ValueError,
     r"^Dense: unknown activation 'rleu'; " + CHOICES_ACT + "$"),
    ("activation-layer", lambda: L.Activation("swish"), ValueError,
     r"^Activation: unknown activation 'swish'; " + CHOICES_ACT + "$"),
    ("activation-not-a-string", lambda: L.Dense(3, activation=1), ValueError,
     r"^Dense: unknown activation 1; choose one of 'identity'"),
    ("loss", lambda: fnn.Trainer(model(), "crossentropy"), ValueError,
     r"^Trainer: unknown loss 'crossentropy'; choose one of 'mse', 'mae', 'huber', 'binary_cross_entropy', "
     r"'cross_entropy'\.$"),
    ("init", lambda: L.Dense(3, init="he"), ValueError,
     r"^Dense: unknown init 'he'; choose one of 'zeros', 'normal', 'uniform', 'xavier_uniform', 'xavier_normal', "
     r"'he_uniform', 'he_normal', 'lecun_normal', 'orthogonal'\.$"),
    ("device", lambda: fnn.Sequential([L.Dense(2)], device="gpu"), ValueError,
     r"^Sequential: unknown device 'gpu'; choose one of 'cpu', 'cuda', 'reference'\.$"),
    ("device-to", lambda: model().to("tpu"), ValueError,
     r"^Sequential\.to: unknown device 'tpu'; choose one of 'cpu', 'cuda', 'reference'\.$"),
    ("load-device", lambda: fnn.load(__file__, device="gpu"), ValueError,
     r"^fastnn\.load: unknown device 'gpu'; choose one of 'cpu', 'cuda', 'reference'\.$"),
    ("optimizer", lambda: fnn.Trainer(model(), "mse", "lbfgs"), ValueError,
     r"^Trainer: unknown optimizer 'lbfgs'; choose one of 'sgd', 'momentum', 'nesterov', 'adagrad', .*'radam'\.$"),
    ("metric", lambda: fnn.Trainer(model(), "mse", metrics=["acc"]), ValueError,
     r"^Trainer: unknown metric 'acc'; choose one of 'accuracy'.*'mse'.*'r2'"),
    ("metric-string", lambda: fnn.Trainer(model(), "mse", metrics="precission"), ValueError,
     r"^Trainer: unknown metric 'precission'; choose one of"),
    # ---- dtypes of X
    ("X-float16", lambda: model().predict(X.astype(np.float16)), TypeError,
     r"^Sequential\.predict: X has dtype float16, which fastnn does not compute in; cast with "
     r"X\.astype\(np\.float32\)\.$"),
    ("fit-X-float16", lambda: fit(X=X.astype(np.float16)), TypeError, r"^Trainer\.fit: X has dtype float16"),
    ("X-object", lambda: model().predict(X.astype(object)), TypeError,
     r"^Sequential\.predict: X must hold numbers \(bool, int or float32/float64\); got dtype object; convert with "
     r"X\.astype\(np\.float32\)\.$"),
    ("X-None", lambda: model().predict(None), TypeError,
     r"^Sequential\.predict: X must hold numbers.*got dtype object"),
    ("X-strings", lambda: model().predict(X.astype(str)), TypeError,
     r"^Sequential\.predict: X must hold numbers \(bool, int or float32/float64\); got dtype <U\d+"),
    ("X-string", lambda: model().predict("1,2,3,4,5"), TypeError,
     r"^Sequential\.predict: X must be an array of numbers; got a string '1,2,3,4,5'\.$"),
    ("X-bytes", lambda: fit(X=b"12345"), TypeError, r"^Trainer\.fit: X must be an array of numbers; got a string"),
    ("X-complex", lambda: model().predict(X.astype(np.complex64)), TypeError,
     r"^Sequential\.predict: X must hold numbers \(bool, int or float32/float64\); got dtype complex64"),
    ("fit-X-complex", lambda: fit(X=X + 1j), TypeError, r"^Trainer\.fit: X must hold numbers.*got dtype complex64"),
    ("X-datetime", lambda: model().predict(np.zeros((2, 5), "datetime64[s]")), TypeError,
     r"X must hold numbers.*got dtype datetime64\[s\]"),
    # ---- sample_weight and class_weight
    ("sample-weight-negative", lambda: fit(sample_weight=with_value(np.ones(20), 4, -2.0)), ValueError,
     r"^Trainer\.fit: sample_weight must be >= 0; got -2\.0\.$"),
    ("sample-weight-length", lambda: fit(sample_weight=np.ones(19)), ValueError,
     r"^Trainer\.fit: inputs must have the same number of samples; y has 20, sample_weight has 19\.$"),
    ("sample-weight-2d", lambda: fit(sample_weight=np.ones((20, 1))), ValueError,
     r"^Trainer\.fit: sample_weight must be 1-D; got 2-D with shape \(20, 1\)\.$"),
    ("sample-weight-nan", lambda: fit(sample_weight=with_value(np.ones(20), 19, np.nan)), ValueError,
     r"^Trainer\.fit: sample_weight contains NaN or inf \(first at index \[19\]: nan\)"),
    ("evaluate-sample-weight", lambda: trainer().evaluate(X, Y, sample_weight=-np.ones(20)), ValueError,
     r"^Trainer\.evaluate: sample_weight must be >= 0; got -1\.0\.$"),
    ("class-weight-string", lambda: fit(class_weight="balance"), ValueError,
     r"^Trainer\.fit: class_weight must be a dict or 'balanced'; got 'balance'\.$"),
    ("class-weight-list", lambda: fit(class_weight=[1.0, 2.0, 3.0]), TypeError,
     r"^Trainer\.fit: class_weight must be a dict or 'balanced'; got \[1\.0, 2\.0, 3\.0\]\.$"),
    ("class-weight-key-range", lambda: fit(class_weight={5: 1.0}), ValueError,
     r"^Trainer\.fit: a class_weight key must be <= 2; got 5\.$"),
    ("class-weight-key-negative", lambda: fit(class_weight={-1: 1.0}), ValueError,
     r"^Trainer\.fit: a class_weight key must be >= 0; got -1\.$"),
    ("class-weight-key-type", lambda: fit(class_weight={"cat": 1.0}), TypeError,
     r"^Trainer\.fit: a class_weight key must be an integer; got 'cat'\.$"),
    ("class-weight-value-negative", lambda: fit(class_weight={1: -0.5}), ValueError,
     r"^Trainer\.fit: class_weight\[1\] must be >= 0\.0; got -0\.5\.$"),
    ("class-weight-value-nan", lambda: fit(class_weight={1: float("nan")}), ValueError,
     r"^Trainer\.fit: class_weight\[1\] must be finite; got nan\.$"),
    ("class-weight-regression", lambda: fit(trainer(2, "mse"), y=np.zeros((20, 2)), class_weight={0: 2.0}),
     ValueError, r"^Trainer\.fit: class_weight needs class labels"),
    # ---- validation
    ("validation-split-1", lambda: fit(validation_split=1.0), ValueError,
     r"^Trainer\.fit: validation_split must be < 1\.0; got 1\.0\.$"),
    ("validation-split-negative", lambda: fit(validation_split=-0.1), ValueError,
     r"^Trainer\.fit: validation_split must be >= 0\.0; got -0\.1\.$"),
    ("validation-split-string", lambda: fit(validation_split="0.2"), TypeError,
     r"^Trainer\.fit: validation_split must be a real number; got '0\.2'\.$"),
    ("validation-split-too-small", lambda: fit(validation_split=0.01), ValueError,
     r"^Trainer\.fit: validation_split=0\.01 leaves 0 of 20 samples for validation"),
    ("validation-and-split", lambda: fit(validation=(X, Y), validation_split=0.2), ValueError,
     r"^Trainer\.fit: give validation or validation_split, not both\.$"),
    ("validation-not-a-tuple", lambda: fit(validation=X), TypeError,
     r"^Trainer\.fit: validation must be a tuple \(X_val, y_val\) or \(X_val, y_val, sample_weight\)\.$"),
    ("validation-features", lambda: fit(validation=(X[:, :4], Y)), ValueError,
     r"^Trainer\.fit \(validation\): X has 4 features; the model was built for 5\.$"),
    # ---- layers, optimizers, model
    ("dense-units-0", lambda: L.Dense(units=0), ValueError, r"^Dense: units must be >= 1; got 0\.$"),
    ("dense-units-negative", lambda: L.Dense(-3), ValueError, r"^Dense: units must be >= 1; got -3\.$"),
    ("dense-units-float", lambda: L.Dense(2.0), TypeError, r"^Dense: units must be an integer; got 2\.0\.$"),
    ("dense-use-bias", lambda: L.Dense(2, use_bias="yes"), TypeError,
     r"^Dense: use_bias must be True or False; got 'yes'\.$"),
    ("leaky-alpha", lambda: L.Dense(2, activation="leaky_relu", alpha=-0.1), ValueError,
     r"^Dense: alpha must be >= 0\.0; got -0\.1\.$"),
    ("elu-alpha", lambda: L.Activation("elu", alpha=0.0), ValueError,
     r"^Activation: alpha must be > 0\.0; got 0\.0\.$"),
    ("sgd-momentum-1", lambda: fnn.optim.SGD(0.1, momentum=1.0), ValueError,
     r"^SGD: momentum must be < 1\.0; got 1\.0\.$"),
    ("sgd-momentum-negative", lambda: fnn.optim.SGD(0.1, momentum=-0.5), ValueError,
     r"^SGD: momentum must be >= 0\.0; got -0\.5\.$"),
    ("sgd-nesterov-no-momentum", lambda: fnn.optim.SGD(0.1, nesterov=True), ValueError,
     r"^SGD: nesterov=True needs momentum > 0 and dampening = 0; got momentum=0\.0, dampening=0\.0\.$"),
    ("sgd-nesterov-dampening", lambda: fnn.optim.SGD(0.1, momentum=0.9, nesterov=True, dampening=0.1), ValueError,
     r"^SGD: nesterov=True needs momentum > 0 and dampening = 0; got momentum=0\.9, dampening=0\.1\.$"),
    ("sgd-lr-negative", lambda: fnn.optim.SGD(lr=-0.01), ValueError, r"^SGD: lr must be >= 0\.0; got -0\.01\.$"),
    ("sgd-lr-nan", lambda: fnn.optim.SGD(lr=float("nan")), ValueError, r"^SGD: lr must be finite; got nan\.$"),
    ("sgd-lr-string", lambda: fnn.optim.SGD(lr="0.1"), TypeError,
     r"^SGD: lr must be a number or a schedule; got '0\.1'\.$"),
    ("sgd-weight-decay", lambda: fnn.optim.SGD(0.1, weight_decay=-1e-4), ValueError,
     r"^SGD: weight_decay must be >= 0\.0; got -0\.0001\.$"),
    ("named-optimizer-lr", lambda: fnn.optim.get_optimizer("sgd", lr=-1.0), ValueError,
     r"^SGD: lr must be >= 0\.0; got -1\.0\.$"),
    ("set-weights-count", lambda: model().set_weights(model().get_weights()[:-1]), ValueError,
     r"^Sequential\.set_weights: expected 4 arrays; got 3\.$"),
    ("set-weights-shape", lambda: model().set_weights([w.T for w in model().get_weights()]), ValueError,
     r"^Dense\.set_weights: w must have shape \(5, 4\); got \(4, 5\)\.$"),
    ("set-weights-bias-shape", lambda: model().set_weights([np.zeros((5, 4)), np.zeros(3), np.zeros((4, 3)),
                                                            np.zeros(3)]), ValueError,
     r"^Dense\.set_weights: b must have shape \(4,\); got \(3,\)\.$"),
    ("set-weights-nan", lambda: model().set_weights([np.full(w.shape, np.nan) for w in model().get_weights()]),
     ValueError, r"^Dense\.set_weights: w contains NaN or inf"),
    ("set-weights-unbuilt", lambda: fnn.Sequential([L.Dense(2)], device=DEVICE).set_weights([]), ValueError,
     r"^Sequential\.set_weights: the model is not built yet"),
    ("dtype-float16", lambda: fnn.Sequential([L.Dense(2)], dtype="float16"), ValueError,
     r"^Sequential: dtype must be 'float32' or 'float64'; got 'float16'\.$"),
    ("dtype-np-float16", lambda: fnn.Sequential([L.Dense(2)], dtype=np.float16), ValueError,
     r"^Sequential: dtype must be 'float32' or 'float64'; got <class 'numpy\.float16'>\.$"),
    ("dtype-int", lambda: fnn.Sequential([L.Dense(2)], dtype="int32"), ValueError,
     r"^Sequential: dtype must be 'float32' or 'float64'; got 'int32'\.$"),
    ("dtype-unknown-name", lambda: fnn.Sequential([L.Dense(2)], dtype="floaty"), ValueError,
     r"^Sequential: dtype must be 'float32' or 'float64'; got 'floaty'\.$"),
    ("dtype-none", lambda: fnn.Sequential([L.Dense(2)], dtype=None), ValueError,
     r"^Sequential: dtype must be 'float32' or 'float64'; got None\.$"),
    ("input-dim-0", lambda: fnn.Sequential([L.Dense(2)], input_dim=0, device=DEVICE), ValueError,
     r"^Sequential: input_dim must be >= 1; got 0\.$"),
    ("seed-negative", lambda: fnn.Sequential([L.Dense(2)], seed=-1), ValueError,
     r"^Sequential: seed must be >= 0; got -1\.$"),
    ("layers-not-a-list", lambda: fnn.Sequential(L.Dense(2), device=DEVICE), TypeError,
     r"^Sequential: layers must be a list of layers; got Dense\("),
    ("layer-twice", lambda: (lambda d: fnn.Sequential([d, d], device=DEVICE))(L.Dense(2)), ValueError,
     r"^Sequential: Dense\(units=2.*is already in the model; create a new layer instead\.$"),
    ("trainer-model", lambda: fnn.Trainer("model", "mse"), TypeError,
     r"^Trainer: model must be a fastnn\.Sequential; got str\.$"),
    ("trainer-l2", lambda: trainer(l2=-1e-3), ValueError, r"^Trainer: l2 must be >= 0\.0; got -0\.001\.$"),
    ("trainer-clip-norm", lambda: trainer(clip_norm=0.0), ValueError,
     r"^Trainer: clip_norm must be > 0\.0; got 0\.0\.$"),
    ("trainer-shuffle", lambda: trainer(shuffle="yes"), TypeError,
     r"^Trainer: shuffle must be True or False; got 'yes'\.$"),
    ("callbacks", lambda: fit(callbacks=[print]), TypeError,
     r"^Trainer\.fit: callbacks must be fastnn\.callbacks\.Callback instances; got <built-in function print>\.$"),
]


@pytest.mark.parametrize("call, error, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_table_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_errors_leave_the_model_untouched():
    t = trainer()
    before = t.model.get_weights()
    with pytest.raises(ValueError):
        fit(t, y=with_value(Y, 4, 3))
    with pytest.raises(ValueError):
        fit(t, X=with_value(X, (0, 0), np.nan))
    for a, b in zip(before, t.model.get_weights()):
        assert np.array_equal(a, b)
    assert t.optimizer.step_count == 0 and t.epoch == 0
    assert t.history.history.get("loss", []) == []


def test_unbuilt_model_is_not_built_by_a_rejected_call():
    m = fnn.Sequential([L.Dense(3)], device=DEVICE)
    with pytest.raises(ValueError, match="X must be 2-D"):
        m.predict(np.ones(4))
    assert not m.built and m.input_dim is None
    assert m.predict(np.ones((2, 6))).shape == (2, 3)  # still free to take any width


# ------------------------------------------------------- accepted unusual inputs
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["strided", "fortran", "int", "list"])
def test_unusual_layouts_predict_like_the_contiguous_copy(device, layout):
    rng = np.random.default_rng(1)
    m = model(device=device, dtype="float64")
    if layout == "strided":
        wide = rng.standard_normal((30, 10))
        Xa = wide[:, ::2]
        assert not Xa.flags.c_contiguous
    elif layout == "fortran":
        Xa = np.asfortranarray(rng.standard_normal((30, 5)))
        assert not Xa.flags.c_contiguous
    elif layout == "int":
        Xa = rng.integers(-3, 4, (30, 5))
    else:
        Xa = rng.standard_normal((30, 5)).tolist()
    expected = m.predict(np.ascontiguousarray(Xa, dtype=np.float64))
    got = m.predict(Xa)
    assert got.dtype == np.float64 and got.flags.c_contiguous
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["strided", "fortran", "strided-rows"])
def test_unusual_layouts_train_like_the_contiguous_copy(device, layout):
    rng = np.random.default_rng(2)
    if layout == "strided":
        Xa = rng.standard_normal((40, 10))[:, ::2]
    elif layout == "fortran":
        Xa = np.asfortranarray(rng.standard_normal((40, 5)))
    else:
        Xa = rng.standard_normal((80, 5))[::2]
    y = np.asfortranarray(rng.integers(0, 3, 80)[::2])  # a strided label vector too
    assert not Xa.flags.c_contiguous
    results = []
    for X_in, y_in in ((Xa, y), (np.ascontiguousarray(Xa), np.ascontiguousarray(y))):
        t = fnn.Trainer(model(device=device, dtype="float64"), "cross_entropy", fnn.optim.SGD(0.1, momentum=0.9),
                        batch_size=8, seed=0)
        history = t.fit(X_in, y_in, epochs=3, verbose=0, sample_weight=np.linspace(0.5, 1.5, 40)[::-1])
        results.append((t.model.get_weights(), history.history["loss"], t.evaluate(X_in, y_in)))
    (w1, loss1, ev1), (w2, loss2, ev2) = results
    assert loss1 == loss2 and ev1 == ev2
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert not np.array_equal(w1[0], model(device=device, dtype="float64").get_weights()[0])  # it did train


def test_input_is_not_modified():
    Xf = np.asfortranarray(X.astype(np.float64))
    keep = Xf.copy()
    t = trainer()
    fit(t, X=Xf)
    t.evaluate(Xf, Y)
    t.model.predict(Xf)
    assert np.array_equal(Xf, keep) and Xf.flags.f_contiguous


def test_bool_and_integer_X_are_accepted():
    m = model(dtype="float64")
    Xb = X > 0
    assert np.array_equal(m.predict(Xb), m.predict(Xb.astype(np.float64)))
    t = trainer()
    history = fit(t, X=(X * 10).astype(np.int16))
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])


@pytest.mark.filterwarnings("error")
def test_finite_values_whose_sum_overflows_are_accepted_silently():
    # large arrays are screened with one sum, which overflows here: the data are still finite
    from fastnn._checks import _MASK_SIZE

    huge = np.full((_MASK_SIZE // 5 + 1, 5), 3e38, np.float32)
    huge[::2] *= -0.5
    assert model().predict(huge).shape == (len(huge), 3)
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at index \[4, 1\]: inf\)"):
        model().predict(with_value(huge, (4, 1), np.inf))
    inf_minus_inf = with_value(with_value(np.zeros_like(huge), (7, 0), -np.inf), (9, 3), np.inf)
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at index \[7, 0\]: -inf\)"):
        model().predict(inf_minus_inf)
    # small arrays are checked with a mask
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at index \[0, 2\]: nan\)"):
        model().predict(with_value(huge[:3], (0, 2), np.nan))
    assert model().predict(huge[:3]).shape == (3, 3)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("rows", [3, 20_000])  # checked with a mask and with the screening sum
def test_float64_beyond_float32_range_is_refused_not_turned_into_inf(rows):
    # issue 17 finding 5: float64 inputs beyond float32's range passed the NaN/inf check and
    # became inf (predict returned inf/NaN with only a RuntimeWarning).
    X = np.zeros((rows, 5))
    X[rows - 1, 2] = -1e39
    with pytest.raises(ValueError, match=r"Sequential.predict: X holds -1e\+39 at index \[%d, 2\], beyond "
                                         r"float32's range .*Standardizer.*dtype='float64'" % (rows - 1)):
        model().predict(X)
    y = np.zeros(rows)
    with pytest.raises(ValueError, match=r"Trainer.fit: X holds -1e\+39 at index \[%d, 2\]" % (rows - 1)):
        fnn.Trainer(model(), "cross_entropy").fit(X, y.astype(int), verbose=0)
    y[1] = 1e300
    with pytest.raises(ValueError, match=r"Trainer.fit: y holds 1e\+300 at index \[1, 0\]"):
        fnn.Trainer(model(), "mse").fit(np.zeros((rows, 5)), np.tile(y[:, None], (1, 3)), verbose=0)
    X[rows - 1, 2] = -1e30  # within float32's range: accepted
    assert model().predict(X).shape == (rows, 3)
    X[rows - 1, 2] = -1e39
    assert model(dtype="float64").predict(X[-3:]).shape == (3, 3)  # a float64 model takes it


@pytest.mark.parametrize("label, shown", [(1e30, r"1e\+30"), (2.0 ** 70, r"1\.1805916207174113e\+21"),
                                          (-3.0, r"-3\.0"), (7.0, r"7\.0")])
def test_out_of_range_float_label_is_reported_as_its_value(label, shown):
    # issue 17 finding 5: a label of 1e30 was reported as -9223372036854775808 (its int64 wrap)
    y = np.array([0.0, 1.0, label, 2.0])
    with pytest.raises(ValueError, match=r"Trainer.fit: y must be in \[0, 3\) for a model with 3 outputs; got the "
                                         r"label %s at index 2; map labels" % shown):
        fnn.Trainer(model(), "cross_entropy").fit(np.zeros((4, 5)), y, verbose=0)


def test_huge_unsigned_label_is_reported_as_its_value():
    y = np.array([0, 2 ** 64 - 1], np.uint64)
    with pytest.raises(ValueError, match=r"got the label 18446744073709551615 at index 1"):
        fnn.Trainer(model(), "cross_entropy").fit(np.zeros((2, 5)), y, verbose=0)


def test_sample_weight_beyond_float32_range_is_refused():
    w = np.ones(4)
    w[3] = 1e39
    with pytest.raises(ValueError, match=r"Trainer.fit: sample_weight holds 1e\+39 at index \[3\], beyond float32"):
        fnn.Trainer(model(), "cross_entropy").fit(np.zeros((4, 5)), [0, 1, 2, 0], sample_weight=w, verbose=0)
