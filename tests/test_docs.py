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
