"""The native thread pool fastnn's compiled kernels share, one per process (csrc/fnn_pool.h).

Inference splits its products over it (csrc/infer.pyx) and training's bf16 products theirs
(csrc/dense.pyx); both read ``api_address()`` at import, so there is one pool and one set of
workers. Nothing starts at import: the workers start at the first call that needs them.
"""

from libc.stdint cimport uintptr_t

from _pool cimport fnn_pool_api

cdef extern from *:
    """
    #define FNN_POOL_IMPLEMENTATION
    #include "fnn_pool.h"
    """
    const fnn_pool_api fnn_pool_instance


def api_address():
    """Address of the pool's fnn_pool_api (for the kernel modules, at their import)."""
    return <uintptr_t>&fnn_pool_instance


def workers():
    """Worker threads started in this process (0 until a call was first split)."""
    return fnn_pool_instance.started()


def sleeps():
    """Times a worker went to sleep (idle longer than the spin time) since the module loaded."""
    return fnn_pool_instance.sleeps()
