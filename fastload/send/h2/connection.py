"""One HTTP/2 connection carrying gRPC unary calls, run by the sender's event loop: no thread,
no lock.

Sending: a call is one ``sendmsg`` of [HEADERS frame header, the run's constant header block,
then per DATA frame its 9-byte header and memoryview slices of the 5-byte gRPC prefix and the
encoder's bytes], so the tensor is not copied in user space. What the kernel does not take at
once, and DATA that waits for a flow-control window or a stream slot, is copied first: the
encoder rewrites its bytes a few calls later. Receiving: the loop reads when the socket is
readable and parses frames here; both receive windows are opened to 2^31 - 1 at the start and
the connection's is topped up as answers arrive. The rules are RFC 9113's and gRPC's
PROTOCOL-HTTP2.md, in the order grpc's chttp2 and nghttp2 apply them.
"""
from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Callable, Protocol

import grpc
import hpack

from fastload.send.base import Ended
from fastload.send.h2 import frames as f
from fastload.send.h2.answers import HeaderBlocks, Status, reset_status

RECV_BYTES = 1 << 18
IOV_MAX = 1024
_PREFIX_OK = 0  # the gRPC message prefix's flag byte: not compressed


class Owner(Protocol):
    def drop(self, stream: Stream, code: grpc.StatusCode, message: str) -> None:
        """End ``stream`` now with this status (cancelled or past its deadline)."""


class Stream:
    """One call: what is left of its request, its send window, and how it ends."""

    __slots__ = ("id", "pieces", "left", "window", "ended", "status", "response", "deadline",
                 "owner", "owned")

    def __init__(self, message: list, ended: Ended, deadline: float, owner: Owner) -> None:
        self.id = 0  # none until the connection opens it
        self.pieces: list = message  # the gRPC message not yet sent, as buffers in order
        self.left = sum(map(len, message))
        self.window = 0
        self.ended: Ended | None = ended  # None once the call has ended
        self.status: Status | None = None
        self.response: bytes | None = None
        self.deadline = deadline  # the loop's clock
        self.owner = owner
        self.owned = False  # whether ``pieces`` are copies of our own

    def own(self) -> None:
        """Copy what is left to send: the encoder will rewrite its buffer."""
        if not self.owned:
            self.pieces = [bytes(piece) for piece in self.pieces]
            self.owned = True

    def take(self, n: int) -> list:
        """The next n bytes to send, as slices of the pieces (no copy)."""
        taken, self.left = [], self.left - n
        pieces = self.pieces
        while n:
            piece = pieces[0]
            if len(piece) <= n:
                taken.append(piece)
                del pieces[0]
                n -= len(piece)
            else:
                view = memoryview(piece)
                taken.append(view[:n])
                pieces[0] = view[n:]
                n = 0
        return taken

    def end(self, code: grpc.StatusCode, message: str, response: bytes | None = None) -> None:
        ended, self.ended, self.pieces = self.ended, None, []
        if ended is not None:
            ended(code, message, response)

    def cancel(self) -> None:
        """End the call as CANCELLED unless it has ended (the server hears a RST_STREAM)."""
        if self.ended is not None:
            self.owner.drop(self, grpc.StatusCode.CANCELLED, "cancelled by the client")


class ProtocolViolation(Exception):
    """The server broke HTTP/2: the connection ends with a GOAWAY carrying ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Connection:
    """Calls on one socket, already through the HTTP/2 preface (``open``).

    ``retired(connection, streams)`` is told when it takes no more calls (GOAWAY, stream ids
    spent, the socket lost), with the calls it held back and never sent, for the channel to
    send elsewhere; ``closed(connection)`` when its socket is closed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 header_block: bytes, retired: Callable[[Connection, list[Stream]], None],
                 closed: Callable[[Connection], None]) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._block = header_block
        self._retired = retired
        self._closed = closed
        self.usable = True
        self.open_streams: dict[int, Stream] = {}
        self._held: deque[Stream] = deque()  # over MAX_CONCURRENT_STREAMS, in order
        self._sending: list[Stream] = []  # opened, with DATA left to send, in order
        self._backlog: list[bytes] = []  # bytes the kernel did not take yet, in order
        self._next_id = 1
        self._send_window = f.DEFAULT_WINDOW
        self._initial_window = f.DEFAULT_WINDOW
        self._max_frame = f.DEFAULT_MAX_FRAME
        self._max_streams = f.MAX_STREAM_ID
        self._received = 0  # DATA bytes since the connection's window was last topped up
        self._inbox = bytearray()
        self._headers: tuple[int, bytearray, bool] | None = None  # a block awaiting CONTINUATION
        self._blocks = HeaderBlocks()
        self._settled = loop.create_future()  # True: the server's first SETTINGS; False: closed
        self.server_settings: dict[int, int] = {}

    @classmethod
    async def open(cls, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                   header_block: bytes, settings_wait_s: float,
                   retired: Callable[[Connection, list[Stream]], None],
                   closed: Callable[[Connection], None]) -> Connection:
        """A connection on a connected non-blocking socket, once the server's SETTINGS came or
        ``settings_wait_s`` passed (a frozen server's kernel still accepts connections: its
        calls then reach their deadline, as over grpcio); ConnectionError if the server closes
        it first."""
        connection = cls(loop, sock, header_block, retired, closed)
        try:
            await loop.sock_sendall(sock, f.PREFACE
                                    + f.settings({f.ENABLE_PUSH: 0,
                                                  f.INITIAL_WINDOW_SIZE: f.MAX_WINDOW})
                                    + f.window_update(0, f.MAX_WINDOW - f.DEFAULT_WINDOW))
        except OSError:
            sock.close()
            raise
        loop.add_reader(connection._fd, connection._on_readable)
        await asyncio.wait((connection._settled,), timeout=settings_wait_s)
        if connection._settled.done() and not connection._settled.result():
            raise ConnectionError("the server closed the connection before its HTTP/2 SETTINGS")
        return connection

    # -- calls -----------------------------------------------------------------------------

    def submit(self, stream: Stream) -> None:
        """Send ``stream``'s call now, or hold it while the server's stream limit is reached."""
        if not self.usable:
            self._retired(self, [stream])
            return
        stream.owner = self
        if len(self.open_streams) >= self._max_streams or self._held:
            stream.own()
            self._held.append(stream)
            return
        self._begin(stream)

    def _begin(self, stream: Stream) -> None:
        stream.id, self._next_id = self._next_id, self._next_id + 2
        stream.window = self._initial_window
        self.open_streams[stream.id] = stream
        self._sending.append(stream)
        self._write([*self._headers_frames(stream.id), *self._fill()])
        if self._next_id > f.MAX_STREAM_ID:
            self._retire()

    def _headers_frames(self, stream_id: int) -> list[bytes]:
        """The run's header block as a HEADERS frame, or HEADERS and CONTINUATIONs when it is
        longer than the server's frames may be (large metadata)."""
        block, size = self._block, self._max_frame
        if len(block) <= size:
            return [f.frame_header(len(block), f.HEADERS, f.END_HEADERS, stream_id), block]
        pieces = [block[at:at + size] for at in range(0, len(block), size)]
        frames = []
        for index, piece in enumerate(pieces):
            kind = f.HEADERS if index == 0 else f.CONTINUATION
            flags = f.END_HEADERS if index == len(pieces) - 1 else 0
            frames += [f.frame_header(len(piece), kind, flags, stream_id), piece]
        return frames

    def drop(self, stream: Stream, code: grpc.StatusCode, message: str) -> None:
        """End a call of ours before the server has: RST_STREAM(CANCEL) if it was opened."""
        if self.open_streams.pop(stream.id, None) is stream:
            self._stop_sending(stream)
            self._write([f.rst_stream(stream.id, f.CANCEL)])
            stream.end(code, message)
            self._after_end()
        elif stream in self._held:
            self._held.remove(stream)
            stream.end(code, message)

    def _fill(self) -> list:
        """DATA frames for every opened call, in order, as far as both windows allow; what is
        left waits in copies of its own."""
        iov: list = []
        finished = 0
        for stream in self._sending:
            if self._send_window <= 0:
                break
            n = min(stream.left, self._send_window, stream.window, self._max_frame)
            while n > 0:
                self._send_window -= n
                stream.window -= n
                end = n == stream.left
                iov.append(f.frame_header(n, f.DATA, f.END_STREAM if end else 0, stream.id))
                iov += stream.take(n)
                if end:
                    finished += 1
                    break
                n = min(stream.left, self._send_window, stream.window, self._max_frame)
        if finished:
            self._sending = [stream for stream in self._sending if stream.left]
        for stream in self._sending:
            stream.own()
        return iov

    def _stop_sending(self, stream: Stream) -> None:
        if stream.left and stream in self._sending:
            self._sending.remove(stream)

    # -- the socket ------------------------------------------------------------------------

    def _write(self, iov: list, owned: bool = False) -> None:
        """Hand ``iov`` to the kernel; what it does not take now waits in the backlog, copied
        unless ``owned`` (the backlog's own bytes)."""
        if self._backlog:
            self._backlog += map(bytes, iov)
            return
        while iov:
            try:
                sent = self._sock.sendmsg(iov[:IOV_MAX])
            except BlockingIOError:
                break
            except OSError as exc:
                self._fail(grpc.StatusCode.UNAVAILABLE, f"sending failed: {exc.strerror}")
                return
            taken = 0
            for piece in iov:
                if sent < len(piece):
                    break
                sent -= len(piece)
                taken += 1
            del iov[:taken]
            if sent:
                iov[0] = memoryview(iov[0])[sent:]
        if iov:
            self._backlog = iov if owned else [bytes(piece) for piece in iov]
            self._loop.add_writer(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        backlog, self._backlog = self._backlog, []
        self._loop.remove_writer(self._fd)
        self._write(backlog, owned=True)

    def _on_readable(self) -> None:
        try:
            chunk = self._sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(grpc.StatusCode.UNAVAILABLE, f"connection lost: {exc.strerror}")
            return
        if not chunk:
            self._fail(grpc.StatusCode.UNAVAILABLE, "the server closed the connection")
            return
        inbox = self._inbox
        inbox += chunk
        start, size = 0, len(inbox)
        try:
            while size - start >= 9:
                high, low, kind, flags, stream_id = f.HEAD.unpack_from(inbox, start)
                end = start + 9 + ((high << 8) | low)
                if end > size:
                    break
                self._frame(kind, flags, stream_id & f.MAX_STREAM_ID,
                            memoryview(inbox)[start + 9:end])
                start = end
                if not self.usable and self._sock is None:
                    return  # failed while reading
        except ProtocolViolation as exc:
            self._fail(grpc.StatusCode.INTERNAL, f"HTTP/2 protocol error from the server: {exc}",
                       exc.code)
            return
        del inbox[:start]

    # -- frames ------------------------------------------------------------------------------

    def _frame(self, kind: int, flags: int, stream_id: int, payload: memoryview) -> None:
        if self._headers is not None and kind != f.CONTINUATION:
            raise ProtocolViolation(f.PROTOCOL_ERROR, "a header block was interrupted")
        if kind == f.DATA:
            self._data(flags, stream_id, payload)
        elif kind == f.HEADERS:
            try:
                block = f.unpadded(payload, flags, priority=True)
            except ValueError as exc:
                raise ProtocolViolation(f.PROTOCOL_ERROR, str(exc)) from None
            if flags & f.END_HEADERS:
                self._header_block(stream_id, bytes(block), bool(flags & f.END_STREAM))
            else:
                self._headers = (stream_id, bytearray(block), bool(flags & f.END_STREAM))
        elif kind == f.CONTINUATION:
            if self._headers is None or self._headers[0] != stream_id:
                raise ProtocolViolation(f.PROTOCOL_ERROR, "CONTINUATION out of place")
            self._headers[1].extend(payload)
            if flags & f.END_HEADERS:
                (_, block, end_stream), self._headers = self._headers, None
                self._header_block(stream_id, bytes(block), end_stream)
        elif kind == f.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == f.SETTINGS:
            if not flags & f.ACK:
                self._settings(payload)
        elif kind == f.PING:
            if not flags & f.ACK:
                self._write([f.frame_header(8, f.PING, f.ACK, 0), bytes(payload)])
        elif kind == f.RST_STREAM:
            stream = self.open_streams.pop(stream_id, None)
            if stream is not None:
                self._stop_sending(stream)
                stream.end(*reset_status(f.u32(payload)))
                self._after_end()
        elif kind == f.GOAWAY:
            self._goaway(f.u31(payload), f.u32(payload, 4))
        elif kind == f.PUSH_PROMISE:
            raise ProtocolViolation(f.PROTOCOL_ERROR, "PUSH_PROMISE though push is disabled")
        # PRIORITY and unknown types are ignored (RFC 9113, 5.5)

    def _data(self, flags: int, stream_id: int, payload: memoryview) -> None:
        # Every DATA frame counts against the connection's window, its stream open or not.
        self._received += len(payload)
        if self._received > f.MAX_WINDOW // 2:
            self._write([f.window_update(0, self._received)])
            self._received = 0
        stream = self.open_streams.get(stream_id)
        if stream is None:
            return
        try:
            body = bytes(f.unpadded(payload, flags, priority=False))
        except ValueError as exc:
            raise ProtocolViolation(f.PROTOCOL_ERROR, str(exc)) from None
        stream.response = body if stream.response is None else stream.response + body
        if flags & f.END_STREAM:
            self._ended(stream)

    def _header_block(self, stream_id: int, block: bytes, end_stream: bool) -> None:
        # Every block is decoded, a call's or not: the decoder's table depends on each.
        try:
            status = self._blocks.status(block)
        except hpack.HPACKError as exc:
            raise ProtocolViolation(f.COMPRESSION_ERROR, f"undecodable headers: {exc}") from None
        stream = self.open_streams.get(stream_id)
        if stream is None:
            return
        if status is not None:
            stream.status = status
        if end_stream:
            self._ended(stream)

    def _ended(self, stream: Stream) -> None:
        """The server ended the call: its status, and for OK its response message."""
        del self.open_streams[stream.id]
        if stream.left:  # the answer came before the request was sent: stop sending it
            self._stop_sending(stream)
            self._write([f.rst_stream(stream.id, f.CANCEL)])
        code, message = stream.status or (grpc.StatusCode.INTERNAL,
                                          "the server ended the call without grpc-status")
        response = None
        if code is grpc.StatusCode.OK:
            response = _message(stream.response)
            if response is None:
                code, message = grpc.StatusCode.INTERNAL, "no (uncompressed) response message"
        stream.end(code, message, response)
        self._after_end()

    def _after_end(self) -> None:
        """A stream slot is free: send a held call, or close a retired connection's socket."""
        while self._held and len(self.open_streams) < self._max_streams and self.usable:
            self._begin(self._held.popleft())
        if not self.usable and not self.open_streams:
            self.close()

    def _window_update(self, stream_id: int, payload: memoryview) -> None:
        increment = f.u31(payload)
        if stream_id == 0:
            self._send_window += increment
        elif stream_id in self.open_streams:
            self.open_streams[stream_id].window += increment
        else:
            return
        if self._sending:
            self._write(self._fill())

    def _settings(self, payload: memoryview) -> None:
        if len(payload) % 6:
            raise ProtocolViolation(f.FRAME_SIZE_ERROR, "SETTINGS of a length not 6n")
        for key, value in f.read_settings(payload):
            self.server_settings[key] = value
            if key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise ProtocolViolation(f.FLOW_CONTROL_ERROR, "initial window over 2^31-1")
                for stream in self.open_streams.values():
                    stream.window += value - self._initial_window
                self._initial_window = value
            elif key == f.MAX_FRAME_SIZE:
                self._max_frame = value
            elif key == f.MAX_CONCURRENT_STREAMS:
                self._max_streams = value
        self._write([f.settings({}, f.ACK), *self._fill()])
        if not self._settled.done():
            self._settled.set_result(True)
        self._after_end()  # a raised stream limit lets held calls go

    def _goaway(self, last_stream_id: int, code: int) -> None:
        """No new calls here; calls above ``last_stream_id`` were not processed."""
        self._retire()
        for stream_id in [sid for sid in self.open_streams if sid > last_stream_id]:
            stream = self.open_streams.pop(stream_id)
            self._stop_sending(stream)
            stream.end(grpc.StatusCode.UNAVAILABLE,
                       f"the server went away (GOAWAY 0x{code:x}) before processing the call")
        self._after_end()

    # -- the end -------------------------------------------------------------------------------

    def _retire(self) -> None:
        if self.usable:
            self.usable = False
            held, self._held = list(self._held), deque()
            self._retired(self, held)

    def _fail(self, code: grpc.StatusCode, message: str, error: int = f.NO_ERROR) -> None:
        """The connection is gone (``error``: the HTTP/2 error our GOAWAY names): its calls
        end with ``code``; held calls go elsewhere."""
        self._retire()
        streams, self.open_streams = list(self.open_streams.values()), {}
        self._sending = []
        self.close(error)
        for stream in streams:
            stream.end(code, message)

    def close(self, error: int = f.NO_ERROR) -> None:
        """Close the socket (a GOAWAY naming ``error`` first, when it can go at once); open
        calls end as CANCELLED."""
        if self._sock is None:
            return
        self._retire()
        if not self._backlog:
            try:
                self._sock.send(f.goaway(0, error))  # 0: we accept no streams
            except OSError:
                pass
        self._loop.remove_reader(self._fd)
        if self._backlog:
            self._loop.remove_writer(self._fd)
        self._sock.close()
        self._sock = None
        if not self._settled.done():
            self._settled.set_result(False)
        streams, self.open_streams = list(self.open_streams.values()), {}
        for stream in streams:
            stream.end(grpc.StatusCode.CANCELLED, "the channel closed")
        self._closed(self)


def _message(data: bytes | None) -> bytes | None:
    """The response message inside gRPC's length-prefixed framing; None if absent or
    compressed (the client never offers compression)."""
    if data is None or len(data) < 5 or data[0] != _PREFIX_OK:
        return None
    return data[5:5 + int.from_bytes(data[1:5], "big")]


def grpc_message(payload: bytes) -> list:
    """gRPC's length prefix and the request's bytes as two buffers: the bytes are not copied."""
    return [b"\x00" + len(payload).to_bytes(4, "big"), memoryview(payload)]
