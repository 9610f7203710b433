"""The documentation's code runs as written: docs/transfer_learning.md's example, and the
examples in the docstrings of the modules that have been checked so far."""

import doctest
import os
import re

import pytest

import fastnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_transfer_learning_example_reaches_a_good_accuracy_on_5_to_9(capsys):
    (code,) = python_blocks("docs/transfer_learning.md")
    ns = {}
    exec(compile(code, "docs/transfer_learning.md", "exec"), ns)
    assert ns["accuracy_old"] >= 0.97
    assert ns["accuracy_head"] >= 0.85  # the frozen 0-4 body as features for 5-9 (0.916 measured)
    assert ns["accuracy_tuned"] >= 0.93  # everything fine-tuned (0.966 measured)
    assert ns["frozen_kept"] is True
    printed = capsys.readouterr().out
    assert printed.startswith("digits 0-4: ") and "frozen weights unchanged: True" in printed


@pytest.mark.parametrize("module", [fastnn.augment, fastnn.layers, fastnn._random])
def test_docstring_examples(module):
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failed == 0


def test_issue16_readme_quickstart_and_deployment_run_as_written(tmp_path, monkeypatch, capsys):
    """README's python blocks (but the GPU one), in order, in one namespace, in a fresh folder."""
    pytest.importorskip("matplotlib")  # the first command's [plot] extra
    blocks = [b for b in python_blocks("README.md") if 'device="cuda"' not in b]
    assert len(blocks) == 2 and "history.plot" in blocks[0] and "fastnn.inference.load" in blocks[1]
    monkeypatch.chdir(tmp_path)
    ns = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md block {i}", "exec"), ns)
    assert ns["trainer"].evaluate(ns["Xte"], ns["yte"])["accuracy"] > 0.95
    assert (tmp_path / "curves.png").stat().st_size > 0 and (tmp_path / "digits.fnn").exists()
    assert "proba" not in blocks[1]  # the model ends in logits
    assert (ns["labels"] == ns["y"]).mean() > 0.95


def test_readme_first_command_installs_what_the_quickstart_needs():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    first = re.search(r"```bash\n(.*?)\n```", text, re.S).group(1)
    assert 'pip install -e ".[plot]"' in first and first.endswith("fastnn train")
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = re.search(r"^TEST_COMMAND='(.*)'$", f.read(), re.M).group(1)
    assert re.search(r"<!-- test-command -->\n```bash\n(.*?)\n```", text, re.S).group(1) == ci
