"""`python -m fastload.sweep`: one run per offered load (and per workload and embedded policy),
then one table and sweep.json: the curve a scheduler study plots, SLO attainment against load.

Every flag `python -m fastload` takes works here and applies to every point, except those the
sweep sets per point (--total-qps, --metrics-csv, --output-dir). Each point is a whole run: with
--embedded it gets a fresh reference scheduler, so no queue carries over between points.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fastload.commands.argparsing import OneLineParser
from fastload.commands.run import main as run_main
from fastload.commands.run import parse_config
from fastload.contract.exits import (
    EXIT_CLIENT_LIMITED,
    EXIT_LOADGEN_FAILED,
    EXIT_OK,
    EXIT_OUTPUT_FAILED,
    EXIT_REQUEST_ERRORS,
    EXIT_SHARD_DIED,
    EXIT_SIGNALLED_BASE,
    EXIT_THRESHOLD,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
    WorkloadError,
)
from fastload.contract.workload import WORKLOAD_FRACTIONS
from fastload.results.sweep_table import client_limited, sweep_point, write_sweep

PROG = "python -m fastload.sweep"
SET_PER_POINT = ("--total-qps", "--metrics-csv", "--output-dir", "--qps-schedule",
                 "--arrival-trace", "--workload", "--workload-file", "--embedded-policy")
# Exit codes of a point that end the sweep: the rest would fail the same way.
FATAL = (EXIT_USAGE, EXIT_UNREACHABLE, EXIT_LOADGEN_FAILED, EXIT_OUTPUT_FAILED)
_STOP_WHEN = re.compile(r"^\s*attainment\s*<\s*(\d+(?:\.\d*)?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Series:
    """The points that share everything but the rate, in rising order of rate."""

    workload: str  # a built-in name or a workload file
    policy: str | None  # --embedded-policy, when swept

    @property
    def label(self) -> str:
        name = Path(self.workload).stem if self.workload.endswith((".toml", ".json")) \
            else self.workload
        return name + (f"-{self.policy}" if self.policy else "")


def parse_rates(text: str) -> list[float]:
    """``100,200,400`` or ``START:STOP:STEP`` (STOP included), rising."""
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            rates = [start + i * step for i in range(count)]
        else:
            rates = [float(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--qps must be rates like 100,200,400 or START:STOP:STEP with "
                         f"STEP > 0, got {text!r}") from None
    if not rates or any(not math.isfinite(r) or r <= 0 for r in rates):
        raise UsageError(f"--qps rates must be positive, got {text!r}")
    return sorted(set(rates))


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations: `--embedded` (a run flag) must not read as `--embedded-policy`.
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0], allow_abbrev=False,
                epilog="Any other flag is passed to every run (see python -m fastload --help).")
    p.add_argument("--qps", required=True,
                   help="offered loads: 100,200,400,800 or 100:1000:100 (stop included)")
    p.add_argument("--workload", default="balanced",
                   help="comma-separated built-in mixes or workload files, one series each "
                        "(default %(default)s)")
    p.add_argument("--embedded-policy",
                   help="with --embedded: comma-separated policies, one series each, e.g. "
                        "fifo,priority (default: the run's default)")
    p.add_argument("--output-dir", type=Path, default=Path("./sweep"),
                   help="each point's CSV, JSON and LoadGen logs, and sweep.json "
                        "(default %(default)s)")
    p.add_argument("--stop-when", metavar="ATTAINMENT<PCT",
                   help="end a series once a point's overall SLO attainment is below PCT %%, "
                        "or once a point is client-limited (exit 8)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args, run_flags = build_parser().parse_known_args(argv)
    try:
        rates = parse_rates(args.qps)
        series = _series(args, run_flags)
        stop_below = _stop_below(args.stop_when)
        argvs = {(s, q): [*run_flags, *_point_flags(s, q, args.output_dir)]
                 for s in series for q in rates}
        # Every point's flags are checked before the first run, so a typo costs no runs.
        configs = {key: parse_config(argv) for key, argv in argvs.items()}
    except (UsageError, WorkloadError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    points: list[dict] = []
    labels = [s.label for s in series]
    exit_code = 0
    for s in series:
        for qps in rates:
            print(f"sweep: {s.label} at {qps:g} QPS ({len(points) + 1} of "
                  f"{len(series) * len(rates)} at most)", flush=True)
            code = run_main(argvs[(s, qps)])
            points.append(sweep_point(s.label, s.workload, s.policy, qps,
                                      configs[(s, qps)], code, args.output_dir))
            exit_code = _worse(exit_code, code)
            if code in FATAL or code >= EXIT_SIGNALLED_BASE:
                write_sweep(args.output_dir, points, rates, labels)
                return code
            if stop_below is not None and _stops(points[-1], stop_below):
                break
    write_sweep(args.output_dir, points, rates, labels)
    return exit_code


def _series(args: argparse.Namespace, run_flags: list[str]) -> list[Series]:
    taken = [flag for flag in run_flags if flag.split("=")[0] in SET_PER_POINT]
    if taken:
        raise UsageError(f"{taken[0]} is set per point by the sweep; use --qps, --workload "
                         f"and --output-dir")
    workloads = [w.strip() for w in args.workload.split(",") if w.strip()]
    policies = ([p.strip() for p in args.embedded_policy.split(",") if p.strip()]
                if args.embedded_policy else [None])
    if args.embedded_policy and "--embedded" not in run_flags:
        raise UsageError("--embedded-policy needs --embedded")
    series = [Series(w, p) for w in workloads for p in policies]
    labels = [s.label for s in series]
    if len(set(labels)) != len(labels):
        raise UsageError(f"two series would share a name: {', '.join(labels)}")
    return series


def _stop_below(text: str | None) -> float | None:
    if text is None:
        return None
    match = _STOP_WHEN.match(text)
    if match is None:
        raise UsageError(f"--stop-when must be ATTAINMENT<PCT, e.g. 'ATTAINMENT<90', got {text!r}")
    return float(match[1])


def _stops(point: dict, stop_below: float) -> bool:
    """Whether --stop-when ends the point's series, said when it does: attainment below the
    bound, or a client-limited point (a higher rate would not load the server more)."""
    where = f"sweep: {point['series']} at {point['target_qps']:g} QPS"
    if client_limited(point):
        print(f"{where} was client-limited ({point['load']['reason']}); the series stops here",
              flush=True)
        return True
    attainment = point["overall"] and point["overall"]["slo_attainment_pct"]
    if attainment is not None and attainment < stop_below:
        print(f"{where}: attainment {attainment:.1f} % < {stop_below:g} %; the series stops "
              f"here", flush=True)
        return True
    return False


def _point_flags(series: Series, qps: float, output_dir: Path) -> list[str]:
    folder = output_dir / series.label
    flags = ["--total-qps", f"{qps:g}", "--metrics-csv", str(folder / f"qps{qps:g}.csv"),
             "--output-dir", str(folder / f"qps{qps:g}_loadgen")]
    flags += (["--workload", series.workload] if series.workload in WORKLOAD_FRACTIONS
              else ["--workload-file", series.workload])
    if series.policy:
        flags += ["--embedded-policy", series.policy]
    return flags


def _worse(old: int, new: int) -> int:
    """The more telling of two points' codes: 7 (a shard died) over 8 (client-limited) over 6
    (a --fail-if held) over 1 (request errors) over 0; fatal codes never get here, they end
    the sweep."""
    order = (EXIT_OK, EXIT_REQUEST_ERRORS, EXIT_THRESHOLD, EXIT_CLIENT_LIMITED, EXIT_SHARD_DIED)
    return max(old, new, key=order.index)
