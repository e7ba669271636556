from libc.stdint cimport uint64_t


cdef class TensorSource:
    cdef readonly tuple shape
    cdef readonly Py_ssize_t elements
    cdef readonly Py_ssize_t pool_size
    cdef readonly bint fresh
    cdef bytes _pool  # pool_size tensors back to back, little-endian float32
    cdef uint64_t _rng[4]  # xoshiro256+ state for fresh mode

    cdef void fill(self, char* out, Py_ssize_t slot, uint64_t counter, bint refill) noexcept


cdef class PooledEncoder:
    cdef TensorSource _tensor
    cdef list _requests  # the reusable request of each pool slot; None until first built
    cdef uint64_t _encoded
