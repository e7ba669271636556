"""The live view of a run: one status line on stderr about once a second.

Fed by the Recorder's writer thread with the records it has just written (off the senders'
path), read by a thread of its own. On a terminal the line is rewritten in place; otherwise a
plain line is printed every few seconds, for logs. While the send lag of the samples written
since the last line is surely above the load certificate's limit, the line ends with a warning:
the client is behind its plan now, before the certificate says so at the end.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Sequence, TextIO

from fastload.contract.percentiles import nearest_rank, p99_floor_rank
from fastload.records.row import ANSWERED, Record

TTY_PERIOD_S = 1.0
LOG_PERIOD_S = 5.0
_CLEAR_TO_EOL = "\x1b[K"


class Progress:
    """Counts what the writer hands over; prints elapsed of total, issued, achieved rate, in
    flight, errors, the p99 of the latencies completed in the last period and SLO attainment,
    and a warning while the send lag is above ``lag_limit_ms``."""

    def __init__(self, duration_s: float, start_mono_ns: int,
                 pending: Callable[[], tuple[int, int]], lag_limit_ms: float,
                 stream: TextIO = sys.stderr, tty: bool | None = None) -> None:
        self._duration_s = duration_s
        self._lag_limit_ms = lag_limit_ms
        self._start_mono_ns = start_mono_ns
        self._pending = pending  # (calls in flight, closed records not yet written)
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._period_s = TTY_PERIOD_S if self._tty else LOG_PERIOD_S
        self._lock = threading.Lock()
        self._written = self._met = self._errors = 0
        self._window_ns: list[int] = []
        self._send_lags_ns: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fastload-progress", daemon=True)

    def add(self, records: Sequence[Record]) -> None:
        """The writer's hook: records just written to the CSV."""
        latencies = [r.latency_ns for r in records if r.status in ANSWERED]
        send_lags = [lag for lag in (r.send_lag_ns for r in records) if lag >= 0]
        met = sum(r.slo_met for r in records)
        with self._lock:
            self._written += len(records)
            self._errors += len(records) - len(latencies)
            self._met += met
            self._window_ns.extend(latencies)
            self._send_lags_ns.extend(send_lags)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Print the last line and end it, so what follows starts on a line of its own."""
        if not self._thread.is_alive():
            return
        self._stop.set()
        self._thread.join()
        self._print(end="\n" if self._tty else "")

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            self._print()

    def _print(self, end: str = "") -> None:
        line = self.line()
        text = f"\r{line}{_CLEAR_TO_EOL}{end}" if self._tty else line + "\n"
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop the run
            self._stop.set()

    def line(self) -> str:
        elapsed_s = (time.monotonic_ns() - self._start_mono_ns) / 1e9
        with self._lock:
            written, met, errors = self._written, self._met, self._errors
            window, self._window_ns = self._window_ns, []
            send_lags, self._send_lags_ns = self._send_lags_ns, []
        open_count, unflushed = self._pending()
        issued = written + open_count + unflushed
        window.sort()
        p99 = f"{window[nearest_rank(len(window), 99) - 1] / 1e6:.1f} ms" if window else "–"
        attainment = f"{100 * met / written:.1f} %" if written else "–"
        return (f"fastload: {min(elapsed_s, self._duration_s):5.1f}/{self._duration_s:.1f} s  "
                f"issued {issued:,}  {issued / elapsed_s if elapsed_s > 0 else 0:.1f} QPS  "
                f"in flight {open_count:,}  errors {errors:,}  "
                f"p99 (last {self._period_s:g} s) {p99}  SLO met {attainment}"
                f"{self._lag_warning(send_lags)}")

    def _lag_warning(self, send_lags_ns: list[int]) -> str:
        """The warning when the p99 of these send lags is surely above the limit (as the
        certificate judges it: by the least that p99 can be, given how many there are)."""
        n = len(send_lags_ns)
        rank = p99_floor_rank(n)
        if rank is None:
            return ""
        send_lags_ns.sort()
        if send_lags_ns[rank - 1] <= self._lag_limit_ms * 1e6:
            return ""
        p99_ms = send_lags_ns[nearest_rank(n, 99) - 1] / 1e6
        return f"  CLIENT BEHIND: send lag p99 {p99_ms:.1f} ms > {self._lag_limit_ms:g} ms"
