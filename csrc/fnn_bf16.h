/* Mixed-precision products for training, precision="bf16" (csrc/dense.pyx):
   C (m, n) float32 = op(A) (m, k) @ op(B) (k, n), every operand rounded to bfloat16 (round to
   nearest even, as torch and the reference backend) and every sum in float32.

   The operands are packed once per product into tiles of bf16 (fnn_bf16_pack_a/_b: the
   rounding, any transpose and the zero padding happen in that one pass):
     A: tiles of 16 rows x 32 k (64-byte rows), tile (i, kb) at ((i * KB) + kb) * 512 values;
     B: tiles of 16 k-pairs x 16 columns x 2 ("VNNI": b[2p][j], b[2p+1][j] adjacent), tile
        (j, kb) at ((j * KB) + kb) * 512 values.
   Two kernels read the same tiles, the best the CPU has (fnn_bf16_path, detected once):
     2: AMX: TDPBF16PS on 2 x 2 tile blocks (32 x 32 outputs in four accumulator tiles);
        Linux first grants the process the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM);
     1: AVX512-BF16: VDPBF16PS, 8 rows x 32 columns in 16 zmm accumulators;
     0: none of them: the caller rounds into float32 copies and runs its float32 GEMM (the
        products of bf16 values are exact in float32, so the numerics are the same but for the
        summation order).
   FASTNN_BF16_PATH=0/1/2 caps the path (and fnn_bf16_set_cap: the tests run every path a CPU has). */

#ifndef FNN_BF16_H
#define FNN_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FNN_BF16_TILE 512   /* values (bf16) per packed tile: 16 x 32 */

/* float32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN */
static inline uint16_t fnn_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float fnn_bf16_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The packed operands of one product live in two buffers kept per thread and grown to the
   largest product (allocating megabytes per product cost ~1/3 of the product in page faults);
   a thread's buffers are freed when it ends. Where threads have no destructors (Windows) they
   are allocated per product (fnn_bf16_kept is 0 and the caller frees them). */
#if !defined(_WIN32)
#include <pthread.h>
#define FNN_BF16_KEPT 1
typedef struct { void* p[2]; size_t cap[2]; } fnn_bf16_bufs;
static pthread_key_t fnn_bf16_key;
static pthread_once_t fnn_bf16_once = PTHREAD_ONCE_INIT;
static void fnn_bf16_free_bufs(void* v) {
    fnn_bf16_bufs* b = (fnn_bf16_bufs*)v;
    free(b->p[0]);
    free(b->p[1]);
    free(b);
}
static void fnn_bf16_make_key(void) { (void)pthread_key_create(&fnn_bf16_key, fnn_bf16_free_bufs); }

/* this thread's buffer ``which`` (0 or 1) of at least nbytes, 64-byte aligned; NULL: no memory */
static void* fnn_bf16_buffer(int which, size_t nbytes) {
    fnn_bf16_bufs* b;
    pthread_once(&fnn_bf16_once, fnn_bf16_make_key);
    b = (fnn_bf16_bufs*)pthread_getspecific(fnn_bf16_key);
    if (b == NULL) {
        b = (fnn_bf16_bufs*)calloc(1, sizeof *b);
        if (b == NULL || pthread_setspecific(fnn_bf16_key, b) != 0) { free(b); return NULL; }
    }
    if (b->cap[which] < nbytes) {
        free(b->p[which]);
        b->p[which] = NULL;
        b->cap[which] = 0;
        if (posix_memalign(&b->p[which], 64, nbytes) != 0) { b->p[which] = NULL; return NULL; }
        b->cap[which] = nbytes;
    }
    return b->p[which];
}
#else
#define FNN_BF16_KEPT 0
static void* fnn_bf16_buffer(int which, size_t nbytes) { (void)which; return malloc(nbytes); }
#endif
static const int fnn_bf16_kept = FNN_BF16_KEPT;

/* dst[i] = src[i] rounded to bf16, kept in float32 (the portable path's copies) */
static void fnn_bf16_round(const float* src, float* dst, Py_ssize_t n) {
    Py_ssize_t i;
    for (i = 0; i < n; i++) dst[i] = fnn_bf16_float(fnn_bf16_bits(src[i]));
}

/* C[:rows, :cols] (row stride ldc) = a 16 x 16 block t (row stride 16) */
static void fnn_bf16_put(float* c, Py_ssize_t ldc, const float* t, Py_ssize_t rows, Py_ssize_t cols) {
    Py_ssize_t r;
    for (r = 0; r < rows; r++) memcpy(c + r * ldc, t + r * 16, (size_t)cols * sizeof(float));
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(_WIN32) && \
    (defined(__clang__) || __GNUC__ >= 11)
#define FNN_BF16_X86 1
#include <immintrin.h>
#include <cpuid.h>
#include <unistd.h>
#include <sys/syscall.h>

static int fnn_bf16_detected = -1;   /* what the CPU (and OS) allow, once */
static int fnn_bf16_cap = 2;         /* FASTNN_BF16_PATH, or fnn_bf16_set_cap */

static uint64_t fnn_xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* 2 AMX, 1 AVX512-BF16, 0 neither: the best this CPU allows (detected once per process), at
   most the cap (FASTNN_BF16_PATH at the detection, or fnn_bf16_set_cap) */
static int fnn_bf16_path(void) {
    unsigned a, b, c, d, a1 = 0, b1, c1, d1;
    uint64_t xcr0;
    int path = 0;
    const char* cap;
    if (fnn_bf16_detected >= 0) return fnn_bf16_detected < fnn_bf16_cap ? fnn_bf16_detected : fnn_bf16_cap;
    if (__get_cpuid_count(1, 0, &a, &b, &c, &d) && (c & (1u << 27))) {   /* OSXSAVE */
        xcr0 = fnn_xgetbv0();
        __get_cpuid_count(7, 0, &a, &b, &c, &d);
        __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
        int avx512 = (b & (1u << 16)) && (b & (1u << 30)) && (xcr0 & 0xe6) == 0xe6;   /* F, BW, zmm state */
        if (avx512 && (a1 & (1u << 5))) path = 1;                         /* AVX512_BF16 */
        if (avx512 && (d & (1u << 22)) && (d & (1u << 24))) {              /* AMX-BF16, AMX-TILE */
#if defined(__linux__)
            /* ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18), then XCR0 bits 17, 18 */
            if (syscall(SYS_arch_prctl, 0x1023, 18) == 0 && ((fnn_xgetbv0() >> 17) & 3) == 3) path = 2;
#endif
        }
    }
    cap = getenv("FASTNN_BF16_PATH");
    if (cap != NULL && cap[0] >= '0' && cap[0] <= '2' && cap[1] == 0) fnn_bf16_cap = cap[0] - '0';
    fnn_bf16_detected = path;
    return path < fnn_bf16_cap ? path : fnn_bf16_cap;
}

/* ------------------------------------------------------------------ packing (AVX-512F/BW) */
#define FNN_BF16_V __attribute__((target("avx512f,avx512bw")))
#define FNN_BF16_INLINE static inline __attribute__((always_inline))

/* 16 floats -> their bf16 bits (round to nearest even; NaN stays a quiet NaN) in the low 16
   bits of each 32-bit lane */
FNN_BF16_INLINE FNN_BF16_V __m512i fnn_bf16_lo(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                                     _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x00400000));
    return _mm512_srli_epi32(r, 16);
}

FNN_BF16_INLINE FNN_BF16_V __mmask16 fnn_bf16_mask(Py_ssize_t valid) {
    return valid >= 16 ? (__mmask16)0xFFFF : valid <= 0 ? (__mmask16)0 : (__mmask16)((1u << valid) - 1u);
}

/* the pairs (v0[l], v1[l]) of two rows as bf16, low half v0: one VNNI row of 16 columns */
FNN_BF16_INLINE FNN_BF16_V __m512i fnn_bf16_pairs(const float* r0, const float* r1, __mmask16 m) {
    __m512i lo = fnn_bf16_lo(_mm512_maskz_loadu_ps(m, r0));
    __m512i hi = r1 != NULL ? fnn_bf16_lo(_mm512_maskz_loadu_ps(m, r1)) : _mm512_setzero_si512();
    return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

/* 32 consecutive floats (valid of them) -> 32 bf16, in order, as 16 32-bit lanes */
FNN_BF16_INLINE FNN_BF16_V __m512i fnn_bf16_run(const float* a, Py_ssize_t valid) {
    __m256i y0 = _mm512_cvtepi32_epi16(fnn_bf16_lo(_mm512_maskz_loadu_ps(fnn_bf16_mask(valid), a)));
    __m256i y1 = _mm512_cvtepi32_epi16(fnn_bf16_lo(_mm512_maskz_loadu_ps(fnn_bf16_mask(valid - 16), a + 16)));
    return _mm512_inserti64x4(_mm512_castsi256_si512(y0), y1, 1);
}

/* zero the tiles of tile-rows (A) or tile-columns (B) b0 .. b1-1 (the padding stays zero) */
FNN_BF16_INLINE void fnn_bf16_clear(uint16_t* dst, Py_ssize_t KB, Py_ssize_t b0, Py_ssize_t b1) {
    if (b1 > b0)
        memset(dst + b0 * KB * FNN_BF16_TILE, 0, (size_t)((b1 - b0) * KB * FNN_BF16_TILE) * sizeof(uint16_t));
}

/* r[0..15] (16 x 16 32-bit values) transposed in registers: four stages of unpacks and lane
   shuffles, instead of sixteen 16-lane scatters */
FNN_BF16_INLINE FNN_BF16_V void fnn_bf16_transpose16(__m512i* r) {
    __m512i t[16], u[16];
    int g;
    for (g = 0; g < 16; g += 2) {
        t[g] = _mm512_unpacklo_epi32(r[g], r[g + 1]);
        t[g + 1] = _mm512_unpackhi_epi32(r[g], r[g + 1]);
    }
    for (g = 0; g < 16; g += 4) {       /* rows g..g+3: u[g + c] holds column c (+4, +8, +12) */
        u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (g = 0; g < 4; g++) {           /* rows 0-7 and 8-15: columns g, g+8 (0x88) and g+4, g+12 (0xdd) */
        t[g] = _mm512_shuffle_i32x4(u[g], u[g + 4], 0x88);
        t[g + 4] = _mm512_shuffle_i32x4(u[g], u[g + 4], 0xdd);
        t[g + 8] = _mm512_shuffle_i32x4(u[g + 8], u[g + 12], 0x88);
        t[g + 12] = _mm512_shuffle_i32x4(u[g + 8], u[g + 12], 0xdd);
    }
    for (g = 0; g < 8; g++) {           /* t[g]: column c(g) (rows 0-7), column c(g) + 8 in its upper half */
        int c = (g & 3) + (g & 4);
        r[c] = _mm512_shuffle_i32x4(t[g], t[g + 8], 0x88);
        r[c + 8] = _mm512_shuffle_i32x4(t[g], t[g + 8], 0xdd);
    }
}

/* the 16 rows v[0..15] (32-bit lanes) of a 16 x 16 block written as its columns: tile row q of
   ``tile`` (64 bytes) = lane q of every v */
FNN_BF16_INLINE FNN_BF16_V void fnn_bf16_store_columns(__m512i* v, uint16_t* tile) {
    int q;
    fnn_bf16_transpose16(v);
    for (q = 0; q < 16; q++) _mm512_storeu_si512((void*)(tile + q * 32), v[q]);
}

/* op(A) (m, k): A[i, t] = a[i * lda + t], or a[t * lda + i] when trans -> A tiles */
static FNN_BF16_V void fnn_bf16_pack_a(int trans, const float* a, Py_ssize_t lda, Py_ssize_t m, Py_ssize_t k,
                                       uint16_t* dst, Py_ssize_t ib0, Py_ssize_t ib1) {
    Py_ssize_t KB = (k + 31) / 32, i, ib, kb, p, t, i1 = m < ib1 * 16 ? m : ib1 * 16;
    __m512i v[16];
    fnn_bf16_clear(dst, KB, ib0, ib1);
    if (!trans) {           /* a tile row is 32 consecutive values of a row of a */
        for (i = ib0 * 16; i < i1; i++)
            for (kb = 0; kb < KB; kb++)
                _mm512_storeu_si512((void*)(dst + ((i / 16) * KB + kb) * FNN_BF16_TILE + (i % 16) * 32),
                                    fnn_bf16_run(a + i * lda + kb * 32, k - kb * 32));
    } else {                /* rows t, t+1 of a give pair p of the tile's 16 rows: its columns */
        for (ib = ib0; ib < ib1; ib++) {
            __mmask16 mk = fnn_bf16_mask(m - ib * 16);
            for (kb = 0; kb < KB; kb++) {
                for (p = 0; p < 16; p++) {
                    t = kb * 32 + 2 * p;
                    v[p] = t < k ? fnn_bf16_pairs(a + t * lda + ib * 16, t + 1 < k ? a + (t + 1) * lda + ib * 16
                                                                                    : NULL, mk)
                                 : _mm512_setzero_si512();
                }
                fnn_bf16_store_columns(v, dst + (ib * KB + kb) * FNN_BF16_TILE);
            }
        }
    }
}

/* op(B) (k, n): B[t, j] = b[t * ldb + j], or b[j * ldb + t] when trans -> VNNI B tiles */
static FNN_BF16_V void fnn_bf16_pack_b(int trans, const float* b, Py_ssize_t ldb, Py_ssize_t k, Py_ssize_t n,
                                       uint16_t* dst, Py_ssize_t jb0, Py_ssize_t jb1) {
    Py_ssize_t KB = (k + 31) / 32, j, jb, kb, p, t;
    __m512i v[16];
    fnn_bf16_clear(dst, KB, jb0, jb1);
    if (!trans) {           /* rows t, t+1 of b give one tile row (16 columns of pairs) */
        for (kb = 0; kb < KB; kb++)
            for (p = 0; p < 16; p++) {
                t = kb * 32 + 2 * p;
                if (t >= k) break;
                for (jb = jb0; jb < jb1; jb++)
                    _mm512_storeu_si512((void*)(dst + (jb * KB + kb) * FNN_BF16_TILE + p * 32),
                                        fnn_bf16_pairs(b + t * ldb + jb * 16,
                                                       t + 1 < k ? b + (t + 1) * ldb + jb * 16 : NULL,
                                                       fnn_bf16_mask(n - jb * 16)));
            }
    } else {                /* 32 consecutive values of row j of b are column j's 16 pairs */
        for (jb = jb0; jb < jb1; jb++)
            for (kb = 0; kb < KB; kb++) {
                for (p = 0; p < 16; p++) {
                    j = jb * 16 + p;
                    v[p] = j < n ? fnn_bf16_run(b + j * ldb + kb * 32, k - kb * 32) : _mm512_setzero_si512();
                }
                fnn_bf16_store_columns(v, dst + (jb * KB + kb) * FNN_BF16_TILE);
            }
    }
}

/* ------------------------------------------------------------------ AVX512-BF16 */
#define FNN_BF16_AVX __attribute__((target("avx512f,avx512bw,avx512bf16")))

/* rows r0.. r0+R of A tile row-block ib x columns of B tiles jb, jb+1 (jn of them): 8 x 32 */
static inline __attribute__((always_inline)) FNN_BF16_AVX void fnn_bf16_avx_block(
        const int R, const uint16_t* ap, const uint16_t* bp0, const uint16_t* bp1, Py_ssize_t KB,
        int r0, float* c, Py_ssize_t ldc, Py_ssize_t rows, Py_ssize_t cols) {
    __m512 acc0[8], acc1[8];
    Py_ssize_t kb;
    int r, p;
#pragma GCC unroll 8
    for (r = 0; r < R; r++) { acc0[r] = _mm512_setzero_ps(); acc1[r] = _mm512_setzero_ps(); }
    for (kb = 0; kb < KB; kb++) {
        const uint16_t* at = ap + kb * FNN_BF16_TILE + r0 * 32;
        const uint16_t* b0 = bp0 + kb * FNN_BF16_TILE;
        const uint16_t* b1 = bp1 + kb * FNN_BF16_TILE;
        for (p = 0; p < 16; p++) {
            __m512bh v0 = (__m512bh)_mm512_loadu_si512((const void*)(b0 + p * 32));
            __m512bh v1 = (__m512bh)_mm512_loadu_si512((const void*)(b1 + p * 32));
#pragma GCC unroll 8
            for (r = 0; r < R; r++) {
                int32_t pair;
                memcpy(&pair, at + r * 32 + p * 2, 4);
                __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
                acc0[r] = _mm512_dpbf16_ps(acc0[r], av, v0);
                acc1[r] = _mm512_dpbf16_ps(acc1[r], av, v1);
            }
        }
    }
    for (r = 0; r < R && r < rows; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, fnn_bf16_mask(cols), acc0[r]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, fnn_bf16_mask(cols - 16), acc1[r]);
    }
}

/* C (m, n) from packed tiles: the outputs of A tiles ib0 .. ib1-1 x B tiles jb0 .. jb1-1 */
static FNN_BF16_AVX void fnn_bf16_avx_gemm(const uint16_t* ap, const uint16_t* bp, Py_ssize_t m, Py_ssize_t n,
                                           Py_ssize_t k, float* c, Py_ssize_t ldc, Py_ssize_t ib0, Py_ssize_t ib1,
                                           Py_ssize_t jb0, Py_ssize_t jb1) {
    Py_ssize_t KB = (k + 31) / 32, ib, jb, i0, j0;
    int r0;
    for (jb = jb0; jb < jb1; jb += 2) {
        const uint16_t* b0 = bp + jb * KB * FNN_BF16_TILE;
        const uint16_t* b1 = jb + 1 < jb1 ? b0 + KB * FNN_BF16_TILE : b0;   /* a lone last tile: masked */
        j0 = jb * 16;
        Py_ssize_t cols = n - j0 < 32 ? n - j0 : 32;
        if (jb + 1 >= jb1 && cols > 16) cols = 16;
        for (ib = ib0; ib < ib1; ib++) {
            const uint16_t* a = ap + ib * KB * FNN_BF16_TILE;
            for (r0 = 0; r0 < 16; r0 += 8) {
                i0 = ib * 16 + r0;
                if (i0 >= m) break;
                fnn_bf16_avx_block(8, a, b0, b1, KB, r0, c + i0 * ldc + j0, ldc, m - i0, cols);
            }
        }
    }
}

/* ------------------------------------------------------------------ AMX */
#define FNN_BF16_AMX __attribute__((target("amx-tile,amx-bf16,avx512f")))

typedef struct {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} fnn_tilecfg;

static FNN_BF16_AMX void fnn_amx_config(void) {
    fnn_tilecfg cfg;
    int i;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (i = 0; i < 8; i++) { cfg.colsb[i] = 64; cfg.rows[i] = 16; }
    _tile_loadconfig(&cfg);
}

/* the four 16 x 16 accumulators (tiles 0-3) into C, through t where a block is cut by m or n */
static FNN_BF16_AMX void fnn_amx_store(float* c, Py_ssize_t ldc, Py_ssize_t rows, Py_ssize_t cols, int two_i,
                                       int two_j, float* t) {
#define FNN_AMX_PUT(T, DI, DJ)                                                                   \
    if (rows - (DI) >= 16 && cols - (DJ) >= 16) {                                                \
        _tile_stored(T, c + (DI) * ldc + (DJ), (int)(ldc * sizeof(float)));                      \
    } else if (rows > (DI) && cols > (DJ)) {                                                     \
        _tile_stored(T, t, 64);                                                                  \
        fnn_bf16_put(c + (DI) * ldc + (DJ), ldc, t, rows - (DI) < 16 ? rows - (DI) : 16,          \
                     cols - (DJ) < 16 ? cols - (DJ) : 16);                                        \
    }
    FNN_AMX_PUT(0, 0, 0)
    if (two_j) { FNN_AMX_PUT(1, 0, 16) }
    if (two_i) { FNN_AMX_PUT(2, 16, 0) }
    if (two_i && two_j) { FNN_AMX_PUT(3, 16, 16) }
#undef FNN_AMX_PUT
}

/* C (m, n) from packed tiles, A tiles ib0 .. ib1-1 x B tiles jb0 .. jb1-1: blocks of 2 x 2
   tiles (32 x 32 outputs); tiles 0-3 accumulate, 4-5 hold A, 6-7 hold B */
static FNN_BF16_AMX void fnn_bf16_amx_gemm(const uint16_t* ap, const uint16_t* bp, Py_ssize_t m, Py_ssize_t n,
                                           Py_ssize_t k, float* c, Py_ssize_t ldc, Py_ssize_t ib0, Py_ssize_t ib1,
                                           Py_ssize_t jb0, Py_ssize_t jb1) {
    Py_ssize_t KB = (k + 31) / 32, ib, jb, kb;
    float t[256] __attribute__((aligned(64)));
    fnn_amx_config();
    for (jb = jb0; jb < jb1; jb += 2) {
        int two_j = jb + 1 < jb1;
        const uint16_t* b0 = bp + jb * KB * FNN_BF16_TILE;
        const uint16_t* b1 = two_j ? b0 + KB * FNN_BF16_TILE : b0;
        for (ib = ib0; ib < ib1; ib += 2) {
            int two_i = ib + 1 < ib1;
            const uint16_t* a0 = ap + ib * KB * FNN_BF16_TILE;
            const uint16_t* a1 = two_i ? a0 + KB * FNN_BF16_TILE : a0;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (kb = 0; kb < KB; kb++) {
                _tile_loadd(4, a0 + kb * FNN_BF16_TILE, 64);
                _tile_loadd(6, b0 + kb * FNN_BF16_TILE, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_loadd(7, b1 + kb * FNN_BF16_TILE, 64);
                _tile_dpbf16ps(1, 4, 7);
                _tile_loadd(5, a1 + kb * FNN_BF16_TILE, 64);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            fnn_amx_store(c + ib * 16 * ldc + jb * 16, ldc, m - ib * 16, n - jb * 16, two_i, two_j, t);
        }
    }
    _tile_release();
}

/* C = the packed product on the kernel of ``path`` (1 or 2), the outputs of A tiles ib0 .. ib1-1
   x B tiles jb0 .. jb1-1 */
static void fnn_bf16_gemm_packed(int path, const uint16_t* ap, const uint16_t* bp, Py_ssize_t m, Py_ssize_t n,
                                 Py_ssize_t k, float* c, Py_ssize_t ldc, Py_ssize_t ib0, Py_ssize_t ib1,
                                 Py_ssize_t jb0, Py_ssize_t jb1) {
    if (path >= 2) fnn_bf16_amx_gemm(ap, bp, m, n, k, c, ldc, ib0, ib1, jb0, jb1);
    else fnn_bf16_avx_gemm(ap, bp, m, n, k, c, ldc, ib0, ib1, jb0, jb1);
}

#else
#define FNN_BF16_X86 0
static int fnn_bf16_cap = 0;
static int fnn_bf16_path(void) { return 0; }
static void fnn_bf16_pack_a(int trans, const float* a, Py_ssize_t lda, Py_ssize_t m, Py_ssize_t k, uint16_t* dst,
                            Py_ssize_t ib0, Py_ssize_t ib1) {
    (void)trans; (void)a; (void)lda; (void)m; (void)k; (void)dst; (void)ib0; (void)ib1;
}
static void fnn_bf16_pack_b(int trans, const float* b, Py_ssize_t ldb, Py_ssize_t k, Py_ssize_t n, uint16_t* dst,
                            Py_ssize_t jb0, Py_ssize_t jb1) {
    (void)trans; (void)b; (void)ldb; (void)k; (void)n; (void)dst; (void)jb0; (void)jb1;
}
static void fnn_bf16_gemm_packed(int path, const uint16_t* ap, const uint16_t* bp, Py_ssize_t m, Py_ssize_t n,
                                 Py_ssize_t k, float* c, Py_ssize_t ldc, Py_ssize_t ib0, Py_ssize_t ib1,
                                 Py_ssize_t jb0, Py_ssize_t jb1) {
    (void)path; (void)ap; (void)bp; (void)m; (void)n; (void)k; (void)c; (void)ldc; (void)ib0; (void)ib1;
    (void)jb0; (void)jb1;
}
#endif

/* the highest path the products may take from now on (0 to 2); the detection still decides */
static void fnn_bf16_set_cap(int cap) {
    (void)fnn_bf16_path();   /* the environment's cap is read once, before this one */
    fnn_bf16_cap = cap < 0 ? 0 : cap > 2 ? 2 : cap;
}

#endif
