"""Experiment 5: a load spike against the reference scheduler under fifo and under priority.

    python bench/spike.py                          # 20s@200,5s@800,20s@200, both policies
    python bench/spike.py --schedule 10s@200,5s@800,10s@200 --bin-s 0.5

For each policy it starts the reference scheduler (``--gpus 4``: ~550 QPS of simulated capacity,
so the 800-QPS spike overloads it), runs ``python -m fastload --qps-schedule ...`` against it and
plots SLO attainment per tier over time, one panel per policy, the spike shaded: the picture a
scheduler paper prints. Writes ``results/spike.png`` and ``results/spike.json`` (per-phase rows
of both runs). Not part of CI (about two minutes).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from fastload.contract.rates import parse_schedule
from fastload.records.reader import read_columns
from fastload.scheduler.spawn import SchedulerProcess

from harness import BENCH_DIR, REPO_ROOT, machine

POLICIES = ("fifo", "priority")
SCHEDULER_ARGS = ("--gpus", "4")


def run_policy(policy: str, schedule: str, seed: int, work_dir: Path) -> tuple[Path, dict]:
    csv_path = work_dir / f"{policy}.csv"
    with SchedulerProcess("--policy", policy, *SCHEDULER_ARGS) as scheduler:
        proc = subprocess.run(
            [sys.executable, "-m", "fastload", "--scheduler-url", scheduler.address,
             "--qps-schedule", schedule, "--seed", str(seed), "--metrics-csv", str(csv_path),
             # The overloaded scheduler holds up to ~2,000 requests in the spike.
             "--max-inflight", "4096",
             "--output-dir", str(work_dir / f"{policy}_loadgen")],
            cwd=REPO_ROOT, capture_output=True, text=True)
    print(f"--- {policy}\n{proc.stdout.strip()}", flush=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"fastload under {policy} exited {proc.returncode}: {proc.stderr}")
    return csv_path, json.loads(csv_path.with_suffix(".json").read_text())


def attainment_over_time(csv_path: Path, start_mono_ns: int, bin_s: float,
                         duration_s: float) -> dict[int, np.ndarray]:
    """Per tier, the share of samples issued in each time bin that met their SLO (NaN: none)."""
    edges = np.arange(0, duration_s + bin_s, bin_s)
    columns = read_columns(csv_path, ("issue_mono_ns", "slo_met", "tier"))
    t_s = (columns["issue_mono_ns"] - start_mono_ns) / 1e9
    met, tiers = columns["slo_met"], columns["tier"]
    curves = {}
    for tier in sorted(set(tiers.tolist())):
        mine = tiers == tier
        total, _ = np.histogram(t_s[mine], edges)
        good, _ = np.histogram(t_s[mine & met], edges)
        with np.errstate(invalid="ignore", divide="ignore"):
            curves[tier] = np.where(total > 0, 100 * good / total, np.nan)
    return curves


def plot(curves: dict[str, dict[int, np.ndarray]], schedule: str, bin_s: float,
         path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parsed = parse_schedule(schedule)
    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.2), sharey=True)
    for ax, (policy, by_tier) in zip(np.atleast_1d(axes), curves.items()):
        for tier, values in by_tier.items():
            centres = (np.arange(len(values)) + 0.5) * bin_s
            ax.plot(centres, values, "o-", markersize=3, label=f"tier {tier}")
        peak = parsed.peak_qps
        for start_s, phase in zip(parsed.starts_s, parsed.phases):
            if max(phase.qps, phase.to_qps) == peak:
                ax.axvspan(start_s, start_s + phase.duration_ms / 1000, color="red", alpha=0.1,
                           label=f"spike ({peak:g} QPS)")
        ax.set(title=f"policy {policy}", xlabel="time since start (s), by issue time",
               ylim=(-3, 103))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    np.atleast_1d(axes)[0].set_ylabel(f"SLO attainment % per {bin_s:g} s bin")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedule", default="20s@200,5s@800,20s@200")
    parser.add_argument("--bin-s", type=float, default=1.0, help="time bin of the plot")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args()
    duration_s = parse_schedule(args.schedule).duration_ms / 1000
    curves, summaries = {}, {}
    with tempfile.TemporaryDirectory(prefix="fastload-spike-") as tmp:
        for policy in POLICIES:
            csv_path, summary = run_policy(policy, args.schedule, args.seed, Path(tmp))
            summaries[policy] = summary
            curves[policy] = attainment_over_time(csv_path, summary["start_mono_ns"], args.bin_s,
                                                  duration_s)
    info = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    png, result = args.out / "spike.png", args.out / "spike.json"
    plot(curves, args.schedule, args.bin_s, png,
         f"Experiment 5: --qps-schedule {args.schedule}, reference scheduler "
         f"{' '.join(SCHEDULER_ARGS)}; {info['nproc']} CPUs, {info['cpu_model']}")
    result.write_text(json.dumps({
        "machine": info, "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "schedule": args.schedule, "scheduler_args": SCHEDULER_ARGS, "seed": args.seed,
        "phases": {p: s["phases"] for p, s in summaries.items()},
        "overall": {p: s["overall"] for p, s in summaries.items()},
    }, indent=1) + "\n")
    print(f"wrote {png} and {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
