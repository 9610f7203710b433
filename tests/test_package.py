"""The package surface (fastnn/__init__.py): every public name resolves, and submodules are
imported on first use, so that ``import fastnn`` and ``import fastnn.inference`` stay light."""

import json
import os
import subprocess
import sys

import pytest

import fastnn as fnn

PUBLIC_MODULES = ["callbacks", "data", "datasets", "export", "inference", "layers", "losses", "metrics", "optim",
                  "schedules", "tuning"]


def modules_after(code):
    """The fastnn modules loaded by ``code`` in a fresh interpreter."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(fnn.__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('fastnn'))))"
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_every_public_name_resolves_to_its_object():
    import fastnn.io
    import fastnn.model
    import fastnn.trainer

    for name in fnn.__all__:
        assert getattr(fnn, name) is not None, name
    assert fnn.Sequential is fastnn.model.Sequential
    assert fnn.Trainer is fastnn.trainer.Trainer
    assert fnn.load is fastnn.io.load
    for name in PUBLIC_MODULES:
        assert getattr(fnn, name).__name__ == f"fastnn.{name}"
    assert fnn.layers.Dense.__module__ == "fastnn.layers"
    assert fnn.ModelFormatError.__module__ == "fastnn.errors"


def test_from_imports_and_dir():
    from fastnn import Sequential, Trainer, inference, layers, load  # noqa: F401

    assert set(fnn.__all__) <= set(dir(fnn))
    assert set(PUBLIC_MODULES) <= set(fnn.__all__)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match=r"^module 'fastnn' has no attribute 'Dens'$"):
        fnn.Dens  # noqa: B018
    assert not hasattr(fnn, "cuda_kernels") and not hasattr(fnn, "__wrapped__")


def test_other_submodules_resolve_on_first_use_as_before():
    loaded = modules_after("import fastnn as f\nassert f.io.read_model_file and f.model.Sequential and f.trainer")
    assert {"fastnn.io", "fastnn.model", "fastnn.trainer"} <= loaded


def test_a_missing_dependency_of_a_submodule_is_not_hidden(monkeypatch):
    def missing_numpy(name, package=None):
        raise ModuleNotFoundError("No module named 'numpy'", name="numpy")

    monkeypatch.setattr(fnn.importlib, "import_module", missing_numpy)
    monkeypatch.delitem(fnn.__dict__, "metrics", raising=False)
    with pytest.raises(ModuleNotFoundError, match="numpy"):
        fnn.metrics  # noqa: B018


def test_import_fastnn_loads_no_submodule_until_used():
    assert modules_after("import fastnn") == {"fastnn", "fastnn._version", "fastnn.errors"}
    used = modules_after("import fastnn as fnn\nfnn.layers.Dense(3)")
    assert {"fastnn.layers", "fastnn.backends.base"} <= used
    assert not {"fastnn.trainer", "fastnn.model", "fastnn.data", "fastnn.backends.cpu"} & used


def test_import_fastnn_inference_loads_only_what_prediction_needs():
    loaded = modules_after("import fastnn.inference")
    assert {"fastnn.inference", "fastnn.io", "fastnn._special"} <= loaded
    assert not {"fastnn.trainer", "fastnn.model", "fastnn.optim", "fastnn.data", "fastnn.layers",
                "fastnn.backends.cpu", "fastnn.export"} & loaded


def test_the_documented_one_screen_example_still_works():
    X, y = fnn.datasets.load_iris()
    model = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.Dense(3)], input_dim=4, seed=0,
                           device="reference")
    trainer = fnn.Trainer(model, loss="cross_entropy", optimizer=fnn.optim.SGD(0.05, momentum=0.9), seed=0)
    trainer.fit(X, y, epochs=1, verbose=0)
    assert set(trainer.evaluate(X, y)) == {"loss"}
