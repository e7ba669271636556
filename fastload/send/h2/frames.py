"""HTTP/2's wire format as far as a gRPC client needs it (RFC 9113): frame types, flags,
settings, error codes, the 9-byte frame header, and the request's constant header block (HPACK
literals, RFC 7541)."""
from __future__ import annotations

import struct
from typing import Mapping, Sequence

from hpack.hpack import encode_integer

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = \
    1, 2, 3, 4, 5
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, CANCEL, COMPRESSION_ERROR = \
    0x0, 0x1, 0x3, 0x6, 0x8, 0x9
MAX_WINDOW = MAX_STREAM_ID = 2**31 - 1
DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
HEAD = struct.Struct(">HBBBI")  # length as 16 + 8 bits, type, flags, R bit + stream id
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")


def frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return HEAD.pack(length >> 8, length & 0xFF, kind, flags, stream_id)


def settings(values: Mapping[int, int], flags: int = 0) -> bytes:
    payload = b"".join(_SETTING.pack(key, value) for key, value in values.items())
    return frame_header(len(payload), SETTINGS, flags, 0) + payload


def read_settings(payload: memoryview) -> list[tuple[int, int]]:
    return [_SETTING.unpack_from(payload, offset) for offset in range(0, len(payload) - 5, 6)]


def window_update(stream_id: int, increment: int) -> bytes:
    return frame_header(4, WINDOW_UPDATE, 0, stream_id) + _U32.pack(increment)


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame_header(4, RST_STREAM, 0, stream_id) + _U32.pack(code)


def goaway(last_stream_id: int, code: int) -> bytes:
    return frame_header(8, GOAWAY, 0, 0) + _U32.pack(last_stream_id) + _U32.pack(code)


def u31(payload: memoryview, offset: int = 0) -> int:
    """A 31-bit field (window increments, stream ids), its reserved bit dropped."""
    return _U32.unpack_from(payload, offset)[0] & MAX_WINDOW


def u32(payload: memoryview, offset: int = 0) -> int:
    return _U32.unpack_from(payload, offset)[0]


def unpadded(payload: memoryview, flags: int, priority: bool) -> memoryview:
    """A DATA or HEADERS payload without its padding (and HEADERS' priority fields);
    ValueError if the padding is longer than the frame."""
    pad = 0
    if flags & PADDED:
        pad, payload = payload[0], payload[1:]
    if priority and flags & PRIORITY_FLAG:
        payload = payload[5:]
    if pad > len(payload):
        raise ValueError("padding longer than the frame")
    return payload[:len(payload) - pad] if pad else payload


def literal(name: str, value: str) -> bytes:
    """A header as an HPACK literal without indexing, new name, no Huffman (RFC 7541, 6.2.2):
    the same bytes on every call, whatever either side's tables hold."""
    name_b, value_b = name.encode("ascii"), value.encode("ascii")
    return (b"\x00" + bytes(encode_integer(len(name_b), 7)) + name_b
            + bytes(encode_integer(len(value_b), 7)) + value_b)


def grpc_timeout(timeout_s: float) -> str:
    """gRPC's timeout header value: at most 8 digits and a unit."""
    millis = max(1, round(timeout_s * 1000))
    return f"{millis}m" if millis < 10**8 else f"{min(millis // 1000, 10**8 - 1)}S"


def request_headers(authority: str, path: str, timeout_s: float, user_agent: str,
                    metadata: Sequence[tuple[str, str]] = ()) -> bytes:
    """The header block every call of the run sends: gRPC's request headers
    (PROTOCOL-HTTP2.md) and the run's metadata, as constant bytes."""
    fields = ((":method", "POST"), (":scheme", "http"), (":path", path),
              (":authority", authority), ("te", "trailers"),
              ("content-type", "application/grpc"), ("user-agent", user_agent),
              ("grpc-timeout", grpc_timeout(timeout_s)), *metadata)
    return b"".join(literal(name, value) for name, value in fields)
