"""The report's figures, as PNGs: SLO attainment per tier against offered load, latency CDFs per
class, and latency and attainment over time (each series at its highest offered load). A
client-limited run is never drawn as the server's result: off the attainment line, and in the
other figures only for a series that has no other run, labelled."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from fastload.results.runs import Run, at_highest_load, nearest_rank_ms, pct, slo_order

TIME_BIN_S = 1.0


def _save(fig, title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_attainment_vs_load(runs: list[Run], path: Path) -> None:
    import matplotlib.pyplot as plt

    tiers = sorted({t for run in runs for t in run.tiers}, key=int)
    fig, axes = plt.subplots(1, len(tiers) + 1, figsize=(4.2 * (len(tiers) + 1), 3.8),
                             sharey=True, squeeze=False)
    by_series: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_series[run.series].append(run)
    for ax, tier in zip(axes[0], [*tiers, "all"]):
        def attainment(points: list[Run]) -> list[float]:
            values = [(r.overall.slo_attainment_pct if tier == "all" else r.tiers.get(tier))
                      for r in points]
            return [math.nan if v is None else v for v in values]

        for series, points in by_series.items():
            points = sorted(points, key=lambda r: r.offered_qps)
            counted = [r for r in points if r.counted]
            [line] = ax.plot([r.offered_qps for r in counted], attainment(counted), marker="o",
                             label=series)
            # A client-limited point is the client's result, not the server's: drawn hollow,
            # off the line.
            limited = [r for r in points if not r.counted]
            if limited:
                ax.plot([r.offered_qps for r in limited], attainment(limited), linestyle="none",
                        marker="X", markersize=9, markerfacecolor="none",
                        color=line.get_color(), label=f"{series}: client-limited, not counted")
        ax.set(title=f"tier {tier}" if tier != "all" else "all tiers", xlabel="offered QPS",
               ylim=(-2, 102))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("SLO attainment %")
    axes[0][-1].legend(fontsize="small", loc="lower left")
    _save(fig, "SLO attainment against offered load", path)


def plot_latency_cdfs(runs: list[Run], path: Path) -> None:
    import matplotlib.pyplot as plt

    peaks = at_highest_load(runs)
    classes = sorted({(c.tier, c.slo) for run in peaks for c in run.classes},
                     key=lambda c: (c[0], slo_order(c[1])))
    columns = min(3, len(classes))
    rows = math.ceil(len(classes) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.2 * rows), squeeze=False)
    for ax, (tier, slo) in zip(axes.flat, classes):
        for run in peaks:
            mask = (run.tier == tier) & (run.slo == slo) & run.answered
            values = np.sort(run.latency_ns[mask]) / 1e6
            if len(values):
                ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post",
                        label=f"{run.series} @ {run.offered_qps:g}{_limited(run)}")
        ax.set(title=f"tier {tier} {slo}", xscale="log", xlabel="latency ms", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(classes):]:
        ax.axis("off")
    axes[0][0].set_ylabel("fraction of answered samples")
    axes[0][0].legend(fontsize="small")
    _save(fig, "Latency CDF per class (each series at its highest offered load)", path)


def plot_over_time(runs: list[Run], path: Path) -> None:
    import matplotlib.pyplot as plt

    peaks = at_highest_load(runs)
    fig, axes = plt.subplots(2, len(peaks), figsize=(5.5 * len(peaks), 6.4), squeeze=False,
                             sharex="col")
    for column, run in enumerate(peaks):
        t_s = (run.issue_mono_ns - run.issue_mono_ns.min()) / 1e9
        bins = np.floor(t_s / TIME_BIN_S).astype(int)
        centers = (np.arange(bins.max() + 1) + 0.5) * TIME_BIN_S
        p99 = [nearest_rank_ms(np.sort(run.latency_ns[(bins == b) & run.answered]), 99)
               for b in range(len(centers))]
        latency_ax, attainment_ax = axes[0][column], axes[1][column]
        latency_ax.plot(centers, [math.nan if v is None else v for v in p99], color="black")
        latency_ax.set(title=f"{run.series} @ {run.offered_qps:g} QPS{_limited(run)}",
                       ylabel="p99 latency ms "
                       f"(per {TIME_BIN_S:g} s of issue)", yscale="log")
        for tier in sorted(set(run.tier.tolist())):
            values = [pct(run.slo_met[(bins == b) & (run.tier == tier)])
                      for b in range(len(centers))]
            attainment_ax.plot(centers, [math.nan if v is None else v for v in values],
                               label=f"tier {tier}")
        attainment_ax.set(xlabel="seconds since the first issue", ylabel="SLO attainment %",
                          ylim=(-2, 102))
        attainment_ax.legend(fontsize="small")
        for ax in (latency_ax, attainment_ax):
            ax.grid(alpha=0.3)
    _save(fig, "Latency and SLO attainment over time (each series at its highest offered load)",
          path)


def _limited(run: Run) -> str:
    """A run's label tail when its latencies include the client's own delay."""
    return "" if run.counted else " (client-limited)"


FIGURES = (("attainment", plot_attainment_vs_load), ("latency_cdf", plot_latency_cdfs),
           ("over_time", plot_over_time))
