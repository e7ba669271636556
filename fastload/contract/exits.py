"""How a run ends: its exit codes, and the errors that end it before any traffic.

Each error is one line for people (what was wrong, the value, what to do); the command prints it
as ``fastload: error: ...`` and exits with the code ``exit_code_for`` gives it.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_REQUEST_ERRORS = 1  # some requests failed (the summary counts them)
EXIT_USAGE = 2  # bad flags, workload, outputs or a target whose models do not fit
EXIT_UNREACHABLE = 3  # the target (or a model on it, or the Ray cluster) cannot be reached
EXIT_LOADGEN_FAILED = 4  # an arrival or sender process died before its test ended
EXIT_OUTPUT_FAILED = 5  # the CSV could not be written to the end
EXIT_THRESHOLD = 6  # a --fail-if condition held
EXIT_SHARD_DIED = 7  # --ray: a shard died; the outputs keep the rows it sent
EXIT_CLIENT_LIMITED = 8  # the load certificate: the client, not the server, was the bottleneck
# SIGINT/SIGTERM: 128 + the signal number (130 / 143).
EXIT_SIGNALLED_BASE = 128


class UsageError(ValueError):
    """A flag value that cannot be used."""


class WorkloadError(ValueError):
    """A workload name or file that cannot be used; the message names the bad entry."""


class OutputError(ValueError):
    """An output that cannot be created; the message names the flag, the path and the reason."""


class TargetMismatch(ValueError):
    """The server's models do not fit the workload; nothing was sent."""


class TargetUnavailable(RuntimeError):
    """The server cannot be reached, or a model is not ready; nothing was sent."""


# What a run raises before traffic, and the exit code each ends it with.
START_ERRORS: dict[type[Exception], int] = {
    UsageError: EXIT_USAGE,
    WorkloadError: EXIT_USAGE,
    OutputError: EXIT_USAGE,
    TargetMismatch: EXIT_USAGE,
    TargetUnavailable: EXIT_UNREACHABLE,
}


def exit_code_for(error: Exception) -> int:
    """The exit code of one of START_ERRORS (or of a subclass)."""
    return next(code for kind, code in START_ERRORS.items() if isinstance(error, kind))
