"""How late a sender's event loop runs a callback due every PERIOD_S: the delay any answer waits
before the loop can take it, so its p99 bounds how much of a measured latency is the client's."""
from __future__ import annotations

import asyncio

from hdrh.histogram import HdrHistogram

from fastload.contract.percentiles import Spread

# 100 callbacks a second cost about 0.05 % of a core.
PERIOD_S = 0.01
_RANGE_US = (1, 3_600_000_000, 3)  # 1 µs to an hour, 3 significant digits


class LoopLag:
    """Runs on ``loop`` between ``start`` and ``stop`` (while the loop sends)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lag_us = HdrHistogram(*_RANGE_US)
        self._due_s = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._due_s = self._loop.time() + PERIOD_S
        self._handle = self._loop.call_at(self._due_s, self._tick)

    def _tick(self) -> None:
        now_s = self._loop.time()
        self._lag_us.record_value(min(max(int((now_s - self._due_s) * 1e6), 1), _RANGE_US[1]))
        self._due_s = now_s + PERIOD_S
        self._handle = self._loop.call_at(self._due_s, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def spread(self) -> Spread | None:
        """p50, p99 and max of the lags seen; None before the first tick."""
        return Spread.of(self._lag_us)
