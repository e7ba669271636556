"""One shard: a whole fastload run in a Ray actor, held at a start gate until the driver's GO.

The actor is threaded (the driver sets max_concurrency): ``run`` holds one thread for the whole
run while the driver's other calls (``go``, ``read``, ``stop``) come in on others. Rows go back
by the driver reading the shard's own CSV in whole lines from an offset, so they survive on the
shard's machine too, and a shard that dies has sent everything up to the driver's last read.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import ray

from fastload.contract.config import RunConfig
from fastload.run.local import run_local
from fastload.run.shards.clock import read_clocks

# The most CSV bytes one read returns (about 25,000 rows); the driver reads again at once.
READ_LIMIT_BYTES = 4 << 20


@dataclass(frozen=True)
class Placement:
    """Where a shard runs: what the driver prints, and what a person needs to find its files."""

    node_id: str
    node_ip: str
    hostname: str
    pid: int


@dataclass(frozen=True)
class ShardResult:
    exit_code: int
    summary: dict | None  # the shard's own JSON summary, when it wrote one


class ShardActor:
    """A shard's run and the driver's handles on it; wrapped by ``ray.remote`` in the driver."""

    def __init__(self) -> None:
        self._csv: Path | None = None
        self._ready = threading.Event()  # at the gate, or the run ended before it
        self._at_gate = False
        self._go = threading.Event()
        self._start_wall_ns = 0
        self._lock = threading.Lock()
        self._stop_run: Callable[[int], None] | None = None
        self._stop_signum: int | None = None

    def placement(self) -> Placement:
        return Placement(ray.get_runtime_context().get_node_id(),
                         ray.util.get_node_ip_address(), socket.gethostname(), os.getpid())

    def clocks(self) -> tuple[int, int]:
        return read_clocks()

    def run(self, config: RunConfig) -> ShardResult:
        """The shard's whole run; start-up errors (unreachable target, ...) raise as in a run."""
        self._csv = config.metrics_csv
        config.metrics_csv.unlink(missing_ok=True)  # never stream a previous run's rows
        try:
            exit_code = run_local(config, before_go=self._gate)
        finally:
            self._ready.set()
        try:
            summary = json.loads(config.summary_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = None
        return ShardResult(exit_code, summary)

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the run waits at the gate (connected, arrivals ready); False if it ended
        before it (the run's own result says why) or the timeout passed."""
        return self._ready.wait(timeout_s) and self._at_gate

    def go(self, start_wall_ns: int) -> None:
        """Open the gate at this Unix time on this shard's clock (the driver's GO plus the
        shard's measured offset), so that all shards start together whatever a call's delay."""
        self._start_wall_ns = start_wall_ns
        self._go.set()

    def stop(self, signum: int) -> None:
        """Stop the run as that signal would in a run of its own: stop issuing, drain, write."""
        with self._lock:
            self._stop_signum = signum
            stop_run = self._stop_run
        if stop_run is not None:
            stop_run(signum)
        self._go.set()

    def read(self, offset: int) -> tuple[bytes, int]:
        """Whole CSV rows (no header) from byte ``offset`` of the shard's CSV, and the offset
        after them; nothing while the file has no whole row there yet."""
        try:
            with open(self._csv, "rb") as f:
                f.seek(offset)
                data = f.read(READ_LIMIT_BYTES)
        except (OSError, TypeError):  # not started, or not created yet
            return b"", offset
        start = 0
        if offset == 0:
            start = data.find(b"\n") + 1
            if start == 0:
                return b"", 0
        end = data.rfind(b"\n") + 1
        return data[start:end], offset + max(end, start)

    def _gate(self, stop_run: Callable[[int], None]) -> None:
        with self._lock:
            self._stop_run = stop_run
            signum = self._stop_signum
        if signum is not None:
            stop_run(signum)
            return
        self._at_gate = True
        self._ready.set()
        self._go.wait()
        if self._stop_signum is None:
            time.sleep(max(0.0, (self._start_wall_ns - time.time_ns()) / 1e9))
