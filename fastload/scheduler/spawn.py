"""Runs the scheduler as a real subprocess on a free port: shared by tests and benchmarks.

Reads the `listening on HOST:PORT` line to learn the address (and, with --metrics-port, the
`metrics on URL` line after it), so callers never guess ports.
"""
from __future__ import annotations

import re
import select
import signal
import subprocess
import sys

_LISTENING = re.compile(r"listening on (\S+):(\d+)\n")
_METRICS = re.compile(r"metrics on (\S+)\n")


class SchedulerProcess:
    """`python -m fastload.scheduler --port 0 ARGS...`, started and ready once constructed."""

    def __init__(self, *args: str, host: str = "127.0.0.1", start_timeout_s: float = 15.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastload.scheduler", "--host", host, "--port", "0",
             "--exit-with-parent", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Its own session: a Ctrl-C meant for fastload must not kill the scheduler mid-run.
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], start_timeout_s)
        match = _LISTENING.fullmatch(self.proc.stdout.readline()) if ready else None
        if match is None:
            self.proc.kill()
            _, stderr = self.proc.communicate()
            raise RuntimeError(f"scheduler {' '.join(args)} did not start: {stderr.strip()!r}")
        self.address = f"{match[1]}:{match[2]}"
        self.port = int(match[2])
        self.metrics_url: str | None = None  # with --metrics-port: where /metrics is served
        if "--metrics-port" in args:
            metrics = _METRICS.fullmatch(self.proc.stdout.readline())
            if metrics is None:
                self.close()
                raise RuntimeError(f"scheduler {' '.join(args)} served no metrics")
            self.metrics_url = metrics[1]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(
        self, sig: int = signal.SIGTERM, timeout_s: float = 10.0
    ) -> subprocess.CompletedProcess[str]:
        """Send `sig` and wait; the result holds the exit code and the rest of stdout and stderr."""
        self.proc.send_signal(sig)
        stdout, stderr = self.proc.communicate(timeout=timeout_s)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, stdout, stderr)

    def close(self) -> None:
        """Stop it whatever state it is in: SIGTERM, then SIGKILL if it does not exit."""
        if self.proc.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.communicate()

    def __enter__(self) -> SchedulerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
