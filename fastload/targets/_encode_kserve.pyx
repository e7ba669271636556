"""The only place KServe v2 ModelInferRequest bytes are built: its wire format written by hand.

Everything but three spots is fixed for an encoder's lifetime (model name and version, the
input's name, datatype and shape, the parameter keys), so each pool slot holds a complete
request that ``encode()`` rewrites in place: the `priority` and `timeout` parameter values and
the tensor's stamp (or all of it, in fresh mode). The two values are varints padded to a fixed
width (continuation bits on zero groups), which every protobuf parser reads as the plain value;
so no length in the message ever changes. The tensor goes in ``raw_input_contents``, the form
Triton and tritonclient use for large tensors.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

from fastload.targets._tensor cimport PooledEncoder
from fastload.targets._wire cimport (checked_int, len_field, len_prefix, put_padded_varint,
                             varint_bytes, varint_len)

from fastload.targets._tensor import DEFAULT_POOL_SIZE

DATATYPE = "FP32"
# `timeout` is written in 5 varint bytes: up to 2**35 - 1 µs, 9.5 hours.
cdef enum:
    TIMEOUT_WIDTH = 5
    TAG_INT64_PARAM = 2 << 3  # InferParameter.int64_param, varint
    TAG_UINT64_PARAM = 5 << 3  # InferParameter.uint64_param, varint
cdef int64_t _MAX_TIMEOUT_US = (1LL << (7 * TIMEOUT_WIDTH)) - 1
MAX_TIMEOUT_US = _MAX_TIMEOUT_US
_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1


cdef bytes _parameter(str key, int value_tag, Py_ssize_t width):
    """A `parameters` map entry (ModelInferRequest field 4) whose value is a varint of
    ``width`` bytes, written as zero; the varint is the entry's last ``width`` bytes."""
    value = bytes([value_tag]) + b"\x80" * (width - 1) + b"\x00"
    return len_field(4, len_field(1, key.encode()) + len_field(2, value))


cdef class KServeEncoder(PooledEncoder):
    """Builds complete ModelInferRequest wire bytes for one model (see _encode_kserve.pyi)."""

    cdef readonly str model_name
    cdef readonly str model_version
    cdef readonly str input_name
    cdef dict _priorities  # tier -> priority level; None: no priority parameter
    cdef readonly bint timeout
    cdef bytes _template  # every byte of a request before the tensor
    cdef Py_ssize_t _priority_at, _priority_width, _timeout_at

    def __init__(self, shape, *, str model_name not None, str input_name not None,
                 str model_version not None="", priorities=None, bint timeout=True,
                 pool_size=DEFAULT_POOL_SIZE, fresh=False, seed=0):
        PooledEncoder.__init__(self, shape, pool_size=pool_size, fresh=fresh, seed=seed)
        self.model_name, self.model_version, self.input_name = (model_name, model_version,
                                                                input_name)
        self.timeout = timeout

        template = len_field(1, model_name.encode()) if model_name else b""
        if model_version:
            template += len_field(2, model_version.encode())
        self._priorities = None
        self._priority_at = self._timeout_at = -1
        if priorities is not None:
            self._priorities = {}
            for tier, level in dict(priorities).items():
                self._priorities[tier] = checked_int(level, f"priority of tier {tier}", 0,
                                                     2**63 - 1)
            self._priority_width = max([varint_len(level)
                                        for level in self._priorities.values()] or [1])
            template += _parameter("priority", TAG_UINT64_PARAM, self._priority_width)
            self._priority_at = len(template) - self._priority_width
        if timeout:
            template += _parameter("timeout", TAG_INT64_PARAM, TIMEOUT_WIDTH)
            self._timeout_at = len(template) - TIMEOUT_WIDTH
        packed = b"".join(varint_bytes(dim) for dim in self._tensor.shape)
        tensor = len_field(1, input_name.encode()) + len_field(2, DATATYPE.encode())
        if packed:
            tensor += len_field(3, packed)
        template += len_field(5, tensor)
        # One raw_input_contents entry per input, even an empty one.
        self._template = template + len_prefix(7, self._tensor.nbytes)

    @property
    def priorities(self):
        return None if self._priorities is None else dict(self._priorities)

    def encode(self, tier, deadline_ns):
        """The next request's wire bytes, rewritten in place in the encoder's rotation."""
        cdef int64_t deadline_c = checked_int(deadline_ns, "deadline_ns (int64)",
                                              _INT64_MIN, _INT64_MAX)
        cdef uint64_t level = 0
        if self._priorities is not None:
            found = self._priorities.get(tier)
            if found is None:
                raise ValueError(f"no priority level for tier {tier!r}; the encoder maps "
                                 f"tiers {sorted(self._priorities)}")
            level = found

        cdef Py_ssize_t slot = self._encoded % <uint64_t>self._tensor.pool_size
        request = self._requests[slot]
        cdef Py_ssize_t head = len(self._template)
        cdef bint build = request is None
        if build:
            request = PyBytes_FromStringAndSize(NULL, head + self._tensor.nbytes)
            memcpy(PyBytes_AS_STRING(request), PyBytes_AS_STRING(self._template), head)
            self._requests[slot] = request
        cdef char* p = PyBytes_AS_STRING(request)
        if self._priority_at >= 0:
            put_padded_varint(p + self._priority_at, level, self._priority_width)
        if self._timeout_at >= 0:
            put_padded_varint(p + self._timeout_at, _timeout_us(deadline_c), TIMEOUT_WIDTH)
        self._tensor.fill(p + head, slot, self._encoded, build)
        self._encoded += 1
        return request


cdef inline uint64_t _timeout_us(int64_t deadline_ns) noexcept nogil:
    """Microseconds left until ``deadline_ns`` (Unix ns), in [1, _MAX_TIMEOUT_US]: never 0,
    which Triton reads as "no timeout", so a request already late expires at once."""
    cdef timespec now
    clock_gettime(CLOCK_REALTIME, &now)
    cdef int64_t now_ns = <int64_t>now.tv_sec * 1000000000 + now.tv_nsec
    if deadline_ns < now_ns + 1000:  # compared before subtracting, which could overflow
        return 1
    cdef int64_t left_us = (deadline_ns - now_ns) // 1000
    return _MAX_TIMEOUT_US if left_us > _MAX_TIMEOUT_US else left_us
