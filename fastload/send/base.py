"""What a sender is, whichever one the run uses: this process's event loop (``Dispatcher``) or
``--processes N`` sender processes (``SenderProcesses``). A run holds one and never asks which."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import grpc.aio

from fastload.contract.load import ProcessLoad

if TYPE_CHECKING:
    from fastload.arrivals.pipe import Arrivals, IssuedSample
    from fastload.records.recorder import Recorder
    from fastload.records.row import Record

# Makes the channel the load goes on; called on the sender's own event loop (grpc.aio binds a
# channel to the loop it is made on), in whichever process sends.
ChannelFactory = Callable[[], grpc.aio.Channel]


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
