"""What a sender is, whichever one the run uses: this process's event loop (``Dispatcher``) or
``--processes N`` sender processes (``SenderProcesses``). A run holds one and never asks which."""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable, Protocol, Sequence

import grpc

from fastload.contract.load import ProcessLoad

if TYPE_CHECKING:
    from fastload.arrivals.pipe import Arrivals, IssuedSample
    from fastload.records.recorder import Recorder
    from fastload.records.row import Record

# How long a sender waits for a connection to the target, at the start and (h2) when it
# reconnects; past it, calls say what is wrong, sample by sample.
CONNECT_TIMEOUT_S = 3.0

# What a call's end hands back, once: its gRPC code and message and, for OK, the response's bytes.
Ended = Callable[[grpc.StatusCode, str, "bytes | None"], None]


class Call(Protocol):
    def cancel(self) -> object:
        """End the call as CANCELLED unless it has ended."""


class Calls(Protocol):
    """The run's unary calls to the target on the sender's event loop: over grpcio
    (``send.grpcio``) or over fastload's own HTTP/2 connections (``send.h2``)."""

    def start(self, payload: bytes, ended: Ended) -> Call:
        """Start a call carrying ``payload`` (bytes the encoder rewrites a few calls later);
        ``ended`` is called once when it ends, possibly before ``start`` returns."""

    async def close(self) -> None:
        """Close the connections; calls still in flight end as CANCELLED."""


@dataclass(frozen=True)
class Transport:
    """How a sender reaches the target, in whichever process sends (picklable for
    --processes): the event loop it runs and the calls it starts there."""

    # Makes the calls of one gRPC method (its path), on the sender's loop (grpc.aio binds a
    # channel to the loop it is made on).
    open_calls: Callable[[str], Awaitable[Calls]]
    new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop


class Records(Protocol):
    """Where a sender records samples: the run's Recorder, or a sender process's Forwarder."""

    def open(self, sample: IssuedSample) -> Record: ...

    def close(self, record: Record, done_mono_ns: int, status: str, success: bool) -> bool:
        """Finish ``record`` once; False if it was finished before."""


class Sender(Protocol):
    """Sends every sample the arrival processes issue and records each outcome in the run's
    Recorder."""

    # Names of sender processes that died before the test ended (their samples were never
    # completed, so the run stopped); always empty for a sender that is this process.
    died: Sequence[str]

    def serve(self, arrivals: Arrivals, recorder: Recorder, stop: threading.Event) -> bool:
        """Send until every arrival process has ended, or ``stop`` is set (then False: the
        caller stops the arrival processes and drains)."""

    def drain(self, timeout_s: float) -> bool:
        """Wait for calls in flight; True if none is left."""

    def in_flight(self) -> int:
        """Calls started and not yet ended (for the status line)."""

    def loads(self) -> list[ProcessLoad]:
        """Each process that sent (and recorded) over ``serve``: CPU and event-loop lag, for the
        load certificate."""

    def close(self) -> None:
        """Close channels and processes; calls still in flight are cancelled."""
