"""tests/backends' kernel tests, every one, against device='cuda' (see conftest.py)."""

from __future__ import annotations

from test_kernels import *  # noqa: F401,F403  (tests/backends, on sys.path by conftest.py)
from test_norm_kernels import *  # noqa: F401,F403
