"""Inverted dropout (Srivastava et al. 2014) with masks from a counter-based generator.

The mask is never drawn as an array: element e of x (row-major) is kept when the 32-bit word e
of the Philox4x32-10 stream (key, step) is >= threshold (= floor(rate 2^32), computed by the
caller), as described in _philox.pxd, so the same (key, step) gives the same mask on every
backend and in any order of evaluation. Kept elements are multiplied by scale = 1 / (1 - rate) in
x's dtype. The forward stores the mask as uint8 for the backward: reading it back costs ~0.1 ns
per element, regenerating it ~1.3 ns (measured; see docs/design.md).
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from cython cimport floating

from _philox cimport PhiloxKey, philox_key, philox_words, PHILOX_BLOCKS, PHILOX_WORDS
from _types cimport ptr2, cptr2


def forward(const floating[:, ::1] x not None, uint64_t key, uint64_t step, uint32_t threshold,
            double scale, uint8_t[:, ::1] mask, floating[:, ::1] out not None):
    """out = x * scale where word e of the stream (key, step) >= threshold, else 0; mask (may be
    None) receives 1 / 0. out may alias x."""
    cdef Py_ssize_t n = x.shape[0], m = x.shape[1]
    if (out.shape[0] != n or out.shape[1] != m
            or (mask is not None and (mask.shape[0] != n or mask.shape[1] != m))):
        raise ValueError("dropout_forward: shapes do not match.")
    cdef Py_ssize_t size = n * m, e = 0, j, count
    if size == 0:
        return
    cdef const floating* px = cptr2(x)
    cdef floating* po = ptr2(out)
    cdef uint8_t* pm = &mask[0, 0] if mask is not None else NULL
    cdef floating s = scale
    cdef PhiloxKey ks = philox_key(key)
    cdef uint32_t words[PHILOX_WORDS]
    cdef uint8_t keep
    with nogil:
        while e < size:
            count = size - e if size - e < PHILOX_WORDS else PHILOX_WORDS
            philox_words(&ks, step, <uint64_t>(e // 4), (count + 3) // 4, words)
            if pm != NULL:
                for j in range(count):
                    keep = words[j] >= threshold
                    pm[e + j] = keep
                    po[e + j] = px[e + j] * (s * keep)
            else:
                for j in range(count):
                    po[e + j] = px[e + j] * (s * (words[j] >= threshold))
            e += count


def backward(const floating[:, ::1] dy not None, const uint8_t[:, ::1] mask not None, double scale,
             floating[:, ::1] out not None):
    """out = dy * scale where mask != 0, else 0; out may alias dy."""
    cdef Py_ssize_t n = dy.shape[0], m = dy.shape[1], i
    if mask.shape[0] != n or mask.shape[1] != m or out.shape[0] != n or out.shape[1] != m:
        raise ValueError("dropout_backward: shapes do not match.")
    if n * m == 0:
        return
    cdef const floating* pdy = cptr2(dy)
    cdef const uint8_t* pm = &mask[0, 0]
    cdef floating* po = ptr2(out)
    cdef floating s = scale
    with nogil:
        for i in range(n * m):
            po[i] = pdy[i] * (s * (pm[i] != 0))


def random_words(uint64_t key, uint64_t step, uint64_t first_block, uint32_t[::1] out not None):
    """out[i] = word i of the stream (key, step) counted from block first_block (4 words per block;
    len(out) a multiple of 4). For tests and benchmarks of the generator itself."""
    cdef Py_ssize_t size = out.shape[0], e = 0, count
    if size % 4:
        raise ValueError("random_words: the length of out must be a multiple of 4.")
    cdef PhiloxKey ks = philox_key(key)
    with nogil:
        while e < size:
            count = size - e if size - e < PHILOX_WORDS else PHILOX_WORDS
            philox_words(&ks, step, first_block + <uint64_t>(e // 4), count // 4, &out[e])
            e += count
