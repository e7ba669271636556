"""The report's figures, as PNGs: SLO attainment per tier against offered load, latency CDFs per
class, and latency and attainment over time (each series at its highest offered load). A
client-limited run is never drawn as the server's result: off the attainment line, and in the
other figures only for a series that has no other run, labelled."""
from __future__ import annotations

import math
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from fastload.contract.signals import AS_IS, EQUAL
from fastload.results.intervals import (
    Interval,
    batch_attainment,
    clipped,
    paired_interval,
    point_interval,
)
from fastload.results.runs import Run, at_highest_load, slo_order
from fastload.results.server_panels import DEFAULT_PANELS, Line, Panel, panel_lines
from fastload.scrape.series_file import read_series

TIME_BIN_S = 1.0
# Points drawn per latency CDF: evenly spaced ranks, the largest always among them. A million
# samples per class drawn one by one cost seconds and megabytes for no visible difference.
CDF_POINTS = 2000


def _save(fig, title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_attainment_vs_load(runs: list[Run], path: Path) -> bool:
    import matplotlib.pyplot as plt

    tiers = sorted({t for run in runs for t in run.tiers}, key=int)
    fig, axes = plt.subplots(1, len(tiers) + 1, figsize=(4.2 * (len(tiers) + 1), 3.8),
                             sharey=True, squeeze=False)
    by_series: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_series[run.series].append(run)
    for ax, tier in zip(axes[0], [*tiers, "all"]):
        for series, members in by_series.items():
            # A client-limited run is the client's result, not the server's: drawn hollow,
            # off the line and out of the means.
            points = _by_load([r for r in members if r.counted])
            bands = [attainment_band(point, tier) for point in points.values()]
            [line] = ax.plot(list(points), [_nan(b.mean) for b in bands], marker="o",
                             label=series)
            _draw_band(ax, list(points), bands, line.get_color())
            limited = [r for r in members if not r.counted]
            if limited:
                ax.plot([r.offered_qps for r in limited],
                        [_nan(attainment_of(r, tier)) for r in limited], linestyle="none",
                        marker="X", markersize=9, markerfacecolor="none",
                        color=line.get_color(), label=f"{series}: client-limited, not counted")
        ax.set(title=f"tier {tier}" if tier != "all" else "all tiers", xlabel="offered QPS",
               ylim=(-2, 102))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("SLO attainment % (95 % CI band)")
    axes[0][-1].legend(fontsize="small", loc="lower left")
    _save(fig, "SLO attainment against offered load", path)
    return True


def plot_priority_effect(runs: list[Run], path: Path) -> bool:
    """Per tier, what sending each request's own tier buys over sending all the same: as-is −
    equal attainment against offered load, with its 95 % band; nothing to draw without both."""
    import matplotlib.pyplot as plt

    counted = [r for r in runs if r.counted]
    pairs = {base: (_by_load([r for r in members if r.signal == AS_IS]),
                    _by_load([r for r in members if r.signal == EQUAL]))
             for base, members in grouped(counted, lambda r: r.base_series).items()}
    pairs = {base: (treated, control) for base, (treated, control) in pairs.items()
             if set(treated) & set(control)}
    if not pairs:
        return False
    tiers = sorted({t for run in counted for t in run.tiers}, key=int)
    fig, axes = plt.subplots(1, len(tiers) + 1, figsize=(4.2 * (len(tiers) + 1), 3.8),
                             sharey=True, squeeze=False)
    for ax, tier in zip(axes[0], [*tiers, "all"]):
        for base, (treated, control) in pairs.items():
            loads = sorted(set(treated) & set(control))
            gains = [attainment_gain(treated[q], control[q], tier) for q in loads]
            [line] = ax.plot(loads, [_nan(g.mean) for g in gains], marker="o", label=base)
            _draw_band(ax, loads, gains, line.get_color())
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(title=f"tier {tier}" if tier != "all" else "all tiers", xlabel="offered QPS")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("attainment as-is − equal, points")
    axes[0][-1].legend(fontsize="small")
    _save(fig, "What priority buys: SLO attainment with each tier's priority minus all equal "
               "(95 % CI band)", path)
    return True


def _draw_band(ax, loads: list[float], intervals: list[Interval], color: str) -> None:
    """95 % intervals as a band between points and a bar at each (a lone point has no band)."""
    known = [(q, i) for q, i in zip(loads, intervals) if i.low is not None]
    if not known:
        return
    xs = [q for q, _ in known]
    ax.fill_between(xs, [i.low for _, i in known], [i.high for _, i in known], color=color,
                    alpha=0.2, linewidth=0)
    ax.errorbar(xs, [i.mean for _, i in known],
                yerr=[[i.mean - i.low for _, i in known], [i.high - i.mean for _, i in known]],
                fmt="none", ecolor=color, capsize=3, linewidth=1)


def attainment_of(run: Run, tier: str) -> float | None:
    return run.overall.slo_attainment_pct if tier == "all" else run.tiers.get(tier)


def attainment_band(runs: list[Run], tier: str) -> Interval:
    """A point's attainment: the mean over its repeats with their t interval, or one run's
    with the interval of its 1-second batches."""
    return clipped(point_interval([attainment_of(r, tier) for r in runs],
                                  lambda: _batches(runs[0], tier)), 0.0, 100.0)


def attainment_gain(treated: list[Run], control: list[Run], tier: str) -> Interval:
    """as-is − equal at one point: paired by seed over repeats, or batch by batch."""
    by_seed = {r.seed: r for r in control}
    pairs = ([(r, by_seed[r.seed]) for r in treated if r.seed in by_seed]
             if len(treated) > 1 else [(treated[0], control[0])])
    return clipped(paired_interval([attainment_of(a, tier) for a, _ in pairs],
                                   [attainment_of(b, tier) for _, b in pairs],
                                   lambda: (_batches(treated[0], tier),
                                            _batches(control[0], tier))), -100.0, 100.0)


def _batches(run: Run, tier: str) -> list[float | None]:
    mask = np.ones(len(run.tier), bool) if tier == "all" else run.tier == int(tier)
    return batch_attainment(run.issue_mono_ns, run.slo_met, mask)


def _by_load(runs: list[Run]) -> dict[float, list[Run]]:
    """Runs by offered load, rising (a point's repeats together)."""
    return dict(sorted(grouped(runs, lambda r: r.offered_qps).items()))


def grouped(runs: list[Run], key) -> dict:
    grouped: dict = defaultdict(list)
    for run in runs:
        grouped[key(run)].append(run)
    return grouped


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def plot_latency_cdfs(runs: list[Run], path: Path) -> bool:
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
            values = np.sort(run.latency_ns[mask])
            if len(values):
                ranks = np.unique(np.linspace(0, len(values) - 1, CDF_POINTS).astype(np.int64))
                ax.step(values[ranks] / 1e6, (ranks + 1) / len(values), where="post",
                        label=f"{run.series} @ {run.offered_qps:g}{_limited(run)}")
        ax.set(title=f"tier {tier} {slo}", xscale="log", xlabel="latency ms", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(classes):]:
        ax.axis("off")
    axes[0][0].set_ylabel("fraction of answered samples")
    axes[0][0].legend(fontsize="small")
    _save(fig, "Latency CDF per class (each series at its highest offered load)", path)
    return True


def plot_over_time(runs: list[Run], path: Path,
                   panels: Sequence[Panel] = DEFAULT_PANELS) -> bool:
    """p99 and attainment per tier over time, and under them the server's series of
    ``panels`` that any run scraped, on one time axis: seconds since the run's GO."""
    import matplotlib.pyplot as plt

    peaks = at_highest_load(runs)
    server = [server_lines(run, panels) for run in peaks]
    shown = [panel for panel in panels if any(lines.get(panel) for lines in server)]
    # At least 11 inches wide: one series alone would fill a third of a page, its title cut.
    fig, axes = plt.subplots(2 + len(shown), len(peaks),
                             figsize=(max(11.0, 5.5 * len(peaks)), 6.4 + 2.4 * len(shown)),
                             squeeze=False, sharex="col")
    for column, run in enumerate(peaks):
        origin_ns = run.start_mono_ns or run.issue_mono_ns.min()
        t_s = np.maximum((run.issue_mono_ns - origin_ns) / 1e9, 0.0)
        bins = np.floor(t_s / TIME_BIN_S).astype(np.int64)
        centers = (np.arange(bins.max() + 1) + 0.5) * TIME_BIN_S
        latency_ax, attainment_ax = axes[0][column], axes[1][column]
        latency_ax.plot(centers, p99_per_bin_ms(bins[run.answered], run.latency_ns[run.answered],
                                                len(centers)), color="black")
        latency_ax.set(title=f"{run.series} @ {run.offered_qps:g} QPS{_limited(run)}",
                       ylabel="p99 latency ms "
                       f"(per {TIME_BIN_S:g} s of issue)", yscale="log")
        for tier in np.unique(run.tier):
            mine = run.tier == tier
            counts = np.bincount(bins[mine], minlength=len(centers))
            met = np.bincount(bins[mine], weights=run.slo_met[mine], minlength=len(centers))
            with np.errstate(invalid="ignore", divide="ignore"):
                attainment_ax.plot(centers, np.where(counts > 0, 100 * met / counts, np.nan),
                                   label=f"tier {tier}")
        attainment_ax.set(ylabel="SLO attainment %", ylim=(-2, 102))
        attainment_ax.legend(fontsize="small")
        for row, panel in enumerate(shown, 2):
            _draw_server(axes[row][column], panel, server[column].get(panel, []))
        axes[-1][column].set(xlabel="seconds since GO" if run.start_mono_ns
                             else "seconds since the first issue")
        for ax in axes[:, column]:
            ax.grid(alpha=0.3)
    _save(fig, "Latency and SLO attainment over time, the server's metrics under them (each "
               "series at its highest offered load)", path)
    return True


def p99_per_bin_ms(bins: np.ndarray, latency_ns: np.ndarray, count: int) -> np.ndarray:
    """The nearest-rank p99 of the latencies in each of ``count`` bins (NaN: none), from one
    sort of all of them by (bin, latency) rather than a pass over every row per bin."""
    order = np.lexsort((latency_ns, bins))
    sorted_ns = latency_ns[order]
    sizes = np.bincount(bins, minlength=count)
    starts = np.cumsum(sizes) - sizes
    ranks = np.maximum(1, -(-99 * sizes // 100))  # contract.percentiles.nearest_rank's
    p99 = np.full(count, np.nan)
    filled = sizes > 0
    p99[filled] = sorted_ns[starts[filled] + ranks[filled] - 1] / 1e6
    return p99


def server_lines(run: Run, panels: Sequence[Panel]) -> dict[Panel, list[Line]]:
    """Each panel's lines from the run's server metrics (none: it scraped none)."""
    if run.server_csv is None:
        return {}
    series = read_series(run.server_csv, {name for panel in panels for name in panel.names})
    return {panel: panel_lines(panel, series) for panel in panels}


def _draw_server(ax, panel: Panel, lines: list[Line]) -> None:
    for line in lines:
        ax.plot(line.times_s, line.values, label=line.label)
    ax.set_ylabel(panel.title, fontsize="small")
    if lines:
        ax.legend(fontsize="x-small", ncol=max(1, len(lines) // 6))
    else:
        ax.text(0.5, 0.5, f"{panel.metric}: not scraped", transform=ax.transAxes,
                ha="center", color="grey")


def _limited(run: Run) -> str:
    """A run's label tail when its latencies include the client's own delay."""
    return "" if run.counted else " (client-limited)"


def report_figures(panels: Sequence[Panel] = DEFAULT_PANELS) -> tuple:
    """Each figure's file name, its heading on the page, and its plot (False: nothing to
    draw); ``panels``: the server's series drawn over time."""
    return (("attainment", "SLO attainment against offered load", plot_attainment_vs_load),
            ("priority_effect", "What priority buys: as-is − equal", plot_priority_effect),
            ("latency_cdf", "Latency CDF per class", plot_latency_cdfs),
            ("over_time", "Latency, attainment and the server's metrics over time",
             partial(plot_over_time, panels=panels)))
