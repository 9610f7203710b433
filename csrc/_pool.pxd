# The shared thread pool's interface (csrc/fnn_pool.h), for the modules that cimport it; the pool
# itself is compiled once, in pool.pyx, whose api_address() gives its fnn_pool_api.

cdef extern from "fnn_pool.h":
    ctypedef void (*fnn_task_fn)(void* arg, int part, int parts) noexcept nogil
    ctypedef struct fnn_pool_api:
        void (*parallel)(fnn_task_fn fn, void* arg, int parts) noexcept nogil
        int (*ready)(int parts) noexcept nogil
        int (*started)() noexcept nogil
        unsigned long (*sleeps)() noexcept nogil
        int (*try_parallel)(fnn_task_fn fn, void* arg, int parts) noexcept nogil
        void (*set_spin)(double ns) noexcept nogil
    ctypedef struct fnn_barrier:
        pass
    void fnn_barrier_init(fnn_barrier* b, int parts) noexcept nogil
    void fnn_barrier_wait(fnn_barrier* b) noexcept nogil
    void fnn_share(Py_ssize_t n, Py_ssize_t unit, int part, int parts, Py_ssize_t* a0, Py_ssize_t* a1) noexcept nogil
