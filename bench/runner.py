"""Client overhead: fastload against the spec's client and the grpcio floor, on a QPS ladder.

    python bench/runner.py [--quick] [--rates 50,100,...] [--repeats N] [--duration-ms D]
                           [--out bench/results]

One reference scheduler (started here, 64 simulated GPUs, 0 ms service) serves every run. At
each target rate the contenders run as separate processes, interleaved in a shuffled order and
repeated, all with the same LoadGen settings and seed per repeat, so they face the same Poisson
schedule:

    spec      bench/client_spec.py    the spec's SUT: thread per query, numpy -> list -> protobuf
    floor     bench/client_floor.py   one constant request resent through grpcio futures
    fastload  python -m fastload      default settings
    fresh     python -m fastload --fresh-tensors
    fastload-pN  python -m fastload --processes N (N = 2, 4, 8): sender processes
    empty     bench/client_empty.py   LoadGen with a callback that completes at once (reference)

Every contender writes one row per sample (issue time on CLOCK_MONOTONIC taken in its LoadGen
callback, send lag, latency, status) and the runner measures them all the same way. Client CPU is
the contender's process tree (getrusage(RUSAGE_CHILDREN) around the subprocess, which includes
fastload's LoadGen child) per completed request; "steady" subtracts the contender's start-up and
shutdown CPU, measured by runs of about one request. A client sustains a rate when, in the median
repeat, it achieves within 2 % of the schedule's rate with send-lag p99 < 5 ms and no errors. A
client stops climbing after failing two rates.

The contract the contender scripts import is ``harness.py``; the contenders are listed in
``contenders.py``, what their samples add up to is ``ladder_stats.py``, and the table, the
targets and the plot are ``ladder_report.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from fastload.scheduler.spawn import SchedulerProcess

from contenders import CONTENDERS, EMPTY, Contender, baseline_contender
from harness import BENCH_DIR, METRICS_URL_ENV, SCHEDULER_ARGS, machine
from ladder_report import report
from ladder_stats import fmt, read_samples, sample_stats, summarize_point

DEFAULT_RATES = (50, 100, 200, 300, 500, 800, 1000, 1200, 1500, 2000, 2500, 3000)
QUICK_RATES = (50, 200, 500, 1000)
FAILS_TO_STOP = 2
# A run of about one request: measures a contender's fixed start-up and shutdown CPU.
STARTUP_QPS, STARTUP_DURATION_MS = 100.0, 1
RUN_TIMEOUT_MARGIN_S = 120.0


def _children_cpu_s() -> tuple[float, float]:
    """CPU seconds of finished children so far: all, and the kernel's part."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_stime


def _process_cpu_s(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def run_once(contender: Contender, target: str, server_pid: int, qps: float, duration_ms: int,
             seed: int, work_dir: Path) -> dict:
    """Run one contender to completion; its CPU, the server's CPU and its samples' statistics."""
    out = work_dir / f"{contender.name}-{qps:g}qps-{duration_ms}ms-seed{seed}{contender.suffix}"
    argv = contender.argv(target, qps, duration_ms, seed, out)
    log_path = out.with_suffix(".log")
    timeout_s = duration_ms / 1000 + RUN_TIMEOUT_MARGIN_S
    server_before, cpu_before, wall_before = _process_cpu_s(server_pid), _children_cpu_s(), \
        time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, cwd=contender.cwd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            returncode = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            returncode = "timeout"
    wall_s = time.perf_counter() - wall_before
    cpu_after = _children_cpu_s()
    cpu_s, sys_cpu_s = cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]
    server_cpu_s = _process_cpu_s(server_pid) - server_before
    run = {"contender": contender.name, "target_qps": qps, "seed": seed, "returncode": returncode,
           "wall_s": wall_s, "cpu_s": cpu_s, "sys_cpu_s": sys_cpu_s,
           "server_cpu_s": server_cpu_s}
    # fastload exits 1 when some requests failed, 8 when its load certificate found it behind
    # its plan: both are measured below (errors, send lag, sustained), not crashes.
    if returncode not in (0, 1, 8) or not out.exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        print(f"  ! {contender.name} at {qps:g} QPS seed {seed}: exit {returncode}: "
              f"{' | '.join(tail)}", file=sys.stderr, flush=True)
        return {**run, "failed": True}
    return {**run, "failed": False, "samples_csv": str(out), **sample_stats(read_samples(out))}


def measure_startup(contenders: Sequence[Contender], target: str, server_pid: int, repeats: int,
                    seed: int, work_dir: Path, rng: random.Random) -> dict[str, float]:
    """Median CPU seconds of a run of about one request: interpreter, imports, channel, LoadGen
    set-up and teardown, which the steady per-request figure leaves out."""
    cpu: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(repeats):
        for contender in rng.sample(list(contenders), len(contenders)):
            run = run_once(contender, target, server_pid, STARTUP_QPS, STARTUP_DURATION_MS, seed,
                           work_dir)
            if not run["failed"]:
                cpu[contender.name].append(run["cpu_s"])
    return {name: (statistics.median(values) if values else 0.0) for name, values in cpu.items()}


def run_ladder(args: argparse.Namespace, contenders: Sequence[Contender], target: str,
               server_pid: int, work_dir: Path, startup_cpu_s: dict[str, float],
               rng: random.Random) -> tuple[list, list]:
    climbing = {c.name: 0 for c in contenders if c.is_client}  # client -> rates failed so far
    all_runs, points = [], []
    for qps in args.rates:
        clients = [c for c in contenders if c.name in climbing]
        if not clients:
            break
        runs: dict[str, list[dict]] = {c.name: [] for c in (*clients, EMPTY)}
        for repeat in range(args.repeats):
            seed = args.seed + repeat
            for contender in rng.sample([*clients, EMPTY], len(clients) + 1):
                runs[contender.name].append(run_once(contender, target, server_pid, qps,
                                                     args.duration_ms, seed, work_dir))
        empty_by_seed = {r["seed"]: r for r in runs[EMPTY.name] if not r["failed"]}
        line = [f"{qps:>6g} QPS"]
        for contender in (*clients, EMPTY):
            point = summarize_point(contender, runs[contender.name], empty_by_seed,
                                    startup_cpu_s[contender.name])
            points.append(point)
            all_runs.extend(runs[contender.name])
            if contender.is_client:
                if not point["sustained"]:
                    climbing[contender.name] += 1
                    if climbing[contender.name] >= FAILS_TO_STOP:
                        del climbing[contender.name]
                line.append(f"{contender.name} {fmt(point['achieved_pct_of_schedule'], 1)}% "
                            f"{fmt(point['steady_cpu_us_per_request'], 0)}us "
                            f"{'ok' if point['sustained'] else 'FAIL'}")
        print("  " + " | ".join(line), file=sys.stderr, flush=True)
    return all_runs, points


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"rates {','.join(map(str, QUICK_RATES))}, 1 repeat, 3 s runs "
                             "(about two minutes)")
    parser.add_argument("--rates", help="comma-separated target QPS ladder "
                                        f"(default {','.join(map(str, DEFAULT_RATES))})")
    parser.add_argument("--repeats", type=int, help="interleaved repeats per rate (default 3)")
    parser.add_argument("--duration-ms", type=int, help="LoadGen min duration (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of repeat 0 (default 1)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results",
                        help="folder for ladder.json and ladder.png (default bench/results)")
    parser.add_argument("--report", type=Path, metavar="LADDER_JSON",
                        help="measure nothing: reprint the table and redraw the PNG from a "
                             "ladder.json written earlier")
    parser.add_argument("--contenders", default="spec,floor,fastload,fastload-fresh",
                        help="comma-separated clients to run (default %(default)s; any of "
                             f"{', '.join(c.name for c in CONTENDERS if c.is_client)}); the "
                             "empty-callback reference always runs")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                        help="also run `python -m fastload` from another checkout as "
                             "fastload-base (build its extension in place first: "
                             "`python setup.py build_ext --inplace` there), to A/B a change")
    parser.add_argument("--keep-runs", type=Path,
                        help="keep every run's CSV, log and LoadGen logs in this folder")
    args = parser.parse_args(argv)
    try:
        rates = [float(r) for r in args.rates.split(",")] if args.rates else \
            list(QUICK_RATES if args.quick else DEFAULT_RATES)
    except ValueError:
        parser.error(f"--rates must be numbers separated by commas, got {args.rates!r}")
    args.rates = sorted(rates)
    known = {c.name: c for c in CONTENDERS if c.is_client}
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown contender {unknown[0]!r}; choose from {', '.join(known)}")
    args.contenders = [known[n] for n in names]
    if args.baseline:
        if not (args.baseline / "fastload" / "__init__.py").is_file():
            parser.error(f"--baseline {args.baseline} is not a fastload checkout")
        args.contenders.append(baseline_contender(args.baseline))
    args.contenders.append(EMPTY)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.duration_ms = args.duration_ms or (3000 if args.quick else 10000)
    if args.repeats < 1 or args.duration_ms < 100 or any(r <= 0 for r in args.rates):
        parser.error(f"need --repeats >= 1, --duration-ms >= 100 and rates > 0, got "
                     f"{args.repeats}, {args.duration_ms}, {args.rates}")
    return args


def measure(args: argparse.Namespace) -> dict:
    """Start the scheduler, measure start-up costs, climb the ladder; everything in one dict."""
    info = machine()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    # Served for every contender alike when one scrapes them, so that the A/B is fair.
    scheduler_args = (*SCHEDULER_ARGS, *(("--metrics-port", "0")
                                         if any(c.scrapes for c in args.contenders) else ()))
    with tempfile.TemporaryDirectory(prefix="fastload-bench-") as tmp, \
            SchedulerProcess(*scheduler_args) as scheduler:
        if scheduler.metrics_url is not None:
            os.environ[METRICS_URL_ENV] = scheduler.metrics_url
        work_dir = args.keep_runs or Path(tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        target, server_pid = scheduler.address, scheduler.pid
        print(f"scheduler on {target}; {info['nproc']} CPUs, {info['cpu_model']}; "
              f"rates {args.rates}, {args.repeats} repeats of {args.duration_ms} ms",
              file=sys.stderr, flush=True)
        # Warm the scheduler (allocator, HTTP/2 windows) before anything is measured.
        run_once(EMPTY, target, server_pid, 200, 1000, args.seed, work_dir)
        startup_cpu_s = measure_startup(args.contenders, target, server_pid, args.repeats,
                                        args.seed, work_dir, rng)
        print("  start-up CPU ms: " + ", ".join(f"{k} {v * 1000:.0f}"
                                                for k, v in startup_cpu_s.items()),
              file=sys.stderr, flush=True)
        runs, points = run_ladder(args, args.contenders, target, server_pid, work_dir,
                                  startup_cpu_s, rng)
        scheduler_stats = scheduler.stop(signal.SIGINT).stdout.strip()
    info["loadavg_at_end"] = os.getloadavg()
    return {
        "machine": info, "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rates": args.rates, "repeats": args.repeats, "duration_ms": args.duration_ms,
        "seed": args.seed, "scheduler_args": scheduler_args,
        "elapsed_s": time.perf_counter() - started, "scheduler_stats": scheduler_stats,
        "contenders": {c.name: c.description for c in args.contenders},
        "startup_cpu_s": startup_cpu_s, "points": points, "runs": runs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        report(json.loads(args.report.read_text()), args.out)
    else:
        report(measure(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
