"""Build of fastnn's compiled CPU kernels: every csrc/<name>.pyx becomes fastnn._ext.<name>.

The package metadata lives in pyproject.toml; this file only declares the Cython extensions and
their compiler settings, once.

    python setup.py build_ext --inplace                          # optimised build, stripped
    FASTNN_DEBUG_SYMBOLS=1 python setup.py build_ext --inplace   # optimised, with debug information
    FASTNN_CYTHON_DEBUG=1 python setup.py build_ext --inplace    # bounds, wraparound and
                                                                 # initialization checks, -O0 -g

Switching between modes rebuilds everything (the mode of the last build is kept in build/). A
release build carries no debug information (-g0, and the linker strips the symbol table on
Linux): the extension modules shrink from 15 MB to 2.4 MB; a wheel for deployment is built by
scripts/build-wheel.sh (auditwheel-repaired, see docs/deployment.md).
No OpenMP, by design: the thread pools are NumPy's OpenBLAS, which the kernels call through
function pointers (see fastnn/backends/cpu.py), and fastnn's own (csrc/fnn_pool.h, compiled once
in fastnn._ext.pool) for the passes it splits; the other elementwise passes run serially. The build is
portable (no -march=native). Neither math flag changes a result: -fno-math-errno lets gcc
vectorize sqrt and inline fabs; -fno-trapping-math (clang's default) lets it vectorize selects
such as leaky_relu's x > 0 ? x : alpha x, which gcc otherwise keeps as branches (up to 30x slower
on random signs). No NumPy headers are needed: the kernels take typed memoryviews only.
"""

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").strip().lower() not in ("", "0", "false", "no")


DEBUG = _flag("FASTNN_CYTHON_DEBUG")
SYMBOLS = DEBUG or _flag("FASTNN_DEBUG_SYMBOLS")
MODE = "debug" if DEBUG else ("release+symbols" if SYMBOLS else "release")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}
FLAGS = {  # by compiler type; gcc and clang share the "unix" flags (-g0 overrides Python's own -g)
    "unix": ["-O0", "-g"] if DEBUG else ["-O3", "-fno-math-errno", "-fno-trapping-math", "-g" if SYMBOLS else "-g0"],
    "msvc": ["/Od", "/Zi"] if DEBUG else ["/O2"],
}
#: linker flags: strip the symbol table too (GNU ld; macOS's ld64 strips debug notes with -S)
LINK_FLAGS = [] if SYMBOLS else (["-s"] if sys.platform.startswith("linux") else
                                 ["-Wl,-S"] if sys.platform == "darwin" else [])

_STAMP = os.path.join(HERE, "build", "cython-mode")


def _last_mode():
    try:
        with open(_STAMP) as f:
            return f.read().strip()
    except OSError:
        return None


_MODE_CHANGED = _last_mode() != MODE


class BuildExt(build_ext):
    """build_ext with the flags of the compiler in use; rebuilds all when the mode changed."""

    def build_extensions(self):
        flags = FLAGS.get(self.compiler.compiler_type, FLAGS["unix"])
        unix = self.compiler.compiler_type == "unix"
        for ext in self.extensions:
            ext.extra_compile_args = list(flags)
            ext.extra_link_args = list(LINK_FLAGS) if unix else []
        if _MODE_CHANGED:
            self.force = True
        super().build_extensions()
        os.makedirs(os.path.dirname(_STAMP), exist_ok=True)
        with open(_STAMP, "w") as f:
            f.write(MODE + "\n")


def extensions():
    """fastnn._ext.<name> for each csrc/<name>.pyx; from an sdist that carries only the generated
    csrc/<name>.c (setuptools packs the C, not the .pyx, unless MANIFEST.in adds them), from those."""
    pyx = sorted(glob.glob(os.path.join("csrc", "*.pyx"), root_dir=HERE))
    sources = pyx or sorted(glob.glob(os.path.join("csrc", "*.c"), root_dir=HERE))
    if not sources:
        raise SystemExit("setup.py: found neither csrc/*.pyx nor generated csrc/*.c to build.")
    exts = [Extension(f"fastnn._ext.{os.path.splitext(os.path.basename(src))[0]}", [src])
            for src in sources]
    if not pyx:
        return exts
    from Cython.Build import cythonize

    return cythonize(
        exts,
        compiler_directives=DIRECTIVES,
        include_path=[os.path.join(HERE, "csrc")],
        force=_MODE_CHANGED,
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
