"""What the ladder concludes from each contender's samples: rates, percentiles, inter-arrival CV,
lateness against LoadGen's own schedule, medians over repeats, the max sustained rate, and the
issues' targets as PASS/FAIL lines."""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fastload.records.reader import read_columns

from contenders import Contender
from harness import SAMPLE_COLUMNS

# Issue 14: fastload's client CPU per request at most 0.9x the floor's at these rates.
LEAN_SENDER_RATES = (500, 1000)
SUSTAINED_RATE_TOLERANCE = 0.02
SUSTAINED_SEND_LAG_P99_MS = 5.0


def read_samples(path: Path) -> dict[str, np.ndarray]:
    """A contender's samples, read with fastload's own reader (the columns are fastload's)."""
    return read_columns(path, SAMPLE_COLUMNS)


def fmt(value: float | None, digits: int) -> str:
    """A number for a table: – when there is none."""
    return "–" if value is None else f"{value:,.{digits}f}"


def sample_stats(samples: dict[str, list]) -> dict:
    """Rates, percentiles and inter-arrival CV of one run's samples."""
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


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(present) if present else None


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
        # The kernel's part of the client's CPU (start-up included), where runs recorded it.
        run["kernel_cpu_us_per_request"] = (run["sys_cpu_s"] * 1e6 / completed
                                            if completed and "sys_cpu_s" in run else None)
    keys = ("achieved_qps", "schedule_qps", "achieved_pct_of_schedule", "cpu_us_per_request",
            "steady_cpu_us_per_request", "kernel_cpu_us_per_request",
            "server_cpu_us_per_request", "send_lag_p50_ms",
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
    fastload's max sustained rate vs spec and floor; 12: fastload-kserve vs tritonclient; 23:
    Parquet against CSV results; 24: the HTTP/2 prototype vs the floor), each as (passed, one
    line); None when undecided."""
    checks: list[tuple[bool | None, str]] = []
    key = "steady_cpu_us_per_request"

    def ratio_check(num: str, den: str, need_sustained: bool, test, claim: str,
                    rates: Sequence[float] | None = None, of: str = key) -> None:
        ratios = {q: r for q, r in _ratios(points, num, den, of, need_sustained).items()
                  if rates is None or q in rates}
        if not ratios:
            checks.append((None, f"{claim}: no common rate measured"))
            return
        median = statistics.median(ratios.values())
        per_rate = ", ".join(f"{q:g}: {r:.2f}" for q, r in sorted(ratios.items()))
        what = "steady CPU" if of == key else of
        checks.append((test(median), f"{claim}: median {num}/{den} {what} ratio "
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
                           f"{fmt(cv, 3)} (empty callback {fmt(at_500['empty_issue_cv'], 3)})"))
    if "fastload-kserve" in ran:  # issue 12's targets
        ratio_check("fastload-kserve", "tritonclient-reuse", True, lambda r: r < 1,
                    "KServe: fastload (unique tensors) client CPU/request below tritonclient "
                    "reusing one tensor")
        ratio_check("fastload-kserve", "tritonclient", True, lambda r: r <= 0.5,
                    "KServe: fastload client CPU/request <= 1/2 tritonclient with fresh tensors")
    if {"fastload-parquet", "fastload"} <= ran:  # issue 23: the Parquet writer's cost
        ratio_check("fastload-parquet", "fastload", False, lambda r: r <= 1.1,
                    "Parquet results: fastload's client CPU/request within 10 % of the CSV's")
        ratio_check("fastload-parquet", "fastload", False, lambda r: r <= 1.2,
                    "Parquet results: send-lag p99 no worse than the CSV's (+20 %: noise)",
                    of="send_lag_p99_ms")
    if "h2-proto" in ran:  # issue 24's target, at 500 QPS
        ratio_check("h2-proto", "floor", False, lambda r: r <= 0.6,
                    "HTTP/2 prototype client CPU/request <= 0.6x floor at 500 QPS",
                    rates=(500,))
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
