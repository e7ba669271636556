"""The contenders the ladder runs, each a command line: the scripts beside this file and
``python -m fastload`` with its flags (``runner.py`` says what each one measures)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness import BENCH_DIR, METRICS_URL_ENV, REPO_ROOT, loadgen_log_dir


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    argv: Callable[[str, float, int, int, Path], list[str]]
    is_client: bool = True
    # `python -m fastload` imports the package from here: another checkout gives an A/B.
    cwd: Path = REPO_ROOT
    # It scrapes the scheduler's /metrics (issue 22): the runner serves them.
    scrapes: bool = False
    # Its samples' file: a CSV, or Parquet (fastload writes Parquet to a .parquet --metrics-csv).
    suffix: str = ".csv"


def _script(file_name: str, *flags: str) -> Callable[[str, float, int, int, Path], list[str]]:
    def argv(target: str, qps: float, duration_ms: int, seed: int, out: Path) -> list[str]:
        return [sys.executable, str(BENCH_DIR / file_name), "--target", target, "--qps", f"{qps:g}",
                "--duration-ms", str(duration_ms), "--seed", str(seed), "--out", str(out), *flags]
    return argv


def _fastload(*flags: str) -> Callable[[str, float, int, int, Path], list[str]]:
    def argv(target: str, qps: float, duration_ms: int, seed: int, out: Path) -> list[str]:
        return [sys.executable, "-m", "fastload", "--scheduler-url", target,
                "--total-qps", f"{qps:g}", "--duration-ms", str(duration_ms),
                "--min-query-count", "1", "--seed", str(seed), "--metrics-csv", str(out),
                "--output-dir", str(loadgen_log_dir(out)), *flags]
    return argv


def _fastload_scraping(interval_ms: int) -> Callable[[str, float, int, int, Path], list[str]]:
    """fastload scraping the runner's scheduler every ``interval_ms``."""
    def argv(target: str, qps: float, duration_ms: int, seed: int, out: Path) -> list[str]:
        return _fastload("--server-metrics", os.environ[METRICS_URL_ENV],
                         "--server-metrics-interval-ms", str(interval_ms))(
            target, qps, duration_ms, seed, out)
    return argv


TINY_TENSOR = ("--input-shape", "1,16")
TINY_WORKLOAD = ("--workload-file", str(BENCH_DIR / "tensor16.toml"))

CONTENDERS = (
    Contender("spec", "the spec's client (one class, thread per query, tolist)",
              _script("client_spec.py")),
    Contender("floor", "constant request, grpcio future, nothing else", _script("client_floor.py")),
    Contender("fastload", "python -m fastload (defaults)", _fastload()),
    # The two transports (issue 24): grpc.aio's channel and fastload's own HTTP/2.
    Contender("fastload-grpcio", "python -m fastload --transport grpcio",
              _fastload("--transport", "grpcio")),
    Contender("fastload-h2", "python -m fastload --transport h2", _fastload("--transport", "h2")),
    Contender("fastload-fresh", "python -m fastload --fresh-tensors", _fastload("--fresh-tensors")),
    # Sender processes (issue 14): how the max sustained rate scales with N on this machine.
    *(Contender(f"fastload-p{n}", f"python -m fastload --processes {n}",
                _fastload("--processes", str(n))) for n in (2, 4, 8)),
    # Scraping the scheduler's metrics (issue 22): at the default interval and ten times faster.
    *(Contender(f"fastload-scrape{ms}", f"python -m fastload --server-metrics URL "
                f"--server-metrics-interval-ms {ms}", _fastload_scraping(ms), scrapes=True)
      for ms in (1000, 100)),
    # Results written as Parquet (issue 23): the writer's cost against the CSV's.
    Contender("fastload-parquet", "python -m fastload --output-format parquet", _fastload(),
              suffix=".parquet"),
    # Below the grpcio floor (issue 24): the HTTP/2 prototype, and h2load (not LoadGen-paced);
    # then each with a 1x16 tensor (64 bytes), where the per-call work is all there is.
    Contender("h2-proto", "the floor's requests over a hand-made HTTP/2 connection, one "
              "sendmsg per request", _script("client_h2.py")),
    Contender("h2load", "nghttp2's h2load, the floor's request at a constant --rps",
              _script("client_h2load.py")),
    Contender("floor-16", "the floor, 1x16 tensor", _script("client_floor.py", *TINY_TENSOR)),
    Contender("h2-proto-16", "h2-proto, 1x16 tensor", _script("client_h2.py", *TINY_TENSOR)),
    Contender("h2load-16", "h2load, 1x16 tensor", _script("client_h2load.py", *TINY_TENSOR)),
    Contender("fastload-grpcio-16", "fastload --transport grpcio, 1x16 tensors",
              _fastload("--transport", "grpcio", *TINY_WORKLOAD)),
    Contender("fastload-h2-16", "fastload --transport h2, 1x16 tensors",
              _fastload("--transport", "h2", *TINY_WORKLOAD)),
    # KServe v2 against the same reference scheduler (issue 12); tritonclient needs protobuf < 7.
    Contender("fastload-kserve", "python -m fastload --protocol kserve",
              _fastload("--protocol", "kserve")),
    Contender("tritonclient", "tritonclient async_infer, fresh np.random.rand tensor per request",
              _script("client_tritonclient.py")),
    Contender("tritonclient-reuse", "tritonclient async_infer, one numpy tensor reused",
              _script("client_tritonclient.py", "--reuse-tensor")),
    Contender("empty", "LoadGen, callback completes at once (CV reference)",
              _script("client_empty.py"), is_client=False),
)
EMPTY = next(c for c in CONTENDERS if not c.is_client)


def baseline_contender(checkout: Path) -> Contender:
    """fastload from another checkout (its extension built in place), to A/B a change."""
    return Contender("fastload-base", f"python -m fastload from {checkout}", _fastload(),
                     cwd=checkout.resolve())
