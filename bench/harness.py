"""The contract between the ladder runner and the contender scripts (``client_*.py``): their
command line (``client_args``), LoadGen settings (``run_loadgen``) and output rows
(``write_samples``, in fastload's own column names, so that fastload's reader reads every
contender alike: ``ladder_stats.read_samples``), plus the reference scheduler's flags and the
description of the machine every result carries."""
from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
from pathlib import Path
from typing import Callable, Iterable

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
INFER_METHOD = "/scheduler.SchedulerService/Infer"
SAMPLE_COLUMNS = ("issue_mono_ns", "send_lag_ns", "latency_ns", "status")
# fastload's single LoadGen test uses the loosest active SLO as its latency target; the others
# copy it so every contender gets identical LoadGen settings (it does not change the schedule).
TARGET_LATENCY_NS = 2_000_000_000
SCHEDULER_ARGS = ("--gpus", "64", "--service-ms", "resnet50=0", "--service-ms", "vit=0")
# Where the runner's scheduler serves its Prometheus metrics, for contenders that scrape them
# (the runner sets it when one is in the run, and starts the scheduler with --metrics-port).
METRICS_URL_ENV = "FASTLOAD_BENCH_METRICS_URL"


def client_args(description: str,
                extra: Callable[[argparse.ArgumentParser], object] | None = None
                ) -> argparse.Namespace:
    """The command line every contender script takes; ``extra`` adds a script's own flags."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    if extra is not None:
        extra(parser)
    parser.add_argument("--target", required=True, help="scheduler host:port")
    parser.add_argument("--qps", type=float, required=True, help="LoadGen server_target_qps")
    parser.add_argument("--duration-ms", type=int, required=True, help="LoadGen min duration")
    parser.add_argument("--seed", type=int, required=True, help="LoadGen and client seed")
    parser.add_argument("--out", type=Path, required=True, help="per-sample CSV to write")
    return parser.parse_args()


def with_input_shape(parser: argparse.ArgumentParser) -> None:
    """``--input-shape``, for the contenders that send the floor's constant request."""
    from fastload.contract.workload import INPUT_SHAPE

    parser.add_argument("--input-shape", type=lambda text: tuple(map(int, text.split(","))),
                        default=INPUT_SHAPE, help="the request's float32 tensor shape "
                        f"(default {','.join(map(str, INPUT_SHAPE))})")


def connect(target: str):
    """A channel that is ready before LoadGen starts, so no sample waits for the connection."""
    import grpc

    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=10)
    return channel


def loadgen_log_dir(out: Path) -> Path:
    return out.with_name(out.stem + "_loadgen")


def run_loadgen(sut, args: argparse.Namespace) -> None:
    """One Server-scenario test with fastload's own settings function, so the rate, duration
    and seed derivation are exactly those ``python -m fastload --seed S`` uses."""
    import mlperf_loadgen as lg

    from fastload.arrivals.loadgen import (
        PERF_SAMPLE_COUNT,
        TOTAL_SAMPLES,
        ArrivalPlan,
        loadgen_settings,
    )

    log_dir = loadgen_log_dir(args.out)
    log_dir.mkdir(parents=True, exist_ok=True)
    plan = ArrivalPlan("all", args.qps, TARGET_LATENCY_NS, args.duration_ms, 1, args.seed,
                       str(log_dir), ())
    settings = loadgen_settings(plan, lg)
    log_output = lg.LogOutputSettings()
    log_output.outdir = str(log_dir)
    log_output.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = log_output
    qsl = lg.ConstructQSL(TOTAL_SAMPLES, PERF_SAMPLE_COUNT, lambda _: None, lambda _: None)
    lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    lg.DestroyQSL(qsl)


def write_samples(out: Path, rows: Iterable[tuple[int, int, int, str]]) -> None:
    """Rows of (issue_mono_ns, send_lag_ns, latency_ns, status); send lag -1 if never sent.
    The column names are fastload's, so one reader handles every contender."""
    with open(out, "w", newline="", encoding="ascii") as f:
        writer = csv.writer(f)
        writer.writerow(SAMPLE_COLUMNS)
        writer.writerows(rows)


def machine() -> dict:
    import grpc
    import numpy

    cpu_model = next((line.split(":", 1)[1].strip()
                      for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor() or "unknown")
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu_model,
            "python": platform.python_version(), "grpcio": grpc.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(),
            "loadavg_at_start": os.getloadavg(), "git": _git_state()}


def _git_state() -> str:
    """The commit and the files changed since, as other engineers edit the tree meanwhile."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True,
                              text=True).stdout.strip()

    changed = git("status", "--short", "--", "fastload").replace("\n", ", ")
    return git("rev-parse", "--short", "HEAD") + (f" + uncommitted {changed}" if changed else "")
