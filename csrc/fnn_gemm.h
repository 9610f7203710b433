/* fastnn's own float32 product for compiled inference (csrc/infer.pyx), AVX-512 where the CPU has it.

   Weights W (k, n) are packed once, at load, into panels of FNN_NR = 32 columns: panel p holds
   columns [32p, 32p + 32) as k rows of 32 contiguous floats (64-byte aligned, the last panel's
   missing columns zero). Both products read the panels as they lie:

   - fnn_gemm_rows: C (rows, n) = A (rows, k) @ W + b, ReLU optionally fused, computed by blocks
     of FNN_MR = 12 rows x 32 columns held in 24 zmm accumulators (the 12 rows of A stay in L1
     while every panel streams past them from L2); the bias and ReLU are applied in registers
     before the one store of each output.
   - fnn_gemv_panels: one row, y = x @ W + b for a range of panels (a thread's share), four
     independent accumulator pairs per panel so that the loads, not the FMA latency, bound it.

   No instruction set is assumed at build time (the build is portable): the AVX-512 functions
   carry a target attribute and run only when fnn_gemm_available() found AVX-512F at run time
   (gcc's and clang's __builtin_cpu_supports also check that the OS saves the zmm state).
   Elsewhere fnn_gemm_available() is 0 and infer.pyx uses OpenBLAS as before. */

#ifndef FNN_GEMM_H
#define FNN_GEMM_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FNN_NR 32
#define FNN_MR 12

/* floats a packed W (k, n) takes */
static Py_ssize_t fnn_panel_floats(Py_ssize_t k, Py_ssize_t n) {
    return ((n + FNN_NR - 1) / FNN_NR) * k * FNN_NR;
}

/* W (k, n) row-major -> panels (dst: fnn_panel_floats(k, n) floats, 64-byte aligned) */
static void fnn_pack_panels(const float* w, Py_ssize_t k, Py_ssize_t n, float* dst) {
    Py_ssize_t p, i, j0, nc, panels = (n + FNN_NR - 1) / FNN_NR;
    for (p = 0; p < panels; p++) {
        j0 = p * FNN_NR;
        nc = n - j0 < FNN_NR ? n - j0 : FNN_NR;
        for (i = 0; i < k; i++) {
            float* row = dst + (p * k + i) * FNN_NR;
            memcpy(row, w + i * n + j0, (size_t)nc * sizeof(float));
            if (nc < FNN_NR) memset(row + nc, 0, (size_t)(FNN_NR - nc) * sizeof(float));
        }
    }
}

static void* fnn_aligned_alloc(size_t bytes) {
#if defined(_WIN32)
    return _aligned_malloc(bytes, 64);
#else
    void* p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
#endif
}

static void fnn_aligned_free(void* p) {
#if defined(_WIN32)
    _aligned_free(p);
#else
    free(p);
#endif
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(_WIN32)
#define FNN_HAVE_AVX512 1
#include <immintrin.h>
#define FNN_AVX512 __attribute__((target("avx512f,fma")))
#define FNN_INLINE static inline __attribute__((always_inline))

static int fnn_gemm_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

/* lanes of columns j0 .. j0 + 31 below n, as two 16-lane masks */
FNN_INLINE FNN_AVX512 void fnn_masks(Py_ssize_t n, Py_ssize_t j0, __mmask16* m0, __mmask16* m1) {
    Py_ssize_t nc = n - j0;
    *m0 = nc >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nc) - 1u);
    *m1 = nc >= 32 ? (__mmask16)0xFFFF : nc <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nc - 16)) - 1u);
}

/* MR rows x one panel: C[r, j0 + :32] = A[r, :] @ P (+ b, ReLU); MR a constant at each use */
FNN_INLINE FNN_AVX512 void fnn_kernel(const int MR, const float* a, Py_ssize_t lda, const float* p,
                                      Py_ssize_t k, const float* b, float* c, Py_ssize_t ldc,
                                      __mmask16 m0, __mmask16 m1, int relu) {
    __m512 acc0[FNN_MR], acc1[FNN_MR], b0, b1, av;
    Py_ssize_t i;
    int r;
#pragma GCC unroll 12
    for (r = 0; r < MR; r++) { acc0[r] = _mm512_setzero_ps(); acc1[r] = _mm512_setzero_ps(); }
    for (i = 0; i < k; i++) {
        b0 = _mm512_load_ps(p + i * FNN_NR);
        b1 = _mm512_load_ps(p + i * FNN_NR + 16);
#pragma GCC unroll 12
        for (r = 0; r < MR; r++) {
            av = _mm512_set1_ps(a[r * lda + i]);
            acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
        }
    }
    if (b != NULL) {
        b0 = _mm512_maskz_loadu_ps(m0, b);
        b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#pragma GCC unroll 12
        for (r = 0; r < MR; r++) { acc0[r] = _mm512_add_ps(acc0[r], b0); acc1[r] = _mm512_add_ps(acc1[r], b1); }
    }
    if (relu) {
        av = _mm512_setzero_ps();
#pragma GCC unroll 12
        for (r = 0; r < MR; r++) { acc0[r] = _mm512_max_ps(acc0[r], av); acc1[r] = _mm512_max_ps(acc1[r], av); }
    }
#pragma GCC unroll 12
    for (r = 0; r < MR; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
    }
}

#define FNN_KERNEL_CASE(M) case M: \
    for (pp = p0; pp < p1; pp++) { \
        fnn_masks(n, pp * FNN_NR, &m0, &m1); \
        fnn_kernel(M, a, lda, w + pp * k * FNN_NR, k, b ? b + pp * FNN_NR : NULL, c + pp * FNN_NR, ldc, m0, m1, relu); \
    } break;

/* C (rows, n), row stride ldc, columns of panels p0 .. p1-1 = A (rows, k), row stride lda, @ the
   packed W + b (b may be NULL), ReLU applied when relu; C may not overlap A */
static FNN_AVX512 void fnn_gemm_rows(const float* a, Py_ssize_t rows, Py_ssize_t k, Py_ssize_t lda,
                                     const float* w, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t n, const float* b,
                                     float* c, Py_ssize_t ldc, int relu) {
    Py_ssize_t r0, pp;
    __mmask16 m0, m1;
    for (r0 = 0; r0 < rows; r0 += FNN_MR) {
        int mr = rows - r0 < FNN_MR ? (int)(rows - r0) : FNN_MR;
        const float* ar = a + r0 * lda;
        float* cr = c + r0 * ldc;
        {
            const float* a = ar;
            float* c = cr;
            switch (mr) {
                FNN_KERNEL_CASE(12) FNN_KERNEL_CASE(11) FNN_KERNEL_CASE(10) FNN_KERNEL_CASE(9)
                FNN_KERNEL_CASE(8) FNN_KERNEL_CASE(7) FNN_KERNEL_CASE(6) FNN_KERNEL_CASE(5)
                FNN_KERNEL_CASE(4) FNN_KERNEL_CASE(3) FNN_KERNEL_CASE(2) FNN_KERNEL_CASE(1)
            }
        }
    }
}
#undef FNN_KERNEL_CASE

/* one row: y[32 p0 : min(n, 32 p1)] = x (k,) @ the packed W's panels p0 .. p1-1 (+ b, ReLU) */
static FNN_AVX512 void fnn_gemv_panels(const float* x, Py_ssize_t k, const float* w, Py_ssize_t p0,
                                       Py_ssize_t p1, Py_ssize_t n, const float* b, float* y, int relu) {
    Py_ssize_t p, i;
    __mmask16 m0, m1;
    for (p = p0; p < p1; p++) {
        const float* q = w + p * k * FNN_NR;
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), t0 = _mm512_setzero_ps(),
               t1 = _mm512_setzero_ps(), u0 = _mm512_setzero_ps(), u1 = _mm512_setzero_ps(),
               v0 = _mm512_setzero_ps(), v1 = _mm512_setzero_ps(), xv;
        for (i = 0; i + 4 <= k; i += 4, q += 4 * FNN_NR) {
            xv = _mm512_set1_ps(x[i]);
            s0 = _mm512_fmadd_ps(xv, _mm512_load_ps(q), s0);
            s1 = _mm512_fmadd_ps(xv, _mm512_load_ps(q + 16), s1);
            xv = _mm512_set1_ps(x[i + 1]);
            t0 = _mm512_fmadd_ps(xv, _mm512_load_ps(q + 32), t0);
            t1 = _mm512_fmadd_ps(xv, _mm512_load_ps(q + 48), t1);
            xv = _mm512_set1_ps(x[i + 2]);
            u0 = _mm512_fmadd_ps(xv, _mm512_load_ps(q + 64), u0);
            u1 = _mm512_fmadd_ps(xv, _mm512_load_ps(q + 80), u1);
            xv = _mm512_set1_ps(x[i + 3]);
            v0 = _mm512_fmadd_ps(xv, _mm512_load_ps(q + 96), v0);
            v1 = _mm512_fmadd_ps(xv, _mm512_load_ps(q + 112), v1);
        }
        for (; i < k; i++, q += FNN_NR) {
            xv = _mm512_set1_ps(x[i]);
            s0 = _mm512_fmadd_ps(xv, _mm512_load_ps(q), s0);
            s1 = _mm512_fmadd_ps(xv, _mm512_load_ps(q + 16), s1);
        }
        s0 = _mm512_add_ps(_mm512_add_ps(s0, t0), _mm512_add_ps(u0, v0));
        s1 = _mm512_add_ps(_mm512_add_ps(s1, t1), _mm512_add_ps(u1, v1));
        fnn_masks(n, p * FNN_NR, &m0, &m1);
        if (b != NULL) {
            s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(m0, b + p * FNN_NR));
            s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(m1, b + p * FNN_NR + 16));
        }
        if (relu) {
            s0 = _mm512_max_ps(s0, _mm512_setzero_ps());
            s1 = _mm512_max_ps(s1, _mm512_setzero_ps());
        }
        _mm512_mask_storeu_ps(y + p * FNN_NR, m0, s0);
        _mm512_mask_storeu_ps(y + p * FNN_NR + 16, m1, s1);
    }
}

#else   /* no AVX-512 kernels in this build: never called (fnn_gemm_available() is 0) */
#define FNN_HAVE_AVX512 0
static int fnn_gemm_available(void) { return 0; }
static void fnn_gemm_rows(const float* a, Py_ssize_t rows, Py_ssize_t k, Py_ssize_t lda, const float* w,
                          Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t n, const float* b, float* c, Py_ssize_t ldc,
                          int relu) {
    (void)a; (void)rows; (void)k; (void)lda; (void)w; (void)p0; (void)p1; (void)n; (void)b; (void)c; (void)ldc;
    (void)relu;
}
static void fnn_gemv_panels(const float* x, Py_ssize_t k, const float* w, Py_ssize_t p0, Py_ssize_t p1,
                            Py_ssize_t n, const float* b, float* y, int relu) {
    (void)x; (void)k; (void)w; (void)p0; (void)p1; (void)n; (void)b; (void)y; (void)relu;
}
#endif

#endif
