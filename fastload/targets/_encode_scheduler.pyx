"""The only place scheduler.InferRequest bytes are built: its wire format written by hand.

The encoder keeps ``pool_size`` complete, pre-serialised requests, one per pool tensor, and hands
them out in rotation. ``encode()`` rewrites the chosen request in place: the small header fields
and a 12-byte stamp in the tensor, or the whole tensor in fresh mode. No protobuf objects,
lists, numpy arrays or request-sized allocations exist per request. grpcio copies a message into
its own buffer when the call starts (SendMessageOperation.c), so a request handed to grpcio can
be rewritten as soon as the call has started. Fields are written in field-number order, as
protobuf does, so every request is byte-identical to ``InferRequest(...).SerializeToString()``.
"""
import operator

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from fastload.targets._tensor cimport PooledEncoder
from fastload.targets._wire cimport (WIRE_LEN, WIRE_VARINT, checked_int, len_prefix, put_varint,
                             varint_bytes, varint_len)

from fastload.targets._tensor import DEFAULT_POOL_SIZE

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

FIELD_FLOAT = 4
FIELD_RAW = 6

_INT32_MIN, _INT32_MAX = -2**31, 2**31 - 1
_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1


cdef class RequestEncoder(PooledEncoder):
    """Builds complete InferRequest wire bytes for one input shape (see _encode_scheduler.pyi)."""

    cdef int _tensor_field
    cdef bytes _shape_field  # field 5, fixed for the encoder's lifetime
    cdef bytes _tensor_header  # tag and length of the tensor field; empty for empty tensors

    def __init__(self, shape, *, pool_size=DEFAULT_POOL_SIZE, tensor_field=FIELD_RAW, fresh=False, seed=0):
        if tensor_field not in (FIELD_FLOAT, FIELD_RAW):
            raise ValueError(f"tensor_field must be {FIELD_FLOAT} (input_tensor) or "
                             f"{FIELD_RAW} (input_tensor_raw), got {tensor_field}")
        shape = tuple(operator.index(dim) for dim in shape)
        for i, dim in enumerate(shape):
            if not 0 <= dim <= _INT32_MAX:  # input_shape is int32
                raise ValueError(f"shape[{i}] must be in [0, {_INT32_MAX}], got {dim}")
        PooledEncoder.__init__(self, shape, pool_size=pool_size, fresh=fresh, seed=seed)
        self._tensor_field = tensor_field
        packed = b"".join(varint_bytes(dim) for dim in self._tensor.shape)
        self._shape_field = len_prefix(5, len(packed)) + packed if packed else b""
        nbytes = self._tensor.nbytes
        self._tensor_header = len_prefix(tensor_field, nbytes) if nbytes else b""

    @property
    def tensor_field(self):
        return self._tensor_field

    def encode(self, tier, deadline_ns, str model_name not None):
        """The next request's wire bytes, rewritten in place in the encoder's rotation."""
        cdef int64_t tier_c = checked_int(tier, "tier (int32)", _INT32_MIN, _INT32_MAX)
        cdef int64_t deadline_c = checked_int(deadline_ns, "deadline_ns (int64)",
                                              _INT64_MIN, _INT64_MAX)

        cdef Py_ssize_t name_len
        cdef const char* name = PyUnicode_AsUTF8AndSize(model_name, &name_len)
        cdef Py_ssize_t nbytes = self._tensor.elements * 4
        cdef Py_ssize_t shape_len = len(self._shape_field)
        cdef Py_ssize_t header_len = len(self._tensor_header)
        # Negative int32/int64 values are sign-extended to 64 bits, i.e. 10-byte varints.
        cdef Py_ssize_t total = shape_len + header_len + nbytes
        if tier_c:
            total += 1 + varint_len(<uint64_t>tier_c)
        if deadline_c:
            total += 1 + varint_len(<uint64_t>deadline_c)
        if name_len:
            total += 1 + varint_len(name_len) + name_len

        # The slot's request is reused while its fields keep their encoded lengths (a Unix-ns
        # deadline is always 9 varint bytes); otherwise it is built anew from the pool tensor.
        cdef Py_ssize_t slot = self._encoded % <uint64_t>self._tensor.pool_size
        request = self._requests[slot]
        cdef bint reuse = request is not None and len(request) == total
        if not reuse:
            request = PyBytes_FromStringAndSize(NULL, total)
            self._requests[slot] = request
        cdef char* p = PyBytes_AS_STRING(request)
        if tier_c:
            p[0] = 1 << 3 | WIRE_VARINT
            p = put_varint(p + 1, <uint64_t>tier_c)
        if deadline_c:
            p[0] = 2 << 3 | WIRE_VARINT
            p = put_varint(p + 1, <uint64_t>deadline_c)
        if name_len:
            p[0] = 3 << 3 | WIRE_LEN
            p = put_varint(p + 1, name_len)
            memcpy(p, name, name_len)
            p += name_len
        if self._tensor_field == FIELD_RAW:
            memcpy(p, PyBytes_AS_STRING(self._shape_field), shape_len)
            p += shape_len
        memcpy(p, PyBytes_AS_STRING(self._tensor_header), header_len)
        p += header_len
        self._tensor.fill(p, slot, self._encoded, not reuse)
        p += nbytes
        if self._tensor_field == FIELD_FLOAT:
            memcpy(p, PyBytes_AS_STRING(self._shape_field), shape_len)
        self._encoded += 1
        return request
