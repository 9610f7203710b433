"""Trainer(augment=...): Gaussian input noise and mixup change the training batches (and only
them) exactly as documented, reproducibly from Trainer(seed=...), without allocating."""

import numpy as np
import pytest

import fastnn as fnn
from _helpers import CPU_BUILT, DEVICES, REFERENCE, assert_steady_state_allocates_nothing, classification_data


def capture_inputs(model):
    """Record (a copy of) every training batch the first layer receives."""
    seen = []
    layer = model.layers[0]
    forward = layer.forward

    def recording_forward(x, training=False, skip_activation=False):
        if training:
            seen.append(model.backend.to_numpy(x).copy())
        return forward(x, training, skip_activation)

    layer.forward = recording_forward
    return seen


def linear(device="reference", n_in=4, n_out=3):
    return fnn.Sequential([fnn.layers.Dense(n_out)], input_dim=n_in, seed=0, device=device, dtype="float64")


@pytest.mark.parametrize("device", DEVICES)
def test_gaussian_noise_is_the_documented_stream(device):
    X, y = classification_data(24, 4, seed=0)
    model = linear(device)
    seen = capture_inputs(model)
    noise = fnn.augment.GaussianNoise(0.5)
    trainer = fnn.Trainer(model, "cross_entropy", batch_size=8, shuffle=False, seed=3, augment=noise)
    trainer.fit(X, y, epochs=2, verbose=0)
    key = trainer._augment_keys[0]
    assert noise.state_dict() == {"step": 6}
    for step, xb in enumerate(seen):
        rows = X[8 * (step % 3):8 * (step % 3) + 8]
        np.testing.assert_allclose(xb, REFERENCE.gaussian_noise(rows, std=0.5, key=key, step=step), rtol=1e-12)
    z = (np.concatenate(seen) - np.tile(X, (2, 1))) / 0.5
    assert abs(z.std() - 1) < 0.15 and abs(z.mean()) < 0.15


def mixed(X, y, alpha, seed):
    """What Mixup does to one full batch, drawn from a generator seeded like the Trainer's."""
    rng = np.random.default_rng(seed)
    lam = rng.beta(alpha, alpha)
    perm = np.arange(len(X))
    rng.shuffle(perm)
    target = lam * np.eye(3)[y] + (1 - lam) * np.eye(3)[y[perm]]
    return lam * X + (1 - lam) * X[perm], target, lam, perm


@pytest.mark.parametrize("device", DEVICES)
def test_mixup_mixes_inputs_and_turns_labels_into_soft_targets(device):
    X, y = classification_data(24, 4, seed=0)
    model = linear(device)
    w, b = model.get_weights()
    seen = capture_inputs(model)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.1), batch_size=None, seed=4,
                          augment=fnn.augment.Mixup(alpha=0.4))
    history = trainer.fit(X, y, epochs=1, verbose=0)
    xm, target, lam, _ = mixed(X, y, 0.4, 4)
    assert 0 < lam < 1
    np.testing.assert_allclose(seen[0], xm, rtol=1e-12)
    z = xm @ w + b
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert history.history["loss"][0] == pytest.approx(-(target * logp).sum(1).mean(), rel=1e-12)
    # the update is the soft-target gradient: (softmax(z) - target) averaged over the batch
    grad = (np.exp(logp) - target) / len(X)
    np.testing.assert_allclose(model.get_weights()[0], w - 0.1 * xm.T @ grad, rtol=1e-10)


def test_mixup_mixes_float_targets_and_sample_weights():
    X, _ = classification_data(24, 4, seed=0)
    Y = np.random.default_rng(1).standard_normal((24, 2))
    sw = np.random.default_rng(2).uniform(0.5, 2.0, 24)
    model = linear(n_out=2)
    w, b = model.get_weights()
    trainer = fnn.Trainer(model, "mse", fnn.optim.SGD(0.1), batch_size=None, seed=5, augment=fnn.augment.Mixup(1.0))
    history = trainer.fit(X, Y, epochs=1, sample_weight=sw, verbose=0)
    xm, _, lam, perm = mixed(X, np.zeros(24, int), 1.0, 5)
    ym, wm = lam * Y + (1 - lam) * Y[perm], lam * sw + (1 - lam) * sw[perm]
    err = xm @ w + b - ym
    assert history.history["loss"][0] == pytest.approx((wm[:, None] * err**2).sum() / err.size, rel=1e-12)


def test_augmentations_apply_in_order_and_only_in_training():
    X, y = classification_data(24, 4, seed=0)
    model = linear()
    seen = capture_inputs(model)
    noise, mix = fnn.augment.GaussianNoise(0.2), fnn.augment.Mixup(0.5)
    trainer = fnn.Trainer(model, "cross_entropy", batch_size=None, seed=6, augment=[noise, mix])
    trainer.fit(X, y, epochs=1, validation=(X, y), verbose=0)
    noisy = REFERENCE.gaussian_noise(X, std=0.2, key=trainer._augment_keys[0], step=0)
    xm, _, _, _ = mixed(noisy, y, 0.5, 6)  # mixup draws first from the Trainer's generator
    assert len(seen) == 1  # validation ran without augmentation (and evaluate below)
    np.testing.assert_allclose(seen[0], xm, rtol=1e-12)
    assert trainer._augment_keys[0] != trainer._augment_keys[1]
    plain = fnn.Trainer(model, "cross_entropy")
    assert trainer.evaluate(X, y) == plain.evaluate(X, y)
    assert len(seen) == 1 and noise.state_dict() == {"step": 1}


@pytest.mark.parametrize("device", DEVICES)
def test_reproducible_from_the_trainer_seed(device):
    X, y = fnn.datasets.make_moons(n=80, seed=0)

    def train(seed):
        model = fnn.Sequential([fnn.layers.Dense(16, activation="relu"), fnn.layers.Dense(2)], seed=0, device=device)
        fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.1, momentum=0.9), batch_size=16, seed=seed,
                    augment=[fnn.augment.GaussianNoise(0.1), fnn.augment.Mixup(0.3)]).fit(X, y, epochs=3, verbose=0)
        return model.get_weights()

    a, b, c = train(1), train(1), train(2)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.skipif(not CPU_BUILT, reason="the compiled CPU backend is not built")
def test_augmented_steady_state_allocates_nothing():
    X, y = fnn.datasets.load_digits()
    model = fnn.Sequential([fnn.layers.Dense(64), fnn.layers.BatchNorm(), fnn.layers.Activation("relu"),
                            fnn.layers.Dropout(0.2), fnn.layers.Dense(10)], seed=0)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.01, momentum=0.9), batch_size=32, seed=0,
                          augment=[fnn.augment.GaussianNoise(0.1), fnn.augment.Mixup(0.2)])
    # 1,601 rows: 50 full batches and a last one of one row, merged (BatchNorm needs two)
    assert_steady_state_allocates_nothing(trainer, X[:1601], y[:1601])


@pytest.mark.parametrize("make, error, match", [
    (lambda: fnn.Trainer(fnn.Sequential([fnn.layers.Dense(2)]), "mse", augment=5), TypeError,
     r"Trainer: augment must be a fastnn.augment augmentation or a list of them \(GaussianNoise, Mixup\); got 5\."),
    (lambda: fnn.augment.GaussianNoise(-1.0), ValueError, r"GaussianNoise: std must be >= 0.0; got -1.0\."),
    (lambda: fnn.augment.Mixup(0.0), ValueError, r"Mixup: alpha must be > 0.0; got 0.0\."),
    (lambda: fnn.augment.GaussianNoise("big"), TypeError, r"GaussianNoise: std must be a real number"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
