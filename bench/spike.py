"""Experiment 5: a load spike against the reference scheduler under fifo and under priority.

    python bench/spike.py                          # 20s@200,5s@800,20s@200, both policies
    python bench/spike.py --schedule 10s@200,5s@800,10s@200 --bin-s 0.5

For each policy it runs ``python -m fastload --embedded --qps-schedule ...`` against the
reference scheduler (``--embedded-gpus 4``: ~550 QPS of simulated capacity, so the 800-QPS spike
overloads it) and plots SLO attainment per tier over time and, under it, the scheduler's own
queue per tier as the run scraped it, one column per policy, the spike shaded: the picture a
scheduler paper prints, with the server's side of it. Writes ``results/spike.png`` and
``results/spike.json`` (per-phase rows of both runs, the peak queue per tier). Not part of CI
(about two minutes).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from fastload.contract.config import server_metrics_path
from fastload.contract.rates import parse_schedule
from fastload.records.reader import read_columns
from fastload.results.server_panels import DEFAULT_PANELS, Line, panel_lines
from fastload.scrape.series_file import read_series

from harness import BENCH_DIR, REPO_ROOT, machine

POLICIES = ("fifo", "priority")
SCHEDULER_ARGS = ("--embedded-gpus", "4")
QUEUE_PER_TIER = DEFAULT_PANELS[0]  # the reference scheduler's queue length, summed by tier


def run_policy(policy: str, schedule: str, seed: int, interval_ms: int, work_dir: Path
               ) -> tuple[Path, dict]:
    csv_path = work_dir / f"{policy}.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "fastload", "--embedded", "--embedded-policy", policy,
         *SCHEDULER_ARGS, "--qps-schedule", schedule, "--seed", str(seed),
         "--metrics-csv", str(csv_path), "--server-metrics-interval-ms", str(interval_ms),
         # The overloaded scheduler holds up to ~2,000 requests in the spike.
         "--max-inflight", "4096",
         "--output-dir", str(work_dir / f"{policy}_loadgen")],
        cwd=REPO_ROOT, capture_output=True, text=True)
    print(f"--- {policy}\n{proc.stdout.strip()}", flush=True)
    # 1: requests missed their deadlines; 8: the certificate says the client fell behind,
    # which the picture's title then says.
    if proc.returncode not in (0, 1, 8):
        raise SystemExit(f"fastload under {policy} exited {proc.returncode}: {proc.stderr}")
    return csv_path, json.loads(csv_path.with_suffix(".json").read_text())


def queue_over_time(csv_path: Path) -> list[Line]:
    """The scheduler's queue per tier as the run scraped it, in seconds since GO."""
    return panel_lines(QUEUE_PER_TIER, read_series(server_metrics_path(csv_path),
                                                   set(QUEUE_PER_TIER.names)))


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


def plot(curves: dict[str, dict[int, np.ndarray]], queues: dict[str, list[Line]],
         schedule: str, bin_s: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parsed = parse_schedule(schedule)
    fig, axes = plt.subplots(2, len(curves), figsize=(6 * len(curves), 7.0), sharex=True,
                             sharey="row", squeeze=False)
    for column, (policy, by_tier) in enumerate(curves.items()):
        attainment_ax, queue_ax = axes[0][column], axes[1][column]
        for tier, values in by_tier.items():
            centres = (np.arange(len(values)) + 0.5) * bin_s
            attainment_ax.plot(centres, values, "o-", markersize=3, label=f"tier {tier}")
        for line in queues[policy]:
            queue_ax.plot(line.times_s, line.values, label=line.label)
        peak = parsed.peak_qps
        for ax in (attainment_ax, queue_ax):
            for start_s, phase in zip(parsed.starts_s, parsed.phases):
                if max(phase.qps, phase.to_qps) == peak:
                    ax.axvspan(start_s, start_s + phase.duration_ms / 1000, color="red",
                               alpha=0.1, label=f"spike ({peak:g} QPS)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8, loc="upper left" if ax is queue_ax else "lower left")
        attainment_ax.set(title=f"policy {policy}", ylim=(-3, 103))
        queue_ax.set(xlabel="seconds since GO (attainment by issue time, queue as scraped)")
    axes[0][0].set_ylabel(f"SLO attainment % per {bin_s:g} s bin")
    axes[1][0].set_ylabel("requests queued, per tier (scraped)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedule", default="20s@200,5s@800,20s@200")
    parser.add_argument("--bin-s", type=float, default=1.0, help="time bin of the plot")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--interval-ms", type=int, default=250,
                        help="--server-metrics-interval-ms of the runs (default %(default)s)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args()
    duration_s = parse_schedule(args.schedule).duration_ms / 1000
    curves, queues, summaries = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="fastload-spike-") as tmp:
        for policy in POLICIES:
            csv_path, summary = run_policy(policy, args.schedule, args.seed, args.interval_ms,
                                           Path(tmp))
            summaries[policy] = summary
            curves[policy] = attainment_over_time(csv_path, summary["start_mono_ns"], args.bin_s,
                                                  duration_s)
            queues[policy] = queue_over_time(csv_path)
    info = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    png, result = args.out / "spike.png", args.out / "spike.json"
    loads = {p: s["load"]["verdict"] for p, s in summaries.items()}
    plot(curves, queues, args.schedule, args.bin_s, png,
         f"Experiment 5: --qps-schedule {args.schedule}, --embedded "
         f"{' '.join(SCHEDULER_ARGS)}, scraped every {args.interval_ms} ms; load: "
         f"{', '.join(f'{p} {v}' for p, v in loads.items())}; {info['nproc']} CPUs, "
         f"{info['cpu_model']}")
    result.write_text(json.dumps({
        "machine": info, "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "schedule": args.schedule, "scheduler_args": SCHEDULER_ARGS, "seed": args.seed,
        "phases": {p: s["phases"] for p, s in summaries.items()},
        "overall": {p: s["overall"] for p, s in summaries.items()},
        "load": loads,
        "peak_queue_per_tier": {p: {line.label: float(np.max(line.values)) for line in lines}
                                for p, lines in queues.items()},
    }, indent=1) + "\n")
    print(f"wrote {png} and {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
