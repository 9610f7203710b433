"""End-to-end training benchmark of fastnn (bench/TARGETS.md's configurations); see bench/README.md.

    PYTHONPATH=. python bench/e2e.py --config small --compare torch

A thin wrapper around ``fastnn.tools.bench.main`` (the same as ``fastnn bench ...``). It prints a
table and, with --json, writes the results; it never asserts.
"""

import os
import sys

try:
    import fastnn  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # run from a checkout: use the package beside this folder
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastnn.tools.bench import main

if __name__ == "__main__":
    sys.exit(main())
