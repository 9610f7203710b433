/* The native thread pool that fastnn's compiled kernels share (one per process): csrc/pool.pyx
   compiles the implementation (FNN_POOL_IMPLEMENTATION) and hands its functions out as one
   fnn_pool_api, whose address the other modules read at import (pool.api_address()), as they do
   for the BLAS route.

   fnn_parallel(fn, arg, parts) runs fn(arg, part, parts) for part = 0 .. parts-1: part 0 in the
   caller, the others on workers, and returns when all are done. The workers start at the first
   call that needs them (nothing at import), up to parts - 1 (at most FNN_MAX_THREADS - 1); after
   a task they spin FNN_SPIN_NS (back-to-back calls need no wake-up), then sleep on a condition
   variable. One task runs at a time (other callers wait, asleep, on a mutex). A forked child
   has none of the parent's threads and starts its own (pthread_atfork). Without pthreads
   (Windows) the parts run in the caller, in turn; fnn_pool_ready(parts) says whether the parts
   of a call run at the same time, which parts that wait for each other need. */

#ifndef FNN_POOL_H
#define FNN_POOL_H

typedef void (*fnn_task_fn)(void* arg, int part, int parts);

typedef struct {
    void (*parallel)(fnn_task_fn fn, void* arg, int parts);
    int (*ready)(int parts);            /* 1: parallel(.., parts) runs its parts at once */
    int (*started)(void);               /* workers running in this process */
    unsigned long (*sleeps)(void);      /* times a worker went to sleep */
    /* parallel(), only where its parts surely run at once: 0 (nothing run) when called from
       inside one of the pool's tasks (the pool is taken by the caller's own task) or when the
       workers cannot start; parts that wait for each other (OpenBLAS's jobs) need this */
    int (*try_parallel)(fnn_task_fn fn, void* arg, int parts);
    /* how long idle workers spin before they sleep, in ns (FNN_SPIN_NS outside solo spans) */
    void (*set_spin)(double ns);
} fnn_pool_api;

/* part ``part``'s share [*a0, *a1) of n items cut into ``parts`` runs of whole ``unit``s */
static inline void fnn_share(Py_ssize_t n, Py_ssize_t unit, int part, int parts, Py_ssize_t* a0, Py_ssize_t* a1) {
    Py_ssize_t per = ((n + unit - 1) / unit + parts - 1) / parts * unit;
    *a0 = part * per < n ? part * per : n;
    *a1 = *a0 + per < n ? *a0 + per : n;
}

/* a spinning barrier for the parts of one pool task (short waits between the steps of one row);
   only for parts that run at once (the pool's ready()), never on Windows, where parts run in turn */
typedef struct { int parts; int count; int gen; } fnn_barrier;

static inline void fnn_barrier_init(fnn_barrier* b, int parts) { b->parts = parts; b->count = 0; b->gen = 0; }
#if defined(_WIN32)
static inline void fnn_barrier_wait(fnn_barrier* b) { (void)b; }
#else

static inline void fnn_barrier_wait(fnn_barrier* b) {
    int gen = __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == b->parts) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->gen, gen + 1, __ATOMIC_RELEASE);
    } else {
        while (__atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == gen) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
}
#endif

#endif

/* the implementation, once, where FNN_POOL_IMPLEMENTATION is defined (pool.pyx) */
#if defined(FNN_POOL_IMPLEMENTATION) && !defined(FNN_POOL_IMPLEMENTED)
#define FNN_POOL_IMPLEMENTED
#include <stdint.h>
#define FNN_MAX_THREADS 64
#define FNN_SPIN_NS 50000.0

#if defined(_WIN32)
static unsigned long fnn_sleeps = 0;
static int fnn_pool_started(void) { return 0; }
static int fnn_pool_ready(int parts) { return parts <= 1; }
static void fnn_parallel(fnn_task_fn fn, void* arg, int parts) {
    int i;
    for (i = 0; i < parts; i++) fn(arg, i, parts);
}
static int fnn_try_parallel(fnn_task_fn fn, void* arg, int parts) {
    if (parts > 1) return 0;
    fnn_parallel(fn, arg, parts);
    return 1;
}
#else
#include <pthread.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define fnn_pause() _mm_pause()
#elif defined(__aarch64__)
#define fnn_pause() __asm__ __volatile__("yield")
#else
#define fnn_pause() ((void)0)
#endif

static pthread_mutex_t fnn_lock = PTHREAD_MUTEX_INITIALIZER;      /* fnn_sleeping, gen bumps */
static pthread_cond_t fnn_wake = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t fnn_dispatch = PTHREAD_MUTEX_INITIALIZER;  /* one split product at a time */
static int fnn_started = 0;          /* workers running in this process */
static int fnn_sleeping = 0;
static unsigned long fnn_sleeps = 0; /* times a worker went to sleep */
static int fnn_atfork = 0;
static unsigned long fnn_gen = 0;    /* bumped (atomically) per task */
static int fnn_pending = 0;          /* parts the workers have not finished */
static fnn_task_fn fnn_fn = 0;
static void* fnn_arg = 0;
static int fnn_parts = 0;
static unsigned long fnn_start_gen[FNN_MAX_THREADS + 1];   /* fnn_gen when worker i was created */
static long long fnn_spin_ns = (long long)FNN_SPIN_NS;   /* fnn_set_spin */
static __thread int fnn_in_task = 0; /* this thread is running a part of a task (or waits for one) */

static double fnn_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void* fnn_worker(void* p) {
    int id = (int)(Py_ssize_t)p;
    unsigned long seen = fnn_start_gen[id], g;   /* tasks after its creation are its own */
    for (;;) {
        double start = fnn_ns();
        int spins = 0;
        while ((g = __atomic_load_n(&fnn_gen, __ATOMIC_ACQUIRE)) == seen) {
            fnn_pause();
            if (++spins % 64 == 0 && fnn_ns() - start > (double)__atomic_load_n(&fnn_spin_ns, __ATOMIC_RELAXED)) {
                pthread_mutex_lock(&fnn_lock);
                fnn_sleeping++;
                fnn_sleeps++;
                while ((g = __atomic_load_n(&fnn_gen, __ATOMIC_ACQUIRE)) == seen)
                    pthread_cond_wait(&fnn_wake, &fnn_lock);
                fnn_sleeping--;
                pthread_mutex_unlock(&fnn_lock);
                break;
            }
        }
        seen = g;
        if (id < fnn_parts) {
            fnn_in_task = 1;
            fnn_fn(fnn_arg, id, fnn_parts);
            fnn_in_task = 0;
            __atomic_sub_fetch(&fnn_pending, 1, __ATOMIC_ACQ_REL);
        }
    }
    return 0;
}

/* fork: the child has none of the parent's threads; it starts its own pool when it needs one */
static void fnn_fork_prepare(void) { pthread_mutex_lock(&fnn_dispatch); pthread_mutex_lock(&fnn_lock); }
static void fnn_fork_parent(void) { pthread_mutex_unlock(&fnn_lock); pthread_mutex_unlock(&fnn_dispatch); }
static void fnn_fork_child(void) {
    pthread_mutex_init(&fnn_lock, 0);
    pthread_mutex_init(&fnn_dispatch, 0);
    pthread_cond_init(&fnn_wake, 0);
    fnn_started = 0;
    fnn_sleeping = 0;
    fnn_pending = 0;
}

static int fnn_pool_started(void) { return fnn_started; }

/* start workers up to parts - 1 (under fnn_dispatch) */
static void fnn_grow(int parts) {
    pthread_attr_t attr;
    pthread_t t;
    if (!fnn_atfork) {
        if (pthread_atfork(fnn_fork_prepare, fnn_fork_parent, fnn_fork_child) != 0) return;
        fnn_atfork = 1;
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (parts > FNN_MAX_THREADS) parts = FNN_MAX_THREADS;
    while (fnn_started < parts - 1) {
        fnn_start_gen[fnn_started + 1] = __atomic_load_n(&fnn_gen, __ATOMIC_ACQUIRE);
        if (pthread_create(&t, &attr, fnn_worker, (void*)(Py_ssize_t)(fnn_started + 1)) != 0) break;
        fnn_started++;
    }
    pthread_attr_destroy(&attr);
}

/* 1 when fnn_parallel(.., parts) will run its parts at the same time (the workers it needs
   are started; they never stop), so that the parts may wait for each other */
static int fnn_pool_ready(int parts) {
    int ready;
    if (parts <= 1) return 1;
    pthread_mutex_lock(&fnn_dispatch);
    if (fnn_started < parts - 1) fnn_grow(parts);
    ready = fnn_started >= parts - 1;
    pthread_mutex_unlock(&fnn_dispatch);
    return ready;
}

/* fn(arg, part, parts) for part = 0 .. parts-1: part 0 in the caller, the others on workers */
static void fnn_parallel(fnn_task_fn fn, void* arg, int parts) {
    int i;
    if (parts > 1) {
        pthread_mutex_lock(&fnn_dispatch);
        if (fnn_started < parts - 1) fnn_grow(parts);
        if (fnn_started >= parts - 1) {
            fnn_fn = fn;
            fnn_arg = arg;
            fnn_parts = parts;
            __atomic_store_n(&fnn_pending, parts - 1, __ATOMIC_RELEASE);
            pthread_mutex_lock(&fnn_lock);
            __atomic_add_fetch(&fnn_gen, 1, __ATOMIC_ACQ_REL);
            if (fnn_sleeping) pthread_cond_broadcast(&fnn_wake);
            pthread_mutex_unlock(&fnn_lock);
            fnn_in_task = 1;
            fn(arg, 0, parts);
            while (__atomic_load_n(&fnn_pending, __ATOMIC_ACQUIRE) > 0) fnn_pause();
            fnn_in_task = 0;
            pthread_mutex_unlock(&fnn_dispatch);
            return;
        }
        pthread_mutex_unlock(&fnn_dispatch);   /* no thread could be started: run it here */
    }
    for (i = 0; i < parts; i++) fn(arg, i, parts);
}

static int fnn_try_parallel(fnn_task_fn fn, void* arg, int parts) {
    if (parts > 1 && (fnn_in_task || parts > FNN_MAX_THREADS || !fnn_pool_ready(parts))) return 0;
    fnn_parallel(fn, arg, parts);
    return 1;
}
#endif

static unsigned long fnn_pool_sleeps(void) { return fnn_sleeps; }
#if defined(_WIN32)
static void fnn_set_spin(double ns) { (void)ns; }
#else
static void fnn_set_spin(double ns) { __atomic_store_n(&fnn_spin_ns, (long long)(ns > 0 ? ns : FNN_SPIN_NS), __ATOMIC_RELAXED); }
#endif
static const fnn_pool_api fnn_pool_instance = {fnn_parallel, fnn_pool_ready, fnn_pool_started, fnn_pool_sleeps,
                                               fnn_try_parallel, fnn_set_spin};
#endif
