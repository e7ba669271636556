"""Issue 24's prototype: the floor's requests over an HTTP/2 connection of its own, each request's
bytes handed to the kernel by one ``sendmsg`` with no user-space copy of the tensor.

LoadGen Server scenario and the floor's constant request, but no grpcio: the HEADERS block is
encoded once (HPACK literals without indexing, so it holds no table state and is constant
bytes); each call is one ``sendmsg`` of [HEADERS frame header, the block, then per DATA frame
its 9-byte header and memoryview slices of the gRPC prefix and the request]. A reader thread
parses the server's frames: SETTINGS (and their ACK), WINDOW_UPDATE for both send windows, PING,
GOAWAY, RST_STREAM, and the answers' HEADERS/CONTINUATION with the ``hpack`` package's decoder
(trailers-only answers included; a block seen before while the table is unchanged is not decoded
again); ``grpc-status`` ends the call. Both receive windows are
opened to 2^31 - 1 at the start and the connection's is topped up as answers arrive.

A measurement, not a transport: it sends from LoadGen's issue thread as the floor does, holds
a lock across ``sendmsg``, and does not cancel at the deadline (it sends ``grpc-timeout``);
MAX_CONCURRENT_STREAMS is honoured by queueing. ``--check`` runs a few calls and prints the
server's settings and the answers' statuses.
"""
from __future__ import annotations

import argparse
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass
from time import monotonic_ns
from typing import Callable

import hpack
import mlperf_loadgen as lg
from hpack.hpack import encode_integer

from client_floor import TIMEOUT_S, constant_request
from harness import INFER_METHOD, client_args, run_loadgen, with_input_shape, write_samples

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, \
    S_MAX_FRAME_SIZE = 1, 2, 3, 4, 5
MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65_535
# HTTP/2 error codes as gRPC statuses (gRPC's HTTP/2 mapping, "PROTOCOL-HTTP2.md").
RST_STATUS = {0x0: "INTERNAL", 0x1: "INTERNAL", 0x2: "INTERNAL", 0x3: "INTERNAL",
              0x7: "UNAVAILABLE", 0x8: "CANCELLED", 0xB: "RESOURCE_EXHAUSTED",
              0xC: "PERMISSION_DENIED"}
GRPC_STATUS = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
               "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
               "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
               "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")
_HEAD = struct.Struct(">HBBBI")  # length as 16 + 8 bits, type, flags, stream id


def frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return _HEAD.pack(length >> 8, length & 0xFF, kind, flags, stream_id)


def literal(name: str, value: str) -> bytes:
    """A header as an HPACK literal without indexing, new name, no Huffman (RFC 7541, 6.2.2):
    the same bytes on every call, whatever the tables hold."""
    name_b, value_b = name.encode(), value.encode()
    return (b"\x00" + bytes(encode_integer(len(name_b), 7)) + name_b
            + bytes(encode_integer(len(value_b), 7)) + value_b)


def headers_block(authority: str, path: str, timeout_s: float,
                  metadata: tuple[tuple[str, str], ...] = ()) -> bytes:
    fields = ((":method", "POST"), (":scheme", "http"), (":path", path),
              (":authority", authority), ("content-type", "application/grpc"),
              ("te", "trailers"), ("grpc-timeout", f"{int(timeout_s * 1000)}m"), *metadata)
    return b"".join(literal(name, value) for name, value in fields)


@dataclass
class Call:
    stream_id: int
    pieces: list[memoryview]  # what is left to send, in order
    left: int
    window: int
    on_done: Callable[[str], None]
    status: str | None = None

    def take(self, n: int) -> list[memoryview]:
        """The next n bytes as memoryview slices (no copy)."""
        taken, self.left = [], self.left - n
        while n:
            piece = self.pieces[0]
            if len(piece) <= n:
                taken.append(piece)
                self.pieces.pop(0)
                n -= len(piece)
            else:
                taken.append(piece[:n])
                self.pieces[0] = piece[n:]
                n = 0
        return taken


class Connection:
    """One HTTP/2 connection carrying gRPC unary calls; ``start`` from any thread."""

    def __init__(self, target: str, path: str, timeout_s: float) -> None:
        host, _, port = target.rpartition(":")
        self._sock = socket.create_connection((host.strip("[]"), int(port)))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._block = headers_block(target, path, timeout_s)
        self._lock = threading.Lock()
        self._next_id = 1
        self._send_window = DEFAULT_WINDOW
        self._initial_window = DEFAULT_WINDOW
        self._max_frame = 16_384
        self._max_streams = 2**31
        self._calls: dict[int, Call] = {}
        self._sending: deque[Call] = deque()  # calls with bytes left to send, in order
        self._waiting: deque[tuple[list[memoryview], Callable[[str], None]]] = deque()
        self._decoder = hpack.Decoder()
        self._unacked_received = 0
        self._header_block = bytearray()  # HEADERS then CONTINUATIONs: nothing comes between
        self._header_end_stream = False
        self._statuses: dict[bytes, str | None] = {}  # header blocks read before: _status_of
        self._goaway_last: int | None = None
        self.server_settings: dict[int, int] = {}
        self._settled = threading.Event()
        self._sock.sendall(PREFACE
                           + self._settings({S_ENABLE_PUSH: 0, S_INITIAL_WINDOW_SIZE: MAX_WINDOW})
                           + frame_header(4, WINDOW_UPDATE, 0, 0)
                           + struct.pack(">I", MAX_WINDOW - DEFAULT_WINDOW))
        self._reader = threading.Thread(target=self._read_forever, name="h2-reader", daemon=True)
        self._reader.start()
        if not self._settled.wait(10):
            raise ConnectionError(f"{target}: no HTTP/2 SETTINGS within 10 s")

    @staticmethod
    def _settings(values: dict[int, int], flags: int = 0) -> bytes:
        payload = b"".join(struct.pack(">HI", key, value) for key, value in values.items())
        return frame_header(len(payload), SETTINGS, flags, 0) + payload

    def start(self, message: list[memoryview], on_done: Callable[[str], None]) -> None:
        """A call whose request is ``message`` (the gRPC prefix and the bytes, unjoined)."""
        with self._lock:
            if self._goaway_last is not None:
                on_done("UNAVAILABLE")
                return
            if len(self._calls) >= self._max_streams:
                self._waiting.append((message, on_done))
                return
            self._open(message, on_done)

    def _open(self, message: list[memoryview], on_done: Callable[[str], None]) -> None:
        call = Call(self._next_id, list(message), sum(map(len, message)), self._initial_window,
                    on_done)
        self._next_id += 2
        self._calls[call.stream_id] = call
        iov = [frame_header(len(self._block), HEADERS, END_HEADERS, call.stream_id),
               self._block]
        self._sending.append(call)
        self._send(iov + self._fill())

    def _fill(self) -> list:
        """DATA frames for as much as both send windows allow, calls in order."""
        iov: list = []
        while self._sending and self._send_window > 0:
            call = self._sending[0]
            if call.window <= 0:
                break  # in order: a call waits for its own window
            n = min(call.left, self._send_window, call.window, self._max_frame)
            self._send_window -= n
            call.window -= n
            end = n == call.left
            iov.append(frame_header(n, DATA, END_STREAM if end else 0, call.stream_id))
            iov += call.take(n)
            if end:
                self._sending.popleft()
        return iov

    def _send(self, iov: list) -> None:
        while iov:
            sent = self._sock.sendmsg(iov[:1024])  # IOV_MAX
            while iov and sent >= len(iov[0]):
                sent -= len(iov[0])
                iov.pop(0)
            if sent:
                iov[0] = memoryview(iov[0])[sent:]

    def _read_forever(self) -> None:
        buffer = bytearray()
        while True:
            try:
                chunk = self._sock.recv(1 << 18)
            except OSError:
                chunk = b""
            if not chunk:
                self._fail_all("UNAVAILABLE")
                return
            buffer += chunk
            start = 0
            while len(buffer) - start >= 9:
                high, low, kind, flags, stream_id = _HEAD.unpack_from(buffer, start)
                length = (high << 8) | low
                if len(buffer) - start < 9 + length:
                    break
                self._frame(kind, flags, stream_id & MAX_WINDOW,
                            memoryview(buffer)[start + 9:start + 9 + length])
                start += 9 + length
            del buffer[:start]

    def _frame(self, kind: int, flags: int, stream_id: int, payload: memoryview) -> None:
        if kind == DATA:
            self._unacked_received += len(payload)
            if self._unacked_received > MAX_WINDOW // 2:
                with self._lock:
                    self._send([frame_header(4, WINDOW_UPDATE, 0, 0),
                                struct.pack(">I", self._unacked_received)])
                self._unacked_received = 0
            if flags & END_STREAM:
                self._finish(stream_id, None)  # no trailers: gRPC says INTERNAL
        elif kind in (HEADERS, CONTINUATION):
            if kind == HEADERS:
                self._header_end_stream = bool(flags & END_STREAM)
                payload = _unpadded(payload, flags)
            self._header_block += payload
            if flags & END_HEADERS:
                # Every block is read, a call's or not: the decoder's table depends on it.
                status = self._status_of(bytes(self._header_block))
                self._header_block.clear()
                call = self._calls.get(stream_id)
                if call is not None and status is not None:
                    call.status = status
                if self._header_end_stream:
                    self._finish(stream_id, None)
        elif kind == WINDOW_UPDATE:
            increment = struct.unpack(">I", payload)[0] & MAX_WINDOW
            with self._lock:
                if stream_id == 0:
                    self._send_window += increment
                elif stream_id in self._calls:
                    self._calls[stream_id].window += increment
                self._send(self._fill())
        elif kind == SETTINGS and not flags & ACK:
            with self._lock:
                for offset in range(0, len(payload), 6):
                    key, value = struct.unpack_from(">HI", payload, offset)
                    self.server_settings[key] = value
                    if key == S_INITIAL_WINDOW_SIZE:
                        for call in self._calls.values():
                            call.window += value - self._initial_window
                        self._initial_window = value
                    elif key == S_MAX_FRAME_SIZE:
                        self._max_frame = value
                    elif key == S_MAX_CONCURRENT_STREAMS:
                        self._max_streams = value
                self._send([self._settings({}, ACK)] + self._fill())
            self._settled.set()
        elif kind == PING and not flags & ACK:
            with self._lock:
                self._send([frame_header(8, PING, ACK, 0), bytes(payload)])
        elif kind == RST_STREAM:
            code = struct.unpack(">I", payload)[0]
            self._finish(stream_id, RST_STATUS.get(code, "INTERNAL"))
        elif kind == GOAWAY:
            last = struct.unpack_from(">I", payload)[0] & MAX_WINDOW
            with self._lock:
                self._goaway_last = last
                doomed = [sid for sid in self._calls if sid > last]
            for sid in doomed:
                self._finish(sid, "UNAVAILABLE")

    def _status_of(self, block: bytes) -> str | None:
        """The gRPC status a header block carries (None: none). Once the server's table holds
        its answers' headers, their blocks repeat byte for byte, so a block that leaves the
        table as it was is decoded once; any change to the table forgets what was kept, since
        the same index then names another entry."""
        if block in self._statuses:
            return self._statuses[block]
        table = self._decoder.header_table.dynamic_entries
        before = tuple(table)
        code = next((int(value) for name, value in self._decoder.decode(block)
                     if name == "grpc-status"), None)
        status = None if code is None else GRPC_STATUS[code] if code < len(GRPC_STATUS) \
            else "UNKNOWN"
        if tuple(table) == before:
            self._statuses[block] = status
        else:
            self._statuses.clear()
        return status

    def _finish(self, stream_id: int, status: str | None) -> None:
        with self._lock:
            call = self._calls.pop(stream_id, None)
            if call is None:
                return
            if call in self._sending:
                self._sending.remove(call)
            if self._waiting and len(self._calls) < self._max_streams \
                    and self._goaway_last is None:
                self._open(*self._waiting.popleft())
        call.on_done(status or call.status or "INTERNAL")

    def _fail_all(self, status: str) -> None:
        with self._lock:
            calls, self._calls = list(self._calls.values()), {}
            waiting, self._waiting = list(self._waiting), deque()
        for call in calls:
            call.on_done(status)
        for _, on_done in waiting:
            on_done(status)

    def close(self) -> None:
        with self._lock:
            self._send([frame_header(8, GOAWAY, 0, 0), struct.pack(">II", 0, 0)])
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


def _unpadded(payload: memoryview, flags: int) -> memoryview:
    """A HEADERS payload without its padding and priority fields."""
    pad = 0
    if flags & PADDED:
        pad, payload = payload[0], payload[1:]
    if flags & PRIORITY_FLAG:
        payload = payload[5:]
    return payload[:len(payload) - pad] if pad else payload


def grpc_message(request: bytes) -> list[memoryview]:
    """The gRPC length prefix and the request, as two buffers: the request is not copied."""
    return [memoryview(b"\x00" + len(request).to_bytes(4, "big")), memoryview(request)]


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--check", action="store_true",
                            help="send 3 calls, print the server's settings and the statuses")
        with_input_shape(parser)

    args = client_args(__doc__, extra)
    connection = Connection(args.target, INFER_METHOD, TIMEOUT_S)
    message = grpc_message(constant_request(args.seed, args.input_shape))
    if args.check:
        statuses: list[str] = []
        finished = threading.Semaphore(0)
        for _ in range(3):
            connection.start(message, lambda status: (statuses.append(status), finished.release()))
        for _ in range(3):
            finished.acquire(timeout=10)
        print("server settings:", connection.server_settings, "statuses:", statuses)
        connection.close()
        return
    done: list[tuple[int, int, int, str]] = []
    record, complete, response = done.append, lg.QuerySamplesComplete, lg.QuerySampleResponse

    def issue_query(sample_ids: list[int], _indices: list[int]) -> None:
        issued_ns = monotonic_ns()
        for sample_id in sample_ids:
            sent_ns = monotonic_ns()

            def on_done(status: str, sample_id: int = sample_id, sent_ns: int = sent_ns) -> None:
                record((issued_ns, sent_ns, monotonic_ns(), status))
                complete([response(sample_id, 0, 0)])

            connection.start(message, on_done)

    sut = lg.ConstructFastSUT(issue_query, lambda: None)
    run_loadgen(sut, args)
    lg.DestroyFastSUT(sut)
    connection.close()
    write_samples(args.out, ((issued, sent - issued, finished - issued, status)
                             for issued, sent, finished, status in done))


if __name__ == "__main__":
    main()
