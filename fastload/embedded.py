"""The reference scheduler in a subprocess on a free loopback port (``--embedded``, tests, bench)."""
from __future__ import annotations

import select
import signal
import subprocess
import sys
from typing import Sequence

LISTENING_PREFIX = "listening on "


class EmbeddedScheduler:
    """Starts ``python -m fastload.scheduler --port 0``, reads the address it bound, stops it."""

    def __init__(self, args: Sequence[str] = (), start_timeout_s: float = 20.0) -> None:
        self._args = list(args)
        self._start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[str] | None = None
        self.address = ""
        self.stats_line = ""

    def start(self) -> str:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fastload.scheduler", "--host", "127.0.0.1", "--port", "0",
             *self._args],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        ready, _, _ = select.select([self.process.stdout], [], [], self._start_timeout_s)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line.startswith(LISTENING_PREFIX):
            self.stop()
            raise RuntimeError(f"reference scheduler did not start (said {line!r})")
        self.address = line[len(LISTENING_PREFIX):]
        return self.address

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT, so it prints its stats line; kill if it does not exit in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            out, _ = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        self.stats_line = (out or "").strip().splitlines()[-1] if (out or "").strip() else ""
        self.process = None

    def __enter__(self) -> "EmbeddedScheduler":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
