"""A gRPC server for scheduler.SchedulerService/Infer built on the ``h2`` library, with the
misbehaviours an HTTP/2 client must survive, to order: tiny flow-control windows and frames, a
stream limit, GOAWAY after a number of calls, RST_STREAM, trailers-only errors, calls never
answered. One thread per connection; 127.0.0.1 on a free port; ``stop`` closes everything."""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

from fastload._pb.scheduler_pb2 import InferRequest, InferResponse


@dataclass
class Misbehaviour:
    """What the server does; call n (counted from 1 over all connections) is answered by the
    first rule that names it."""

    initial_window: int = 65_535
    max_frame: int = 16_384
    max_streams: int | None = None
    goaway_after: int | None = None  # GOAWAY (and close) after answering this many on a connection
    reset_every: int | None = None  # RST_STREAM(ENHANCE_YOUR_CALM) instead of an answer
    error_every: int | None = None  # trailers-only INVALID_ARGUMENT, message "bad tensor %"
    silent_every: int | None = None  # never answered
    garbage_after: int | None = None  # a malformed frame after answering this many on a connection


@dataclass
class Seen:
    """What the server received, for tests to compare with what was sent."""

    requests: list[bytes] = field(default_factory=list)  # each call's gRPC message, in order
    headers: list[dict[str, str]] = field(default_factory=list)
    resets: list[int] = field(default_factory=list)  # error codes of the client's RST_STREAMs
    connections: int = 0
    goaways: list[int] = field(default_factory=list)  # error codes of the client's GOAWAYs
    errors: list[str] = field(default_factory=list)  # protocol errors the client made


class H2Server:
    def __init__(self, misbehaviour: Misbehaviour = Misbehaviour()) -> None:
        self.misbehaviour = misbehaviour
        self.seen = Seen()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.seen.connections += 1
                self._sockets.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        rules = self.misbehaviour
        conn = H2Connection(H2Configuration(client_side=False, header_encoding="ascii"))
        settings = {SettingCodes.INITIAL_WINDOW_SIZE: rules.initial_window,
                    SettingCodes.MAX_FRAME_SIZE: rules.max_frame}
        if rules.max_streams is not None:
            settings[SettingCodes.MAX_CONCURRENT_STREAMS] = rules.max_streams
        conn.local_settings = Settings(client=False, initial_values=settings)
        conn.initiate_connection()
        bodies: dict[int, bytearray] = {}
        answered = 0
        try:
            sock.sendall(conn.data_to_send())
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    return
                try:
                    events = conn.receive_data(data)
                except ProtocolError as exc:
                    with self._lock:
                        self.seen.errors.append(repr(exc))
                    sock.sendall(conn.data_to_send())
                    return
                for event in events:
                    if isinstance(event, RequestReceived):
                        bodies[event.stream_id] = bytearray()
                        with self._lock:
                            self.seen.headers.append(dict(event.headers))
                    elif isinstance(event, DataReceived):
                        bodies[event.stream_id] += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
                    elif isinstance(event, StreamReset):
                        with self._lock:
                            self.seen.resets.append(event.error_code)
                    elif isinstance(event, StreamEnded):
                        answered += 1
                        self._answer(conn, event.stream_id, bytes(bodies.pop(event.stream_id)))
                        if answered == rules.garbage_after:
                            sock.sendall(conn.data_to_send()
                                         + b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + bytes(5))
                        if rules.goaway_after is not None and answered >= rules.goaway_after:
                            conn.close_connection(last_stream_id=event.stream_id)
                            sock.sendall(conn.data_to_send())
                            _linger(sock)
                            return
                    elif isinstance(event, ConnectionTerminated):
                        with self._lock:
                            self.seen.goaways.append(event.error_code)
                        return
                sock.sendall(conn.data_to_send())
        except OSError:
            return
        finally:
            sock.close()

    def _answer(self, conn: H2Connection, stream_id: int, message: bytes) -> None:
        with self._lock:
            self.seen.requests.append(message)
            n = len(self.seen.requests)
        rules = self.misbehaviour
        if rules.silent_every and n % rules.silent_every == 0:
            return
        if rules.reset_every and n % rules.reset_every == 0:
            conn.reset_stream(stream_id, ErrorCodes.ENHANCE_YOUR_CALM)
            return
        if rules.error_every and n % rules.error_every == 0:
            conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc"),
                                          ("grpc-status", "3"),
                                          ("grpc-message", "bad%20tensor%20%25")],
                              end_stream=True)
            return
        request = InferRequest.FromString(message[5:])
        answer = InferResponse(success=request.tier > 0).SerializeToString()
        conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
        conn.send_data(stream_id, b"\x00" + len(answer).to_bytes(4, "big") + answer)
        conn.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)

    def stop(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(5)


def _linger(sock: socket.socket) -> None:
    """Close after the client has read everything: closing with its bytes unread would send a
    TCP reset, and the client's kernel would drop what it had not read yet."""
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(10)
    while sock.recv(1 << 16):
        pass
