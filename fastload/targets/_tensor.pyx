"""The tensors every encoder sends: float32 in [0, 1), unique per request, never allocated per
request (see _tensor.pyi)."""
import math
import operator
import sys

import numpy as np

from cpython.bytes cimport PyBytes_AS_STRING
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

if sys.byteorder != "little":
    # Tensors and stamps are written as native floats; the wire wants little-endian.
    raise ImportError("fastload's encoders need a little-endian CPU")

cdef enum:
    STAMP_BITS = 22
    STAMP_VALUES = 3

# Requests each encoder keeps in rotation: a request's bytes stay valid for this many calls.
DEFAULT_POOL_SIZE = 8

# protobuf refuses messages of 2 GiB and more; keep the tensor well inside that.
MAX_TENSOR_NBYTES = 2**31 - 2**20


cdef inline uint64_t _splitmix64(uint64_t* state) noexcept nogil:
    state[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline uint64_t _rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef class TensorSource:
    """A pool of random tensors used in rotation and stamped per request, or fresh values."""

    def __init__(self, shape, *, Py_ssize_t pool_size=DEFAULT_POOL_SIZE, bint fresh=False, seed=0):
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        if not 0 <= seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        dims = tuple(operator.index(dim) for dim in shape)
        for i, dim in enumerate(dims):
            if dim < 0:
                raise ValueError(f"shape[{i}] must be >= 0, got {dim}")
        elements = math.prod(dims)
        if elements * 4 > MAX_TENSOR_NBYTES:
            raise ValueError(f"shape {list(dims)} holds {elements} float32 values "
                             f"({elements * 4} bytes); protobuf messages must stay under 2 GiB")
        self.shape = dims
        self.elements = elements
        self.pool_size = pool_size
        self.fresh = fresh
        cdef uint64_t state = seed
        if fresh:
            for i in range(4):
                self._rng[i] = _splitmix64(&state)
            self._pool = b""
        else:
            rng = np.random.default_rng(seed)
            self._pool = rng.random((pool_size, elements), dtype=np.float32).tobytes()

    @property
    def nbytes(self):
        return self.elements * 4

    def pool_buffer(self, Py_ssize_t index):
        """A copy of pool tensor ``index`` before stamping, for tests and inspection."""
        if self.fresh:
            raise ValueError("a fresh=True encoder has no pool")
        if not 0 <= index < self.pool_size:
            raise IndexError(f"pool index must be in [0, {self.pool_size}), got {index}")
        cdef Py_ssize_t nbytes = self.elements * 4
        return self._pool[index * nbytes:(index + 1) * nbytes]

    cdef void fill(self, char* out, Py_ssize_t slot, uint64_t counter, bint refill) noexcept:
        """Write request ``counter``'s tensor at ``out``: fresh values, or pool tensor ``slot``
        (copied only when ``refill``: a reused request still holds it) stamped with
        ``counter``."""
        if self.fresh:
            with nogil:  # ~120 µs for 1x3x224x224; other senders may run meanwhile
                _fill_random(self._rng, out, self.elements)
            return
        if refill:
            memcpy(out, PyBytes_AS_STRING(self._pool) + slot * self.elements * 4,
                   self.elements * 4)
        _stamp(out, counter, self.elements)


cdef inline void _stamp(char* tensor, uint64_t counter, Py_ssize_t elements) noexcept:
    """The counter, 22 bits per value, in the first three values: k * 2**-22 is an exact
    float32 in [0, 1), and 66 bits hold any 64-bit counter, so no two requests are equal."""
    cdef float value
    cdef Py_ssize_t i
    for i in range(min(STAMP_VALUES, elements)):
        value = <float>(counter & ((1 << STAMP_BITS) - 1)) * <float>(1.0 / (1 << STAMP_BITS))
        memcpy(tensor + 4 * i, &value, 4)
        counter >>= STAMP_BITS


cdef inline void _fill_random(uint64_t* rng, char* out, Py_ssize_t count) noexcept nogil:
    """``count`` float32 values in [0, 1) from xoshiro256+ (top 24 bits of each draw); ``rng``
    is the generator's state, advanced."""
    cdef uint64_t s0 = rng[0], s1 = rng[1], s2 = rng[2], s3 = rng[3]
    cdef uint64_t result, t
    cdef float value
    cdef Py_ssize_t i
    for i in range(count):
        result = s0 + s3
        t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl(s3, 45)
        value = <float>(result >> 40) * <float>(1.0 / (1 << 24))
        memcpy(out + 4 * i, &value, 4)
    rng[0], rng[1], rng[2], rng[3] = s0, s1, s2, s3


cdef class PooledEncoder:
    """What every encoder shares: its tensors, one reusable request per pool slot (request k
    uses slot k % pool_size) and the request counter."""

    def __init__(self, shape, *, pool_size=DEFAULT_POOL_SIZE, fresh=False, seed=0):
        self._tensor = TensorSource(shape, pool_size=pool_size, fresh=fresh, seed=seed)
        self._requests = [None] * self._tensor.pool_size
        self._encoded = 0

    @property
    def shape(self):
        return self._tensor.shape

    @property
    def tensor_nbytes(self):
        return self._tensor.nbytes

    @property
    def pool_size(self):
        return self._tensor.pool_size

    @property
    def fresh(self):
        return self._tensor.fresh

    @property
    def encoded(self):
        return self._encoded

    def pool_buffer(self, Py_ssize_t index):
        """A copy of pool tensor ``index`` before stamping, for tests and inspection."""
        return self._tensor.pool_buffer(index)
