# Philox-4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3",
# SC 2011; Random123's philox4x32 with 10 rounds), shared (inline) by dropout.pyx and augment.pyx.
#
# fastnn's counter-based streams: the random 32-bit word of flat element e (row-major position in
# the array) under a 64-bit key and a 64-bit step is word (e mod 4) of
#     Philox4x32-10(counter = (b lo, b hi, step lo, step hi), key = (key lo, key hi)),  b = e div 4,
# where "lo"/"hi" are the low and high 32 bits. One round maps (c0, c1, c2, c3) with round key
# (k0, k1) to (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)), M0 = 0xD2511F53,
# M1 = 0xCD9E8D57, products taken as 64 bits; the key is bumped by (0x9E3779B9, 0xBB67AE85) mod
# 2^32 before rounds 2..10. The NumPy reference (fastnn.backends.base.philox_words) computes the
# same words, bit for bit, and a CUDA thread per block b computes them the same way.
#
# Speed (portable SSE2 build): the rounds run over PHILOX_BLOCKS independent blocks held as four
# arrays (structure of arrays), which gcc vectorizes; the words are then stored interleaved, in
# element order, so that callers loop over them contiguously. ~1.3 ns per word on the project machine.

from libc.stdint cimport uint32_t, uint64_t

cdef enum:
    PHILOX_ROUNDS = 10
    PHILOX_BLOCKS = 64                        # blocks per philox_words call: 256 words
    PHILOX_WORDS = 4 * PHILOX_BLOCKS


cdef struct PhiloxKey:
    uint32_t k0[PHILOX_ROUNDS]
    uint32_t k1[PHILOX_ROUNDS]


cdef inline PhiloxKey philox_key(uint64_t key) noexcept nogil:
    """The round keys of a 64-bit key (bumped by the Weyl constants before rounds 2..10)."""
    cdef PhiloxKey ks
    cdef int r
    ks.k0[0] = <uint32_t>key
    ks.k1[0] = <uint32_t>(key >> 32)
    for r in range(1, PHILOX_ROUNDS):
        ks.k0[r] = ks.k0[r - 1] + 0x9E3779B9u
        ks.k1[r] = ks.k1[r - 1] + 0xBB67AE85u
    return ks


cdef inline void philox_words(const PhiloxKey* ks, uint64_t step, uint64_t first_block,
                              Py_ssize_t count, uint32_t* words) noexcept nogil:
    """words[4 j + w] = word w of block first_block + j, for j < count <= PHILOX_BLOCKS."""
    cdef uint32_t c0[PHILOX_BLOCKS]
    cdef uint32_t c1[PHILOX_BLOCKS]
    cdef uint32_t c2[PHILOX_BLOCKS]
    cdef uint32_t c3[PHILOX_BLOCKS]
    cdef uint32_t a, b, k0, k1
    cdef uint64_t p0, p1, blk
    cdef Py_ssize_t j
    cdef int r
    for j in range(count):
        blk = first_block + <uint64_t>j
        c0[j] = <uint32_t>blk
        c1[j] = <uint32_t>(blk >> 32)
        c2[j] = <uint32_t>step
        c3[j] = <uint32_t>(step >> 32)
    for r in range(PHILOX_ROUNDS):
        k0 = ks.k0[r]
        k1 = ks.k1[r]
        for j in range(count):
            p0 = <uint64_t>0xD2511F53u * c0[j]
            p1 = <uint64_t>0xCD9E8D57u * c2[j]
            a = <uint32_t>(p1 >> 32) ^ c1[j] ^ k0
            b = <uint32_t>(p0 >> 32) ^ c3[j] ^ k1
            c0[j] = a
            c1[j] = <uint32_t>p1
            c2[j] = b
            c3[j] = <uint32_t>p0
    for j in range(count):
        words[4 * j] = c0[j]
        words[4 * j + 1] = c1[j]
        words[4 * j + 2] = c2[j]
        words[4 * j + 3] = c3[j]
