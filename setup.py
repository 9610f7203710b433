"""Build of fastnn's compiled CPU kernels: every csrc/<name>.pyx becomes fastnn._ext.<name>.

The package metadata lives in pyproject.toml; this file only declares the Cython extensions and
their compiler settings, once.

    python setup.py build_ext --inplace                          # optimised development build
    FASTNN_CYTHON_DEBUG=1 python setup.py build_ext --inplace    # bounds, wraparound and
                                                                 # initialization checks, -O0 -g

Switching between the two rebuilds everything (the mode of the last build is kept in build/).
No OpenMP, by design: the only thread pool is NumPy's OpenBLAS, which the kernels call through
function pointers (see fastnn/backends/cpu.py); the elementwise passes run serially. The build is
portable (no -march=native). Neither math flag changes a result: -fno-math-errno lets gcc
vectorize sqrt and inline fabs; -fno-trapping-math (clang's default) lets it vectorize selects
such as leaky_relu's x > 0 ? x : alpha x, which gcc otherwise keeps as branches (up to 30x slower
on random signs). No NumPy headers are needed: the kernels take typed memoryviews only.
"""

import glob
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("FASTNN_CYTHON_DEBUG", "0").strip().lower() not in ("", "0", "false", "no")
MODE = "debug" if DEBUG else "release"

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}
FLAGS = {  # by compiler type; gcc and clang share the "unix" flags
    "unix": ["-O0", "-g"] if DEBUG else ["-O3", "-fno-math-errno", "-fno-trapping-math"],
    "msvc": ["/Od", "/Zi"] if DEBUG else ["/O2"],
}

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
        for ext in self.extensions:
            ext.extra_compile_args = list(flags)
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
