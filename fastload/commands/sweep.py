"""`python -m fastload.sweep`: one run per offered load (and per workload and embedded policy),
then one table and sweep.json: the curve a scheduler study plots, SLO attainment against load.

Every flag `python -m fastload` takes works here and applies to every point, except those the
sweep sets per point (--total-qps, --metrics-csv, --output-dir). Each point is a whole run: with
--embedded it gets a fresh reference scheduler, so no queue carries over between points.
"""
from __future__ import annotations

import argparse
import math
import random
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
from fastload.contract.signals import PRIORITY_SIGNALS
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
    signal: str | None = None  # --priority-signal, when swept

    @property
    def base_label(self) -> str:
        """The label of the conditions that differ only in the priority signal."""
        name = Path(self.workload).stem if self.workload.endswith((".toml", ".json")) \
            else self.workload
        return name + (f"-{self.policy}" if self.policy else "")

    @property
    def label(self) -> str:
        return self.base_label + (f"-{self.signal}" if self.signal else "")


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
    p.add_argument("--priority-signal",
                   help="comma-separated signals, one series each, e.g. as-is,equal: with both, "
                        "sweep.json gets priority_effect and a verdict on whether the server "
                        "honours priority (default: the run's, as-is)")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per point, with seeds SEED, SEED+1, ... for every condition, so "
                        "conditions pair up; means and 95 %% confidence intervals over them "
                        "(default %(default)s)")
    p.add_argument("--seed", type=int,
                   help="the first repeat's seed (default: random, printed)")
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
        if args.repeats < 1:
            raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
        if args.seed is not None and args.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {args.seed}")
        base_seed = (args.seed if args.seed is not None
                     else random.SystemRandom().randrange(2**32 - args.repeats))
        seeds = [base_seed + repeat for repeat in range(args.repeats)]
        argvs = {(s, q, seed): [*run_flags, *_point_flags(s, q, seed, args.output_dir,
                                                           args.repeats > 1)]
                 for s in series for q in rates for seed in seeds}
        # Every point's flags are checked before the first run, so a typo costs no runs.
        configs = {key: parse_config(argv) for key, argv in argvs.items()}
    except (UsageError, WorkloadError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    points: list[dict] = []
    labels = [s.label for s in series]
    exit_code = 0
    print(f"sweep: seeds {seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else f"sweep: seed {seeds[0]}",
          flush=True)
    for s in series:
        for qps in rates:
            for repeat, seed in enumerate(seeds):
                print(f"sweep: {s.label} at {qps:g} QPS, seed {seed} ({len(points) + 1} of "
                      f"{len(series) * len(rates) * len(seeds)} at most)", flush=True)
                code = run_main(argvs[(s, qps, seed)])
                points.append({**sweep_point(s.label, s.workload, s.policy, qps,
                                             configs[(s, qps, seed)], code, args.output_dir),
                               "base_series": s.base_label, "signal": s.signal,
                               "repeat": repeat, "seed": seed})
                exit_code = _worse(exit_code, code)
                if code in FATAL or code >= EXIT_SIGNALLED_BASE:
                    write_sweep(args.output_dir, points, rates, labels)
                    return code
            if stop_below is not None and any(_stops(p, stop_below) for p in points
                                              if p["series"] == s.label
                                              and p["target_qps"] == qps):
                break
    write_sweep(args.output_dir, points, rates, labels)
    return exit_code


def _series(args: argparse.Namespace, run_flags: list[str]) -> list[Series]:
    taken = [flag for flag in run_flags if flag.split("=")[0] in SET_PER_POINT]
    if taken:
        raise UsageError(f"{taken[0]} is set per point by the sweep; use --qps, --workload "
                         f"and --output-dir")
    workloads = _listed(args.workload) or ["balanced"]
    policies = _listed(args.embedded_policy) or [None]
    if args.embedded_policy and "--embedded" not in run_flags:
        raise UsageError("--embedded-policy needs --embedded")
    signals = _listed(args.priority_signal) or [None]
    unknown = [signal for signal in signals if signal not in (None, *PRIORITY_SIGNALS)]
    if unknown:
        raise UsageError(f"--priority-signal {unknown[0]!r} is none of "
                         f"{', '.join(PRIORITY_SIGNALS)}")
    series = [Series(w, p, signal) for w in workloads for p in policies for signal in signals]
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


def _listed(text: str | None) -> list[str]:
    """A comma-separated flag value's items."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _point_flags(series: Series, qps: float, seed: int, output_dir: Path,
                 repeated: bool) -> list[str]:
    folder = output_dir / series.label
    name = f"qps{qps:g}" + (f"_seed{seed}" if repeated else "")
    flags = ["--total-qps", f"{qps:g}", "--metrics-csv", str(folder / f"{name}.csv"),
             "--output-dir", str(folder / f"{name}_loadgen"), "--seed", str(seed)]
    if series.signal:
        flags += ["--priority-signal", series.signal]
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
