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

This file is also the contract the contender scripts import: their command line
(``client_args``), LoadGen settings (``run_loadgen``) and output rows (``write_samples``).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
INFER_METHOD = "/scheduler.SchedulerService/Infer"
SAMPLE_COLUMNS = ("issue_mono_ns", "send_lag_ns", "latency_ns", "status")
# fastload's single LoadGen test uses the loosest active SLO as its latency target; the others
# copy it so every contender gets identical LoadGen settings (it does not change the schedule).
TARGET_LATENCY_NS = 2_000_000_000
SCHEDULER_ARGS = ("--gpus", "64", "--service-ms", "resnet50=0", "--service-ms", "vit=0")

DEFAULT_RATES = (50, 100, 200, 300, 500, 800, 1000, 1200, 1500, 2000, 2500, 3000)
QUICK_RATES = (50, 200, 500, 1000)
# Issue 14: fastload's client CPU per request at most 0.9x the floor's at these rates.
LEAN_SENDER_RATES = (500, 1000)
SUSTAINED_RATE_TOLERANCE = 0.02
SUSTAINED_SEND_LAG_P99_MS = 5.0
FAILS_TO_STOP = 2
# A run of about one request: measures a contender's fixed start-up and shutdown CPU.
STARTUP_QPS, STARTUP_DURATION_MS = 100.0, 1
RUN_TIMEOUT_MARGIN_S = 120.0


# --- The contract with the contender scripts ----------------------------------------------------

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

    from fastload.arrivals.loadgen import (PERF_SAMPLE_COUNT, TOTAL_SAMPLES, ArrivalPlan,
                                           loadgen_settings)

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


# --- Contenders ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    argv: Callable[[str, float, int, int, Path], list[str]]
    is_client: bool = True
    # `python -m fastload` imports the package from here: another checkout gives an A/B.
    cwd: Path = REPO_ROOT


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


CONTENDERS = (
    Contender("spec", "the spec's client (one class, thread per query, tolist)",
              _script("client_spec.py")),
    Contender("floor", "constant request, grpcio future, nothing else", _script("client_floor.py")),
    Contender("fastload", "python -m fastload (defaults)", _fastload()),
    Contender("fastload-fresh", "python -m fastload --fresh-tensors", _fastload("--fresh-tensors")),
    # Sender processes (issue 14): how the max sustained rate scales with N on this machine.
    *(Contender(f"fastload-p{n}", f"python -m fastload --processes {n}",
                _fastload("--processes", str(n))) for n in (2, 4, 8)),
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


# --- One run ------------------------------------------------------------------------------------

def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_s(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def run_once(contender: Contender, target: str, server_pid: int, qps: float, duration_ms: int,
             seed: int, work_dir: Path) -> dict:
    """Run one contender to completion; its CPU, the server's CPU and its samples' statistics."""
    out = work_dir / f"{contender.name}-{qps:g}qps-{duration_ms}ms-seed{seed}.csv"
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
    cpu_s = _children_cpu_s() - cpu_before
    server_cpu_s = _process_cpu_s(server_pid) - server_before
    run = {"contender": contender.name, "target_qps": qps, "seed": seed, "returncode": returncode,
           "wall_s": wall_s, "cpu_s": cpu_s, "server_cpu_s": server_cpu_s}
    # fastload exits 1 when some requests failed; that is measured below, not a crash.
    if returncode not in (0, 1) or not out.exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        print(f"  ! {contender.name} at {qps:g} QPS seed {seed}: exit {returncode}: "
              f"{' | '.join(tail)}", file=sys.stderr, flush=True)
        return {**run, "failed": True}
    return {**run, "failed": False, "samples_csv": str(out), **sample_stats(read_samples(out))}


def read_samples(path: Path) -> dict[str, list]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [(int(r["issue_mono_ns"]), int(r["send_lag_ns"]), int(r["latency_ns"]), r["status"])
                for r in reader]
    return {name: [row[i] for row in rows] for i, name in enumerate(SAMPLE_COLUMNS)}


def sample_stats(samples: dict[str, list]) -> dict:
    """Rates, percentiles and inter-arrival CV of one run's samples."""
    import numpy as np

    issue_ns = np.array(samples["issue_mono_ns"], dtype=np.int64)
    send_lag_ns = np.array(samples["send_lag_ns"], dtype=np.int64)
    latency_ns = np.array(samples["latency_ns"], dtype=np.int64)
    ok = np.array([s == "OK" for s in samples["status"]], dtype=bool)
    issued, completed = len(issue_ns), int(ok.sum())

    def pct_ms(values: np.ndarray, q: float) -> float | None:
        return float(np.percentile(values, q) / 1e6) if values.size else None

    stats = {"issued": issued, "completed": completed, "errors": issued - completed}
    if issued < 2:
        return {**stats, "achieved_qps": None, "issue_cv": None, "send_lag_p50_ms": None,
                "send_lag_p99_ms": None, "latency_p50_ms": None, "latency_p99_ms": None}
    finished = latency_ns >= 0
    end_ns = int((issue_ns[finished] + latency_ns[finished]).max()) if finished.any() \
        else int(issue_ns.max())
    span_s = (end_ns - int(issue_ns.min())) / 1e9
    gaps = np.diff(np.sort(issue_ns)).astype(np.float64)
    sent_lags = send_lag_ns[send_lag_ns >= 0]
    return {
        **stats,
        # Completed requests over first issue .. last completion: a client that falls behind
        # finishes late and scores low, though LoadGen issued every sample on time.
        "achieved_qps": completed / span_s if span_s > 0 else None,
        "issue_cv": float(gaps.std() / gaps.mean()) if gaps.mean() > 0 else None,
        "send_lag_p50_ms": pct_ms(sent_lags, 50), "send_lag_p99_ms": pct_ms(sent_lags, 99),
        "latency_p50_ms": pct_ms(latency_ns[ok], 50), "latency_p99_ms": pct_ms(latency_ns[ok], 99),
    }


def schedule_lateness_ms(samples: dict[str, list], schedule: dict[str, list]) -> dict:
    """How late each request was sent against LoadGen's schedule, p50/p99 in ms.

    Send lag starts at the issue callback, so a client that delays LoadGen's issue thread (the
    floor sends inside it) shows small send lags and late issues instead. The empty-callback run
    at the same seed gives the schedule as LoadGen alone delivers it; the k-th issued sample of
    every contender is the k-th of that schedule. Lateness is relative, since each process
    starts LoadGen's clock at a different moment: the median sample counts as on time. (Not the
    least late one: the reference run has wake-up jitter of its own, which made some samples of
    every contender look a few ms early.)
    """
    import numpy as np

    issue = np.array(samples["issue_mono_ns"], dtype=np.int64)
    lag = np.array(samples["send_lag_ns"], dtype=np.int64)
    reference = np.sort(np.array(schedule["issue_mono_ns"], dtype=np.int64))
    order = np.argsort(issue, kind="stable")
    n = min(len(order), len(reference))
    if n < 2:
        return {"late_p99_ms": None, "late_max_ms": None}
    issue, lag = issue[order][:n], lag[order][:n]
    send = np.where(lag >= 0, issue + np.maximum(lag, 0), issue).astype(np.float64)
    late = send - reference[:n]
    late -= np.median(late)
    return {"late_p99_ms": float(np.percentile(late, 99) / 1e6),
            "late_max_ms": float(late.max() / 1e6)}


# --- The ladder ---------------------------------------------------------------------------------

def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(present) if present else None


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


def summarize_point(contender: Contender, runs: list[dict], empty_runs: dict[int, dict],
                    startup_cpu_s: float) -> dict:
    """Medians over a contender's repeats at one rate, and whether it sustained the rate."""
    good = [r for r in runs if not r["failed"]]
    for run in good:
        reference = empty_runs.get(run["seed"])
        schedule_qps = reference.get("achieved_qps") if reference else None
        run["schedule_qps"] = schedule_qps
        run["achieved_pct_of_schedule"] = (100 * run["achieved_qps"] / schedule_qps
                                           if run["achieved_qps"] and schedule_qps else None)
        run["empty_issue_cv"] = reference.get("issue_cv") if reference else None
        if reference:
            run.update(schedule_lateness_ms(read_samples(Path(run["samples_csv"])),
                                            read_samples(Path(reference["samples_csv"]))))
        completed = run["completed"]
        run["cpu_us_per_request"] = run["cpu_s"] * 1e6 / completed if completed else None
        run["steady_cpu_us_per_request"] = ((run["cpu_s"] - startup_cpu_s) * 1e6 / completed
                                            if completed else None)
        run["server_cpu_us_per_request"] = (run["server_cpu_s"] * 1e6 / completed
                                            if completed else None)
    keys = ("achieved_qps", "schedule_qps", "achieved_pct_of_schedule", "cpu_us_per_request",
            "steady_cpu_us_per_request", "server_cpu_us_per_request", "send_lag_p50_ms",
            "send_lag_p99_ms", "late_p99_ms", "late_max_ms", "latency_p50_ms", "latency_p99_ms",
            "issue_cv", "empty_issue_cv", "errors", "issued", "wall_s")
    point = {"contender": contender.name, "target_qps": runs[0]["target_qps"],
             "repeats": len(runs), "crashed_runs": len(runs) - len(good),
             "errors_per_repeat": [r.get("errors") for r in runs],
             **{key: _median(r.get(key) for r in good) for key in keys}}
    if contender.is_client:
        lag_p99 = point["send_lag_p99_ms"]
        point["sustained"] = (_rate_kept(point) and lag_p99 is not None
                              and lag_p99 < SUSTAINED_SEND_LAG_P99_MS)
    return point


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
                line.append(f"{contender.name} {_fmt(point['achieved_pct_of_schedule'], 1)}% "
                            f"{_fmt(point['steady_cpu_us_per_request'], 0)}us "
                            f"{'ok' if point['sustained'] else 'FAIL'}")
        print("  " + " | ".join(line), file=sys.stderr, flush=True)
    return all_runs, points


# --- Report -------------------------------------------------------------------------------------

def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _rate_kept(point: dict) -> bool:
    """Most repeats ran, the median achieved within 2 % of the schedule, no errors."""
    pct = point["achieved_pct_of_schedule"]
    return (2 * point["crashed_runs"] < point["repeats"] and pct is not None
            and abs(pct - 100) <= 100 * SUSTAINED_RATE_TOLERANCE and point["errors"] == 0)


def client_names(points: list[dict]) -> list[str]:
    """The clients measured (not the empty-callback reference), in order of appearance."""
    return list(dict.fromkeys(p["contender"] for p in points if "sustained" in p))


def max_qps(points: list[dict], lag_key: str | None) -> dict[str, float | None]:
    """Each client's highest rate kept with ``lag_key`` (a p99 in ms) under the bound; with
    lag_key None, whatever the lag. "send_lag_p99_ms" gives the max sustained QPS."""
    best: dict[str, float | None] = {name: None for name in client_names(points)}
    for p in points:
        if p["contender"] not in best or not _rate_kept(p):
            continue
        lag_ms = p.get(lag_key) if lag_key else 0.0
        if lag_ms is None or lag_ms >= SUSTAINED_SEND_LAG_P99_MS:
            continue
        best[p["contender"]] = max(best[p["contender"]] or 0, p["target_qps"])
    return best


_SUSTAINED_MARK = {True: "yes", False: "no", None: "(reference)"}


def markdown_table(points: list[dict]) -> str:
    lines = [
        "| target QPS | client | achieved QPS | % of schedule | CPU µs/req | steady CPU µs/req "
        "| server CPU µs/req | send lag p50 / p99 ms | late vs schedule p99 / max ms "
        "| latency p50 / p99 ms | issue CV (empty) | errors | sustained |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for p in points:
        lines.append(
            f"| {p['target_qps']:g} | {p['contender']} | {_fmt(p['achieved_qps'], 1)} "
            f"| {_fmt(p['achieved_pct_of_schedule'], 1)} | {_fmt(p['cpu_us_per_request'], 0)} "
            f"| {_fmt(p['steady_cpu_us_per_request'], 0)} "
            f"| {_fmt(p['server_cpu_us_per_request'], 0)} "
            f"| {_fmt(p['send_lag_p50_ms'], 2)} / {_fmt(p['send_lag_p99_ms'], 2)} "
            f"| {_fmt(p.get('late_p99_ms'), 2)} / {_fmt(p.get('late_max_ms'), 2)} "
            f"| {_fmt(p['latency_p50_ms'], 2)} / {_fmt(p['latency_p99_ms'], 2)} "
            f"| {_fmt(p['issue_cv'], 3)} ({_fmt(p['empty_issue_cv'], 3)}) "
            f"| {'/'.join(str(e) for e in p['errors_per_repeat'])} "
            f"| {_SUSTAINED_MARK[p.get('sustained')]} |"
        )
    return "\n".join(lines)


def _ratios(points: list[dict], numerator: str, denominator: str, key: str,
            need_sustained: bool) -> dict[float, float]:
    """numerator/denominator of ``key`` at each rate where both ran (and sustained, if asked)."""
    by = {(p["contender"], p["target_qps"]): p for p in points}
    ratios = {}
    for (name, qps), p in by.items():
        q = by.get((denominator, qps))
        if name != numerator or q is None or p[key] is None or not q[key]:
            continue
        if need_sustained and not (p["sustained"] and q["sustained"]):
            continue
        ratios[qps] = p[key] / q[key]
    return ratios


def check_targets(points: list[dict], best: dict[str, float | None],
                  throughput_only: dict[str, float | None]) -> list[tuple[bool | None, str]]:
    """The targets of the issues whose contenders ran (14: fastload's CPU vs the floor's; 5:
    fastload's max sustained rate vs spec and floor; 12: fastload-kserve vs tritonclient), each
    as (passed, one line); None when undecided."""
    checks: list[tuple[bool | None, str]] = []
    key = "steady_cpu_us_per_request"

    def ratio_check(num: str, den: str, need_sustained: bool, test, claim: str,
                    rates: Sequence[float] | None = None) -> None:
        ratios = {q: r for q, r in _ratios(points, num, den, key, need_sustained).items()
                  if rates is None or q in rates}
        if not ratios:
            checks.append((None, f"{claim}: no common rate measured"))
            return
        median = statistics.median(ratios.values())
        per_rate = ", ".join(f"{q:g}: {r:.2f}" for q, r in sorted(ratios.items()))
        checks.append((test(median), f"{claim}: median {num}/{den} steady CPU ratio "
                                     f"{median:.2f} (per rate {per_rate})"))

    ran = set(client_names(points))
    if "fastload" in ran:  # issue 14's CPU target, issue 5's rate targets
        for qps in LEAN_SENDER_RATES:
            ratio_check("fastload", "floor", False, lambda r: r <= 0.9,
                        f"fastload client CPU/request <= 0.9x floor at {qps:g} QPS",
                        rates=(qps,))
        fl, floor, spec = best.get("fastload"), best.get("floor"), best.get("spec")
        if fl is None or floor is None:
            checks.append((False if fl is None else None,
                           f"fastload max sustained QPS >= 0.9x floor: fastload {fl}, "
                           f"floor {floor}"))
        else:
            checks.append((fl >= 0.9 * floor,
                           f"fastload max sustained QPS >= 0.9x floor: {fl:g} vs {floor:g} "
                           f"({fl / floor:.2f}x)"))
        if "spec" not in best:
            checks.append((None, "fastload max sustained QPS >= 5x spec: spec not run"))
        elif fl is None:
            checks.append((False, "fastload max sustained QPS >= 5x spec: fastload sustained "
                                  "no rate"))
        else:
            checks.append((fl >= 5 * (spec or 0),
                           f"fastload max sustained QPS >= 5x spec: {fl:g} vs "
                           + (f"{spec:g} ({fl / spec:.1f}x)" if spec else "spec sustained no rate")
                           + f"; spec ignoring send lag: {throughput_only.get('spec') or 'none'}"))
        at_500 = next((p for p in points
                       if p["contender"] == "fastload" and p["target_qps"] == 500), None)
        if at_500 is None or at_500["achieved_pct_of_schedule"] is None:
            checks.append((None, "fastload at 500 QPS: not measured"))
        else:
            pct, cv = at_500["achieved_pct_of_schedule"], at_500["issue_cv"]
            checks.append((abs(pct - 100) <= 2 and cv is not None and abs(cv - 1) <= 0.1,
                           f"fastload at 500 QPS achieved within 2 % and issue CV within 0.1 "
                           f"of 1: "
                           f"{pct:.1f} % of schedule ({at_500['achieved_qps']:.1f} QPS), CV "
                           f"{_fmt(cv, 3)} (empty callback {_fmt(at_500['empty_issue_cv'], 3)})"))
    if "fastload-kserve" in ran:  # issue 12's targets
        ratio_check("fastload-kserve", "tritonclient-reuse", True, lambda r: r < 1,
                    "KServe: fastload (unique tensors) client CPU/request below tritonclient "
                    "reusing one tensor")
        ratio_check("fastload-kserve", "tritonclient", True, lambda r: r <= 0.5,
                    "KServe: fastload client CPU/request <= 1/2 tritonclient with fresh tensors")
    return checks


def baseline_check(runs: list[dict]) -> tuple[bool | None, str]:
    """fastload against the baseline checkout, run by run: repeats with the same seed face the
    same schedule, so their CPU ratio cancels the machine's drift between repeats. On 2 shared
    cores one pair still varies by about ±10 %, so the check is that the median ratio is not
    above 1 by more than two standard errors (SE of a median: 1.25 σ / √n). Repeats where either
    side had errors (a scheduler hiccup, not the client) are left out."""
    def steady(name: str) -> dict[tuple[float, int], float]:
        return {(r["target_qps"], r["seed"]): r["steady_cpu_us_per_request"] for r in runs
                if r["contender"] == name and not r["failed"] and r.get("errors") == 0
                and r.get("steady_cpu_us_per_request")}

    new, base = steady("fastload"), steady("fastload-base")
    ratios = {key: new[key] / base[key] for key in new.keys() & base.keys()}
    claim = "fastload client CPU/request no higher than the baseline checkout's"
    if len(ratios) < 2:
        return None, f"{claim}: fewer than two error-free pairs"
    values = list(ratios.values())
    median = statistics.median(values)
    se = 1.2533 * statistics.stdev(values) / math.sqrt(len(values))
    per_rate = ", ".join(
        f"{qps:g}: {statistics.median(r for (q, _), r in ratios.items() if q == qps):.3f}"
        for qps in sorted({q for q, _ in ratios}))
    return (median <= 1 + 2 * se,
            f"{claim}: median paired ratio {median:.3f} ± {se:.3f} (SE) over {len(values)} "
            f"pairs, {min(values):.2f}-{max(values):.2f}; per rate {per_rate}")


def plot(points: list[dict], best: dict[str, float | None], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu_ax, rate_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name in client_names(points):
        mine = [p for p in points if p["contender"] == name]
        qps = [p["target_qps"] for p in mine]
        sustained = best[name]
        label = f"{name} (max sustained {'none' if sustained is None else f'{sustained:g}'})"
        line, = cpu_ax.plot(qps, [p["steady_cpu_us_per_request"] for p in mine], "o-",
                            label=label)
        cpu_ax.plot(qps, [p["cpu_us_per_request"] for p in mine], ":", color=line.get_color())
        rate_ax.plot(qps, [p["achieved_qps"] for p in mine], "o-", label=label,
                     color=line.get_color())
        for p in mine:
            if not p["sustained"]:
                rate_ax.plot(p["target_qps"], p["achieved_qps"] or 0, "kx", markersize=9)
    top = max((p["target_qps"] for p in points), default=1)
    rate_ax.plot([0, top], [0, top], "k--", linewidth=0.8, label="achieved = target")
    cpu_ax.set(xscale="log", yscale="log", xlabel="target QPS",
               ylabel="client CPU µs / completed request",
               title="client CPU per request (solid: steady, dotted: incl. start-up)")
    rate_ax.set(xlabel="target QPS", ylabel="achieved QPS", title="achieved vs target (x: not sustained: rate, send lag or errors)")
    for ax in (cpu_ax, rate_ax):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _qps(value: float | None, name: str) -> str:
    if name == EMPTY.name:
        return "(reference)"
    return "none" if value is None else f"{value:g}"


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
                        help="comma-separated clients to run (default %(default)s; also "
                             "fastload-kserve, tritonclient, tritonclient-reuse); the "
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
    from fastload.scheduler.spawn import SchedulerProcess

    info = machine()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fastload-bench-") as tmp, \
            SchedulerProcess(*SCHEDULER_ARGS) as scheduler:
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
        "seed": args.seed, "scheduler_args": SCHEDULER_ARGS,
        "elapsed_s": time.perf_counter() - started, "scheduler_stats": scheduler_stats,
        "contenders": {c.name: c.description for c in args.contenders},
        "startup_cpu_s": startup_cpu_s, "points": points, "runs": runs,
    }


def report(result: dict, out: Path) -> None:
    """Table, PASS/FAIL lines, ladder.json and ladder.png from a measured (or loaded) result."""
    points, startup_cpu_s, info = result["points"], result["startup_cpu_s"], result["machine"]
    best = max_qps(points, "send_lag_p99_ms")
    on_schedule = max_qps(points, "late_p99_ms")
    throughput_only = max_qps(points, None)
    checks = check_targets(points, best, throughput_only)
    if "fastload-base" in best:
        checks.append(baseline_check(result["runs"]))
    result.update({"max_sustained_qps": best, "max_qps_late_vs_schedule": on_schedule,
                   "max_qps_ignoring_send_lag": throughput_only,
                   "targets": [{"passed": passed, "check": line} for passed, line in checks]})

    print(f"\n{info['nproc']} CPUs, {info['cpu_model']}, Python {info['python']}, "
          f"grpcio {info['grpcio']}, fastload {info.get('git', '?')}\n`{result['command']}`: "
          f"{result['repeats']} interleaved repeat(s) of {result['duration_ms']} ms per rate, "
          f"medians; one reference scheduler ({' '.join(result['scheduler_args'])}) on the same "
          f"machine\n")
    print(markdown_table(points))
    print("\n| client | max sustained QPS (send lag p99 < 5 ms) | same, late vs schedule p99 "
          "< 5 ms instead | same, ignoring lag | start-up CPU ms |\n|---|---:|---:|---:|---:|")
    for name in result["contenders"]:
        print(f"| {name} | {_qps(best.get(name), name)} | {_qps(on_schedule.get(name), name)} "
              f"| {_qps(throughput_only.get(name), name)} "
              f"| {startup_cpu_s.get(name, 0) * 1000:,.0f} |")
    print()
    for passed, line in checks:
        print(f"{ {True: 'PASS', False: 'FAIL', None: 'N/A '}[passed]}  {line}")

    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "ladder.json", out / "ladder.png"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    plot(points, best, png_path, f"{info['nproc']} CPUs, {info['cpu_model']}; {result['command']}")
    print(f"\nwrote {json_path} and {png_path}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        report(json.loads(args.report.read_text()), args.out)
    else:
        report(measure(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
