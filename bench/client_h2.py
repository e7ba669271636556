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

A measurement, not a transport (that is ``fastload.send.h2``, ``--transport h2``, whose wire
format and header-block reader this shares): it sends from LoadGen's issue thread as the floor
does, holds a lock across ``sendmsg``, and does not cancel at the deadline (it sends
``grpc-timeout``); MAX_CONCURRENT_STREAMS is honoured by queueing. ``--check`` runs a few
calls and prints the server's settings and the answers' statuses.
"""
from __future__ import annotations

import argparse
import socket
import threading
from collections import deque
from dataclasses import dataclass
from time import monotonic_ns
from typing import Callable

import mlperf_loadgen as lg

from fastload.send.h2 import frames as f
from fastload.send.h2.answers import HeaderBlocks, reset_status

from client_floor import TIMEOUT_S, constant_request
from harness import INFER_METHOD, client_args, run_loadgen, with_input_shape, write_samples


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
        self._block = f.request_headers(target, path, timeout_s, "fastload-h2-prototype")
        self._lock = threading.Lock()
        self._next_id = 1
        self._send_window = f.DEFAULT_WINDOW
        self._initial_window = f.DEFAULT_WINDOW
        self._max_frame = 16_384
        self._max_streams = 2**31
        self._calls: dict[int, Call] = {}
        self._sending: deque[Call] = deque()  # calls with bytes left to send, in order
        self._waiting: deque[tuple[list[memoryview], Callable[[str], None]]] = deque()
        self._blocks = HeaderBlocks()
        self._unacked_received = 0
        self._header_block = bytearray()  # HEADERS then CONTINUATIONs: nothing comes between
        self._header_end_stream = False
        self._goaway_last: int | None = None
        self.server_settings: dict[int, int] = {}
        self._settled = threading.Event()
        self._sock.sendall(f.PREFACE
                           + f.settings({f.ENABLE_PUSH: 0, f.INITIAL_WINDOW_SIZE: f.MAX_WINDOW})
                           + f.window_update(0, f.MAX_WINDOW - f.DEFAULT_WINDOW))
        self._reader = threading.Thread(target=self._read_forever, name="h2-reader", daemon=True)
        self._reader.start()
        if not self._settled.wait(10):
            raise ConnectionError(f"{target}: no HTTP/2 SETTINGS within 10 s")

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
        iov = [f.frame_header(len(self._block), f.HEADERS, f.END_HEADERS, call.stream_id),
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
            iov.append(f.frame_header(n, f.DATA, f.END_STREAM if end else 0, call.stream_id))
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
                high, low, kind, flags, stream_id = f.HEAD.unpack_from(buffer, start)
                length = (high << 8) | low
                if len(buffer) - start < 9 + length:
                    break
                self._frame(kind, flags, stream_id & f.MAX_STREAM_ID,
                            memoryview(buffer)[start + 9:start + 9 + length])
                start += 9 + length
            del buffer[:start]

    def _frame(self, kind: int, flags: int, stream_id: int, payload: memoryview) -> None:
        if kind == f.DATA:
            self._unacked_received += len(payload)
            if self._unacked_received > f.MAX_WINDOW // 2:
                with self._lock:
                    self._send([f.window_update(0, self._unacked_received)])
                self._unacked_received = 0
            if flags & f.END_STREAM:
                self._finish(stream_id, None)  # no trailers: gRPC says INTERNAL
        elif kind in (f.HEADERS, f.CONTINUATION):
            if kind == f.HEADERS:
                self._header_end_stream = bool(flags & f.END_STREAM)
                payload = f.unpadded(payload, flags, priority=True)
            self._header_block += payload
            if flags & f.END_HEADERS:
                # Every block is read, a call's or not: the decoder's table depends on it.
                ended = self._blocks.status(bytes(self._header_block))
                status = None if ended is None else ended[0].name
                self._header_block.clear()
                call = self._calls.get(stream_id)
                if call is not None and status is not None:
                    call.status = status
                if self._header_end_stream:
                    self._finish(stream_id, None)
        elif kind == f.WINDOW_UPDATE:
            increment = f.u31(payload)
            with self._lock:
                if stream_id == 0:
                    self._send_window += increment
                elif stream_id in self._calls:
                    self._calls[stream_id].window += increment
                self._send(self._fill())
        elif kind == f.SETTINGS and not flags & f.ACK:
            with self._lock:
                for key, value in f.read_settings(payload):
                    self.server_settings[key] = value
                    if key == f.INITIAL_WINDOW_SIZE:
                        for call in self._calls.values():
                            call.window += value - self._initial_window
                        self._initial_window = value
                    elif key == f.MAX_FRAME_SIZE:
                        self._max_frame = value
                    elif key == f.MAX_CONCURRENT_STREAMS:
                        self._max_streams = value
                self._send([f.settings({}, f.ACK)] + self._fill())
            self._settled.set()
        elif kind == f.PING and not flags & f.ACK:
            with self._lock:
                self._send([f.frame_header(8, f.PING, f.ACK, 0), bytes(payload)])
        elif kind == f.RST_STREAM:
            self._finish(stream_id, reset_status(f.u32(payload))[0].name)
        elif kind == f.GOAWAY:
            last = f.u31(payload)
            with self._lock:
                self._goaway_last = last
                doomed = [sid for sid in self._calls if sid > last]
            for sid in doomed:
                self._finish(sid, "UNAVAILABLE")

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
            self._send([f.goaway(0, f.NO_ERROR)])
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


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
