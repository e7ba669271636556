"""Calls over HTTP/2 connections of fastload's own (``--transport h2``): one connection at a
time, a new one when the server ends it (GOAWAY, stream ids spent, the socket lost), and each
call ended at its deadline with a RST_STREAM, as grpcio's channel does."""
from __future__ import annotations

import asyncio
import socket
from collections import deque
from dataclasses import dataclass

import grpc

try:
    import uvloop
except ImportError:  # a platform without uvloop's wheels (Windows)
    uvloop = None

from fastload import __version__
from fastload.send.base import CONNECT_TIMEOUT_S, Ended
from fastload.send.h2 import frames
from fastload.send.h2.connection import Connection, Stream, grpc_message

# How long a new connection waits for the server's SETTINGS before calls go with HTTP/2's
# defaults (a 64 KiB window) until they come.
SETTINGS_WAIT_S = 3.0
# After a failed connect, calls fail at once (UNAVAILABLE) for this long before the next try:
# grpcio's first reconnect backoff.
RETRY_AFTER_S = 1.0
# How late past its deadline a call may end: one timer serves every call due in this time.
EXPIRY_SLACK_S = 0.005


@dataclass(frozen=True)
class Endpoint:
    """Where the server listens: ``host:port`` (names resolved at connect) or ``unix:PATH``."""

    host: str
    port: int
    unix_path: str | None = None

    @property
    def authority(self) -> str:
        if self.unix_path is not None:
            return "localhost"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def connect(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        """A connected non-blocking socket; OSError if none."""
        if self.unix_path is not None:
            candidates = [(socket.AF_UNIX, self.unix_path)]
        else:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            candidates = [(family, address) for family, _, _, _, address in infos]
        error: OSError = OSError(f"{self.authority} resolves to no address")
        for family, address in candidates:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise error


def endpoint(address: str) -> Endpoint:
    """The endpoint of a gRPC target address; ValueError for a form HTTP/2 here cannot reach."""
    for scheme in ("unix://", "unix:"):
        if address.startswith(scheme):
            return Endpoint("", 0, address[len(scheme):])
    address = address.removeprefix("dns:///")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host or "/" in address:
        raise ValueError(f"--transport h2 needs HOST:PORT or unix:PATH, got {address!r}")
    return Endpoint(host.strip("[]"), int(port))


def h2_event_loop() -> asyncio.AbstractEventLoop:
    """The sender's loop for h2: libuv's (uvloop) where there is one. Measured, seed-paired:
    asyncio's loop costs 1.10x uvloop's CPU per request at 500 QPS, 1.06x at 1,000."""
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()


class H2Channel:
    """The run's calls (a ``Calls``) on this process's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, where: Endpoint, header_block: bytes,
                 timeout_s: float) -> None:
        self._loop = loop
        self._where = where
        self._block = header_block
        self._timeout_s = timeout_s
        self._connection: Connection | None = None
        self._connections: set[Connection] = set()  # the current one and any draining
        self._connecting: asyncio.Task | None = None
        self._held: deque[Stream] = deque()  # waiting for a connection
        self._retry_at = 0.0  # the loop's clock; calls fail at once before it
        self._unreachable = ""  # why the last connect failed
        self._due: deque[Stream] = deque()  # every call in start order: deadlines in order
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False

    async def connect(self) -> None:
        """The first connection, so the first call does not wait for the handshake; if the
        server is not there, calls fail as UNAVAILABLE until it is."""
        await self._reconnect()

    def start(self, payload: bytes, ended: Ended) -> Stream:
        stream = Stream(grpc_message(payload), ended, self._loop.time() + self._timeout_s, self)
        self._due.append(stream)
        if self._timer is None:
            self._timer = self._loop.call_at(stream.deadline + EXPIRY_SLACK_S, self._expire)
        connection = self._connection
        if connection is not None and connection.usable:
            connection.submit(stream)
        else:
            self._hold(stream)
        return stream

    def _hold(self, stream: Stream) -> None:
        """Keep a call until a connection is up; fail it while the server is unreachable."""
        if stream.ended is None:
            return
        if self._closing or self._loop.time() < self._retry_at:
            stream.end(grpc.StatusCode.UNAVAILABLE, self._unreachable or "the channel closed")
            return
        stream.own()
        stream.owner = self
        self._held.append(stream)
        if self._connecting is None:
            self._connecting = self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            sock = await asyncio.wait_for(self._where.connect(self._loop), CONNECT_TIMEOUT_S)
            connection = await Connection.open(self._loop, sock, self._block, SETTINGS_WAIT_S,
                                               self._retired, self._connections.discard)
        except (OSError, asyncio.TimeoutError) as exc:
            self._unreachable = (f"cannot reach {self._where.authority} over HTTP/2: "
                                 f"{getattr(exc, 'strerror', None) or exc or 'timed out'}")
            self._retry_at = self._loop.time() + RETRY_AFTER_S
            held, self._held = self._held, deque()
            for stream in held:
                stream.end(grpc.StatusCode.UNAVAILABLE, self._unreachable)
            return
        finally:
            self._connecting = None
        if self._closing:
            connection.close()
            return
        self._connections.add(connection)
        self._connection = connection
        held, self._held = self._held, deque()
        for stream in held:
            connection.submit(stream)

    def _retired(self, connection: Connection, unsent: list[Stream]) -> None:
        """A connection takes no more calls: the next call opens a new one; the calls it
        held back, never sent, go there."""
        if connection is self._connection:
            self._connection = None
        for stream in unsent:
            self._hold(stream)

    def drop(self, stream: Stream, code: grpc.StatusCode, message: str) -> None:
        """End a call still held here."""
        if stream in self._held:
            self._held.remove(stream)
        stream.end(code, message)

    def _expire(self) -> None:
        """End every call past its deadline, as DEADLINE_EXCEEDED (grpcio's name for it)."""
        now = self._loop.time()
        due = self._due
        while due and due[0].deadline <= now:
            stream = due.popleft()
            if stream.ended is not None:
                stream.owner.drop(stream, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        while due and due[0].ended is None:
            due.popleft()  # ended already: no need to wake for them
        self._timer = (self._loop.call_at(due[0].deadline + EXPIRY_SLACK_S, self._expire)
                       if due else None)

    async def close(self) -> None:
        """Close every connection; calls still in flight end as CANCELLED."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        if self._connecting is not None:
            await asyncio.wait((self._connecting,))
        for connection in list(self._connections):
            connection.close()
        held, self._held = self._held, deque()
        for stream in held:
            stream.end(grpc.StatusCode.CANCELLED, "the channel closed")


async def open_h2_channel(address: str, timeout_s: float, metadata: tuple[tuple[str, str], ...],
                          method: str) -> H2Channel:
    """An H2Channel on the running loop, connected if the server answers in time."""
    where = endpoint(address)
    block = frames.request_headers(where.authority, method, timeout_s,
                                   f"fastload/{__version__} (h2)", metadata)
    channel = H2Channel(asyncio.get_running_loop(), where, block, timeout_s)
    await channel.connect()
    return channel
