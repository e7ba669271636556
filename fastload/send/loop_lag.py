"""How late a sender's event loop runs a callback that is due: the delay any answer waits before
the loop can take it, so its p99 bounds how much of a measured latency is the client's.

The callback is the sender's watchdog, due every WATCHDOG_PERIOD_S (0.1 s), so measuring costs
no wake-up of its own: a timer of its own every 10 ms cost about 1 % of a core on an idle loop
(each wake-up ~0.1 ms of CPU on the 2-core machine), 4 % of fastload's CPU per request at
500 QPS. Ten samples a second make the p99 of a short run its largest lag.
"""
from __future__ import annotations

from hdrh.histogram import HdrHistogram

from fastload.contract.percentiles import Spread

_RANGE_US = (1, 3_600_000_000, 3)  # 1 µs to an hour, 3 significant digits


class LoopLag:
    """Lags observed while ``measuring`` (while the loop sends)."""

    def __init__(self) -> None:
        self._lag_us = HdrHistogram(*_RANGE_US)
        self.measuring = False

    def observe(self, late_s: float) -> None:
        """A callback ran ``late_s`` after it was due."""
        if self.measuring:
            self._lag_us.record_value(min(max(int(late_s * 1e6), 1), _RANGE_US[1]))

    def spread(self) -> Spread | None:
        """p50, p99 and max of the lags seen; None before the first."""
        return Spread.of(self._lag_us)
