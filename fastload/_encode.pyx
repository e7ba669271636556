"""The only place request bytes are built: InferRequest wire format written by hand.

The encoder keeps ``pool_size`` complete, pre-serialised requests, one per pool tensor, and hands
them out in rotation. ``encode()`` rewrites the chosen request in place: the small header fields
and a 12-byte stamp in the tensor, or the whole tensor in fresh mode. No protobuf objects,
lists, numpy arrays or request-sized allocations exist per request. grpcio copies a message into
its own buffer when the call starts (SendMessageOperation.c), so a request handed to grpcio can
be rewritten as soon as the call has started. Fields are written in field-number order, as
protobuf does, so every request is byte-identical to ``InferRequest(...).SerializeToString()``.
"""
import math
import operator
import sys

import numpy as np

from cpython.number cimport PyNumber_Index
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

if sys.byteorder != "little":
    # Payload and stamps are written as native floats; the wire wants little-endian.
    raise ImportError("fastload._encode needs a little-endian CPU")

FIELD_FLOAT = 4
FIELD_RAW = 6

cdef enum:
    WIRE_VARINT = 0
    WIRE_LEN = 2
    STAMP_BITS = 22
    STAMP_VALUES = 3

# protobuf refuses messages of 2 GiB and more; keep the tensor well inside that.
_MAX_TENSOR_NBYTES = 2**31 - 2**20
_INT32_MIN, _INT32_MAX = -2**31, 2**31 - 1
_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1


cdef inline Py_ssize_t _varint_len(uint64_t value) noexcept nogil:
    cdef Py_ssize_t n = 1
    while value >= 0x80:
        value >>= 7
        n += 1
    return n


cdef inline char* _put_varint(char* out, uint64_t value) noexcept nogil:
    while value >= 0x80:
        out[0] = <char>((value & 0x7F) | 0x80)
        value >>= 7
        out += 1
    out[0] = <char>value
    return out + 1


cdef bytes _varint_bytes(uint64_t value):
    cdef char buf[10]
    return buf[:_put_varint(buf, value) - buf]


cdef bytes _len_prefix(int field, Py_ssize_t size):
    """Tag and length that open a length-delimited field of ``size`` bytes."""
    return _varint_bytes(field << 3 | WIRE_LEN) + _varint_bytes(size)


cdef int64_t _checked_int(value, str name, low, high) except? -1:
    """``value`` as a C integer, or a one-line error naming the field and its range."""
    value = PyNumber_Index(value)  # refuses floats instead of truncating them
    if not low <= value <= high:
        raise OverflowError(f"{name} must be in [{low}, {high}], got {value!r}")
    return value


cdef tuple _checked_shape(shape):
    """The shape as a tuple of ints that fit input_shape (int32) and a protobuf message."""
    dims = tuple(operator.index(dim) for dim in shape)
    for i, dim in enumerate(dims):
        if not 0 <= dim <= _INT32_MAX:
            raise ValueError(f"shape[{i}] must be in [0, {_INT32_MAX}], got {dim}")
    elements = math.prod(dims)
    if elements * 4 > _MAX_TENSOR_NBYTES:
        raise ValueError(f"shape {list(dims)} holds {elements} float32 values "
                         f"({elements * 4} bytes); protobuf messages must stay under 2 GiB")
    return dims


cdef inline uint64_t _splitmix64(uint64_t* state) noexcept nogil:
    state[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline uint64_t _rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef class RequestEncoder:
    """Builds complete InferRequest wire bytes for one input shape (see _encode.pyi)."""

    cdef tuple _shape
    cdef Py_ssize_t _elements
    cdef int _tensor_field
    cdef bint _fresh
    cdef Py_ssize_t _pool_size
    cdef bytes _pool  # pool_size tensors back to back, little-endian float32
    cdef list _requests  # the reusable request of each pool slot; None until first built
    cdef bytes _shape_field  # field 5, fixed for the encoder's lifetime
    cdef bytes _tensor_header  # tag and length of the tensor field; empty for empty tensors
    cdef uint64_t _encoded
    cdef uint64_t _rng[4]  # xoshiro256+ state for fresh mode

    def __init__(self, shape, *, pool_size=8, tensor_field=FIELD_RAW, fresh=False, seed=0):
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        if tensor_field not in (FIELD_FLOAT, FIELD_RAW):
            raise ValueError(f"tensor_field must be {FIELD_FLOAT} (input_tensor) or "
                             f"{FIELD_RAW} (input_tensor_raw), got {tensor_field}")
        if not 0 <= seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        self._shape = _checked_shape(shape)
        self._elements = math.prod(self._shape)
        self._tensor_field = tensor_field
        self._fresh = bool(fresh)
        self._pool_size = pool_size
        self._encoded = 0
        self._requests = [None] * pool_size

        packed = b"".join(_varint_bytes(dim) for dim in self._shape)
        self._shape_field = _len_prefix(5, len(packed)) + packed if packed else b""
        nbytes = self._elements * 4
        self._tensor_header = _len_prefix(tensor_field, nbytes) if nbytes else b""

        cdef uint64_t state = seed
        if self._fresh:
            for i in range(4):
                self._rng[i] = _splitmix64(&state)
            self._pool = b""
        else:
            rng = np.random.default_rng(seed)
            self._pool = rng.random((pool_size, self._elements), dtype=np.float32).tobytes()

    @property
    def shape(self):
        return self._shape

    @property
    def tensor_nbytes(self):
        return self._elements * 4

    @property
    def pool_size(self):
        return self._pool_size

    @property
    def tensor_field(self):
        return self._tensor_field

    @property
    def fresh(self):
        return self._fresh

    @property
    def encoded(self):
        return self._encoded

    def pool_buffer(self, Py_ssize_t index):
        """A copy of pool tensor ``index`` before stamping, for tests and inspection."""
        if self._fresh:
            raise ValueError("a fresh=True encoder has no pool")
        if not 0 <= index < self._pool_size:
            raise IndexError(f"pool index must be in [0, {self._pool_size}), got {index}")
        cdef Py_ssize_t nbytes = self._elements * 4
        return self._pool[index * nbytes:(index + 1) * nbytes]

    def encode(self, tier, deadline_ns, str model_name not None):
        """The next request's wire bytes, rewritten in place in the encoder's rotation."""
        cdef int64_t tier_c = _checked_int(tier, "tier (int32)", _INT32_MIN, _INT32_MAX)
        cdef int64_t deadline_c = _checked_int(deadline_ns, "deadline_ns (int64)",
                                               _INT64_MIN, _INT64_MAX)

        cdef Py_ssize_t name_len
        cdef const char* name = PyUnicode_AsUTF8AndSize(model_name, &name_len)
        cdef Py_ssize_t nbytes = self._elements * 4
        cdef Py_ssize_t shape_len = len(self._shape_field)
        cdef Py_ssize_t header_len = len(self._tensor_header)
        # Negative int32/int64 values are sign-extended to 64 bits, i.e. 10-byte varints.
        cdef Py_ssize_t total = shape_len + header_len + nbytes
        if tier_c:
            total += 1 + _varint_len(<uint64_t>tier_c)
        if deadline_c:
            total += 1 + _varint_len(<uint64_t>deadline_c)
        if name_len:
            total += 1 + _varint_len(name_len) + name_len

        # The slot's request is reused while its fields keep their encoded lengths (a Unix-ns
        # deadline is always 9 varint bytes); otherwise it is built anew from the pool tensor.
        cdef Py_ssize_t slot = self._encoded % <uint64_t>self._pool_size
        request = self._requests[slot]
        cdef bint reuse = request is not None and len(request) == total
        if not reuse:
            request = PyBytes_FromStringAndSize(NULL, total)
            self._requests[slot] = request
        cdef char* p = PyBytes_AS_STRING(request)
        if tier_c:
            p[0] = 1 << 3 | WIRE_VARINT
            p = _put_varint(p + 1, <uint64_t>tier_c)
        if deadline_c:
            p[0] = 2 << 3 | WIRE_VARINT
            p = _put_varint(p + 1, <uint64_t>deadline_c)
        if name_len:
            p[0] = 3 << 3 | WIRE_LEN
            p = _put_varint(p + 1, name_len)
            memcpy(p, name, name_len)
            p += name_len
        if self._tensor_field == FIELD_RAW:
            memcpy(p, PyBytes_AS_STRING(self._shape_field), shape_len)
            p += shape_len
        memcpy(p, PyBytes_AS_STRING(self._tensor_header), header_len)
        p += header_len
        if self._fresh:
            with nogil:  # ~120 µs for 1x3x224x224; other senders may run meanwhile
                self._fill_random(p, self._elements)
        else:
            if not reuse:
                memcpy(p, PyBytes_AS_STRING(self._pool) + slot * nbytes, nbytes)
            self._stamp(p)
        p += nbytes
        if self._tensor_field == FIELD_FLOAT:
            memcpy(p, PyBytes_AS_STRING(self._shape_field), shape_len)
        self._encoded += 1
        return request

    cdef void _stamp(self, char* tensor) noexcept:
        """The counter, 22 bits per value, in the first three values: k * 2**-22 is an exact
        float32 in [0, 1), and 66 bits hold any 64-bit counter, so no two requests are equal."""
        cdef uint64_t counter = self._encoded
        cdef float value
        cdef Py_ssize_t i
        for i in range(min(STAMP_VALUES, self._elements)):
            value = <float>(counter & ((1 << STAMP_BITS) - 1)) * <float>(1.0 / (1 << STAMP_BITS))
            memcpy(tensor + 4 * i, &value, 4)
            counter >>= STAMP_BITS

    cdef void _fill_random(self, char* out, Py_ssize_t count) noexcept nogil:
        """``count`` float32 values in [0, 1) from xoshiro256+ (top 24 bits of each draw)."""
        cdef uint64_t s0 = self._rng[0], s1 = self._rng[1], s2 = self._rng[2], s3 = self._rng[3]
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
        self._rng[0], self._rng[1], self._rng[2], self._rng[3] = s0, s1, s2, s3

