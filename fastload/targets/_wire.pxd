# Protobuf wire-format helpers shared by the encoders (_encode_scheduler.pyx, _encode_kserve.pyx).
from cpython.number cimport PyNumber_Index
from libc.stdint cimport int64_t, uint64_t

cdef enum:
    WIRE_VARINT = 0
    WIRE_LEN = 2


cdef inline Py_ssize_t varint_len(uint64_t value) noexcept nogil:
    cdef Py_ssize_t n = 1
    while value >= 0x80:
        value >>= 7
        n += 1
    return n


cdef inline char* put_varint(char* out, uint64_t value) noexcept nogil:
    while value >= 0x80:
        out[0] = <char>((value & 0x7F) | 0x80)
        value >>= 7
        out += 1
    out[0] = <char>value
    return out + 1


cdef inline void put_padded_varint(char* out, uint64_t value, Py_ssize_t width) noexcept nogil:
    """``value`` as a varint of exactly ``width`` bytes (continuation bits on zero groups), so
    it can be rewritten in place; parsers read it as the plain varint. The caller guarantees
    ``value < 2 ** (7 * width)``."""
    cdef Py_ssize_t i
    for i in range(width - 1):
        out[i] = <char>((value & 0x7F) | 0x80)
        value >>= 7
    out[width - 1] = <char>value


cdef inline bytes varint_bytes(uint64_t value):
    cdef char buf[10]
    return buf[:put_varint(buf, value) - buf]


cdef inline bytes len_prefix(int field, Py_ssize_t size):
    """Tag and length that open a length-delimited field of ``size`` bytes."""
    return varint_bytes(field << 3 | WIRE_LEN) + varint_bytes(size)


cdef inline bytes len_field(int field, bytes payload):
    """A whole length-delimited field: tag, length, payload."""
    return len_prefix(field, len(payload)) + payload


cdef inline int64_t checked_int(value, str name, low, high) except? -1:
    """``value`` as a C integer, or a one-line error naming the field and its range."""
    value = PyNumber_Index(value)  # refuses floats instead of truncating them
    if not low <= value <= high:
        raise OverflowError(f"{name} must be in [{low}, {high}], got {value!r}")
    return value
