"""Fuzzing the four loaders (issue 17): every hostile file ends in ModelFormatError (or loads,
when the mutation left it valid), with bounded memory.

The bounded tests run in CI (hypothesis, derandomized, a fixed example budget: the file takes
a few seconds). The long campaign is ``pytest -m fuzz tests/test_fuzz.py`` (FASTNN_FUZZ_CASES
cases, default 10^5) or ``python tests/fuzz_files.py --cases 100000``.
"""

from __future__ import annotations

import os
import tempfile
import tracemalloc
import zipfile

import numpy as np
import pytest
from fuzz_files import (
    BOMB_BYTES,
    KINDS,
    bomb_zip,
    hostile,
    loaders,
    members,
    outcome,
    valid_file,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn as fnn

LOADERS = loaders()
FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _run(loader, data):
    _, load = LOADERS[loader]
    fd, path = tempfile.mkstemp(suffix=".fnn")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return outcome(load, path)
    finally:
        os.unlink(path)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_the_valid_files_load(loader):
    assert _run(loader, valid_file(LOADERS[loader][0])) == "ok"


@pytest.mark.parametrize("loader", list(LOADERS))
@FAST
@given(seed=st.integers(0, 2**63 - 1))
def test_issue17_mutated_files_raise_only_model_format_error(loader, seed):
    how, data = hostile(np.random.default_rng(seed), LOADERS[loader][0])
    assert _run(loader, data) in ("ok", "ModelFormatError"), how


@pytest.mark.parametrize("loader", list(LOADERS))
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_raise_model_format_error(loader, data):
    assert _run(loader, data) == "ModelFormatError"


@pytest.mark.parametrize("loader", list(LOADERS))
@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(prefix=st.binary(min_size=0, max_size=64), cut=st.integers(0, 4096))
def test_spliced_and_truncated_files_raise_model_format_error(loader, prefix, cut):
    data = valid_file(LOADERS[loader][0])
    result = _run(loader, prefix + data[:cut])
    # a prefix before a whole archive is legal zip (self-extracting archives): then it loads
    assert result == "ModelFormatError" or (result == "ok" and cut >= len(data))


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
                         ids=["deflate", "bzip2", "lzma"])
@pytest.mark.parametrize("declared", ["true", "lie"])
@pytest.mark.parametrize("loader", list(LOADERS))
def test_issue17_compression_bombs_are_refused_before_inflating(loader, method, declared):
    """A 64 MiB bomb in the manifest or an array member: the reader stops at its cap (the
    manifest's 1 MiB, the array's size), so the Python heap never grows by the bomb's size
    (main inflated a whole member first: a 3.3 KB bzip2 file reached 2.4 GiB)."""
    kind = LOADERS[loader][0]
    entries = [(n, p, zipfile.ZIP_DEFLATED if n.endswith(".json") else zipfile.ZIP_STORED)
               for n, p in members(valid_file(kind))]
    for target in (entries[0][0], entries[1][0]):
        size = BOMB_BYTES if declared == "true" else 100
        data = bomb_zip(entries, target, method, size)
        tracemalloc.start()
        try:
            result = _run(loader, data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert result == "ModelFormatError", (target, result)
        assert peak < 8 << 20, (target, peak)


@pytest.mark.parametrize("kind", KINDS)
def test_files_recompressed_with_any_zip_method_still_load(kind, tmp_path):
    """The bounded inflation reads what other zip tools write (bzip2, lzma, deflate)."""
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        path = tmp_path / f"{kind}-{method}.fnn"
        with zipfile.ZipFile(path, "w", compression=method) as zf:
            for name, payload in members(valid_file(kind)):
                zf.writestr(name, payload)
        if kind == "ensemble":
            assert len(fnn.Ensemble.load(path).models) == 2
        elif kind == "checkpoint":
            assert fnn.Trainer.from_checkpoint(path).epoch == 1
        else:
            assert fnn.load(path).input_dim == 5


@pytest.mark.fuzz
def test_fuzz_campaign():
    """The long campaign: FASTNN_FUZZ_CASES hostile files (default 10^5) through the four loaders;
    no exception other than ModelFormatError and peak memory under 200 MB."""
    from fuzz_files import campaign

    summary = campaign(int(os.environ.get("FASTNN_FUZZ_CASES", "100000")), int(os.environ.get("FASTNN_FUZZ_SEED", "0")))
    print(summary)
    assert summary["n_unexpected"] == 0, summary["unexpected"]
    assert summary["peak_rss_mb"] < 200, summary
