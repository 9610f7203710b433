"""Smoke test of the end-to-end benchmark (fastnn.tools.bench): it runs, and its JSON is well formed.
No timing assertions: benchmarks print and never assert."""

import json
import math

import pytest

from fastnn.tools import bench


def _cpu_built():
    from fastnn.backends import get_backend

    try:
        get_backend("cpu")
    except Exception:  # the compiled extension is not built
        return False
    return True


DEVICES = ["reference", pytest.param("cpu", marks=pytest.mark.skipif(not _cpu_built(),
                                                                     reason="fastnn._ext is not built"))]


def _positive_finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.mark.parametrize("device", DEVICES)
def test_quick_run_writes_well_formed_json(tmp_path, capsys, device):
    path = tmp_path / "b.json"
    assert bench.main(["--quick", "--config", "tiny,regress", "--device", device, "--json", path]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "regress" in out and "× floor" in out

    data = json.loads(path.read_text())
    assert data["schema"] == bench.SCHEMA
    for key in ("date", "cpu", "cores", "threads", "numpy", "fastnn", "device"):
        assert key in data["machine"]
    assert data["machine"]["device"] == device
    assert data["settings"]["n"] == 2000 and data["settings"]["repeats"] == 1
    assert [r["config"] for r in data["results"]] == ["tiny", "regress"]
    for r in data["results"]:
        assert r["status"] == "ok"
        assert r["optimizer"] and r["optimizer_specified"]
        assert r["steps_per_epoch"] == math.ceil(2000 / r["batch"])
        assert len(r["epoch_s"]) == len(r["floor_epoch_s"]) == 1
        for key in ("us_per_step", "samples_per_s", "floor_us_per_step", "x_floor"):
            assert _positive_finite(r[key]), (r["config"], key, r[key])
        assert all(_positive_finite(t) for t in r["epoch_s"] + r["floor_epoch_s"])
        mem = r["memory"]
        assert mem["method"].startswith("tracemalloc")
        assert mem["steps_measured"] == r["steps_per_epoch"] - 1
        for key in ("epoch_peak_bytes", "step_alloc_bytes_median", "step_alloc_bytes_max"):
            assert isinstance(mem[key], int) and mem[key] >= 0
        assert r["torch"] is None


def test_bn_runs_with_batchnorm_dropout_and_adamw(tmp_path):
    path = tmp_path / "b.json"
    assert bench.main(["--config", "bn", "--n", "300", "--repeats", "1", "--device", "reference",
                       "--json", str(path)]) == 0
    (r,) = json.loads(path.read_text())["results"]
    assert r["status"] == "ok" and _positive_finite(r["us_per_step"])
    assert r["optimizer"].startswith("AdamW") and r["optimizer_note"] is None


def test_the_optimizer_column_says_what_ran(tmp_path):
    path = tmp_path / "b.json"
    assert bench.main(["--config", "tiny", "--n", "200", "--repeats", "1", "--device", "reference",
                       "--json", str(path)]) == 0
    (r,) = json.loads(path.read_text())["results"]
    assert r["optimizer_specified"].startswith("Adam")
    assert r["optimizer"].startswith("Adam") and r["optimizer_note"] is None


def test_optimizer_override_runs_every_configuration_with_it(tmp_path):
    path = tmp_path / "b.json"
    assert bench.main(["--config", "bn,tiny", "--optimizer", "sgd", "--n", "300", "--repeats", "1", "--device",
                       "reference", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["settings"]["optimizer"] == "sgd"
    bn, tiny = data["results"]
    assert bn["status"] == "ok" and _positive_finite(bn["us_per_step"])
    assert bn["optimizer"] == "SGD m=0.9 lr=0.01" and bn["optimizer_specified"].startswith("AdamW")
    assert bn["optimizer_note"] == "--optimizer sgd: SGD m=0.9 lr=0.01 runs instead of the configuration's optimizer"
    assert tiny["optimizer"] == "SGD m=0.9 lr=0.01"
    assert bench.main(["--config", "tiny", "--optimizer", "adamw", "--n", "200", "--repeats", "1", "--device",
                       "reference", "--json", str(path)]) == 0
    (r,) = json.loads(path.read_text())["results"]
    assert r["status"] == "ok" and r["optimizer"].startswith("AdamW")


def test_compare_torch_without_torch_is_a_note(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "_import_torch", lambda: (None, "ImportError: No module named 'torch'"))
    path = tmp_path / "b.json"
    assert bench.main(["--config", "tiny", "--n", "200", "--repeats", "1", "--device", "reference",
                       "--compare", "torch", "--json", str(path)]) == 0
    err = capsys.readouterr().err
    assert "--compare torch skipped" in err
    data = json.loads(path.read_text())
    assert data["settings"]["compare"] is None and data["results"][0]["torch"] is None


def test_compare_torch(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "b.json"
    assert bench.main(["--config", "regress", "--n", "256", "--repeats", "1", "--device", "reference",
                       "--compare", "torch", "--json", str(path)]) == 0
    t = json.loads(path.read_text())["results"][0]["torch"]
    assert t["optimizer"].startswith("Adam")  # the same optimizer as fastnn's (bench/TARGETS.md: Adam)
    for key in ("us_per_step", "samples_per_s", "x_floor", "speedup"):
        assert _positive_finite(t[key])


@pytest.mark.parametrize("args", [["--config", "huge"], ["--n", "0"], ["--repeats", "-1"], ["--device", "gpu"],
                                  ["--optimizer", "lbfgs"]])
def test_bad_arguments_exit_2(args, capsys):
    assert bench.main(args) == 2
    assert "error" in capsys.readouterr().err


def test_floor_products_per_step():
    floor = bench.GemmFloor((784, 512, 512, 10), bench._steps(300, 128))
    assert floor.steps == [128, 128, 44]
    assert floor.n_products == 3 + 3 + 2  # forward per layer, dW per layer, dX except the first layer
    assert floor.epoch() > 0


def test_inference_footprint_benchmark_quick_run(tmp_path):
    # bench/bench_inference.py (a script, not part of the package): runs and writes its JSON
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = tmp_path / "inference.json"
    env = {**os.environ, "PYTHONPATH": root}
    result = subprocess.run([sys.executable, os.path.join(root, "bench", "bench_inference.py"), "--quick",
                             "--json", str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| small 784-128-10 | fastnn.inference |" in result.stdout
    data = json.loads(path.read_text())
    assert _positive_finite(data["imports_s"]["fastnn.inference"]) and _positive_finite(data["imports_s"]["numpy"])
    for config in ("small", "medium"):
        row = data["predict"][f"fastnn.inference / {config}"]
        assert _positive_finite(row["one_row_us"]) and _positive_finite(row["rows_per_s"])
    sizes = data["sizes_bytes"]
    assert sizes["fastnn + numpy"]["bytes"] > sizes["numpy"]["bytes"] > 0


@pytest.mark.skipif(not _cpu_built(), reason="fastnn._ext is not built")
@pytest.mark.parametrize("policy", ["fixed", "adaptive"])
def test_thread_policy_is_applied_and_recorded(tmp_path, capsys, policy):
    from fastnn.backends import cpu

    before = cpu.get_thread_policy()
    expected = policy if cpu.get_num_threads() is not None else "fixed"  # adaptive needs OpenBLAS's thread API
    path = tmp_path / "b.json"
    try:
        assert bench.main(["--quick", "--n", "200", "--config", "tiny", "--thread-policy", policy,
                           "--json", path]) == 0
        assert cpu.get_thread_policy() == expected
    finally:
        cpu.set_thread_policy(before)
    data = json.loads(path.read_text())
    assert data["machine"]["thread_policy"] == expected
    assert data["settings"]["thread_policy"] == policy
    assert f"policy {data['machine']['thread_policy']}" in capsys.readouterr().out
