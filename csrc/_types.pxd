# Helpers shared by every kernel module (inline, nothing to link).
#
# Kernels take fused ``floating`` memoryviews (float32 or float64, C-contiguous) and loop over raw
# pointers inside ``with nogil``. These turn a view into its data pointer.

from cython cimport floating

# &a[0, 0] of an empty view is out of bounds (and raises in the debug build): use NULL instead.
cdef inline floating* ptr2(floating[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL

cdef inline const floating* cptr2(const floating[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL

cdef inline floating* ptr1(floating[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL

cdef inline const floating* cptr1(const floating[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL
