"""`python -m fastload.report RUN... -o report.html`: runs (CSV files, sweep folders) as one
self-contained HTML page (PNGs inline, no JavaScript, opens offline) plus the PNGs beside it.

Every number is computed here from the CSVs, the record of what happened, so a report never
depends on a summary written by another version: per class count, p50/p95/p99 (nearest rank
over answered samples), SLO attainment, errors and achieved rate; they also go to a JSON file
beside the HTML. Figures: per-tier SLO attainment against offered load (one line per series:
a sweep's workload and policy, or a --label), latency CDFs per class and latency and attainment
over time, both at each series' highest offered load.
"""
from __future__ import annotations

import base64
import csv
import html
import importlib.util
import json
import math
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from fastload.argparsing import OneLineParser
from fastload.metrics import ANSWERED
from fastload.summary import nearest_rank

PROG = "python -m fastload.report"
TIME_BIN_S = 1.0
QUANTILES = (50, 95, 99)


class ReportError(ValueError):
    """An input that cannot be read as a run; the message names it."""


@dataclass(frozen=True)
class ClassRow:
    tier: int | str
    slo: str
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    slo_attainment_pct: float | None
    errors: int
    achieved_qps: float | None


@dataclass
class Run:
    """One CSV: its series, offered load and the columns the report needs."""

    series: str
    offered_qps: float
    csv: Path
    tier: np.ndarray
    slo: np.ndarray
    latency_ns: np.ndarray
    answered: np.ndarray
    slo_met: np.ndarray
    issue_mono_ns: np.ndarray
    classes: list[ClassRow] = field(default_factory=list)
    tiers: dict[str, float | None] = field(default_factory=dict)
    overall: ClassRow | None = None


def read_run(path: Path, series: str, offered_qps: float | None = None) -> Run:
    """A fastload CSV as arrays, with its per-class rows computed."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ReportError(f"{path}: cannot read it ({exc.strerror})") from None
    needed = {"tier", "slo", "latency_ns", "slo_met", "status", "issue_mono_ns"}
    if not rows or not needed <= rows[0].keys():
        raise ReportError(f"{path}: not a fastload CSV with rows (needs columns "
                          f"{', '.join(sorted(needed))})")
    if offered_qps is None:
        targets = [float(r["target_qps_at_issue"]) for r in rows
                   if r.get("target_qps_at_issue")]
        offered_qps = float(np.median(targets)) if targets else math.nan
    run = Run(series, offered_qps, path,
              tier=np.array([int(r["tier"]) for r in rows]),
              slo=np.array([r["slo"] for r in rows]),
              latency_ns=np.array([int(r["latency_ns"]) for r in rows], dtype=np.int64),
              answered=np.array([r["status"] in ANSWERED for r in rows]),
              slo_met=np.array([r["slo_met"] == "True" for r in rows]),
              issue_mono_ns=np.array([int(r["issue_mono_ns"]) for r in rows], dtype=np.int64))
    classes = sorted({(int(t), str(s)) for t, s in zip(run.tier, run.slo)},
                     key=lambda c: (c[0], _slo_order(c[1])))
    run.classes = [_row(run, (run.tier == t) & (run.slo == s), t, s) for t, s in classes]
    run.overall = _row(run, np.ones(len(rows), bool), "all", "all")
    run.tiers = {str(t): _pct(run.slo_met[run.tier == t]) for t in sorted(set(run.tier.tolist()))}
    return run


def _slo_order(slo: str) -> int:
    order = ("urgent", "normal", "relaxed")
    return order.index(slo) if slo in order else len(order)


def _row(run: Run, mask: np.ndarray, tier: int | str, slo: str) -> ClassRow:
    answered = np.sort(run.latency_ns[mask & run.answered])
    quantiles = [nearest_rank_ms(answered, q) for q in QUANTILES]
    issues = np.sort(run.issue_mono_ns[mask])
    span_s = (issues[-1] - issues[0]) / 1e9 if len(issues) > 1 else 0.0
    return ClassRow(tier, slo, int(mask.sum()), *quantiles, _pct(run.slo_met[mask]),
                    int((mask & ~run.answered).sum()),
                    (len(issues) - 1) / span_s if span_s > 0 else None)


def nearest_rank_ms(sorted_ns: np.ndarray, q: int) -> float | None:
    """The smallest latency with at least q % of samples at or below it, in ms."""
    if len(sorted_ns) == 0:
        return None
    return float(sorted_ns[nearest_rank(len(sorted_ns), q) - 1]) / 1e6


def _pct(flags: np.ndarray) -> float | None:
    return 100.0 * float(flags.mean()) if len(flags) else None


def load_runs(inputs: Sequence[Path], labels: Sequence[str]) -> list[Run]:
    """Each input a CSV (its series: the matching --label, else its file name) or a sweep
    folder (its points, in their series, at their offered loads)."""
    csv_count = sum(not path.is_dir() for path in inputs)
    if len(labels) > csv_count:
        raise ReportError(f"{len(labels)} --label for {csv_count} CSV files")
    runs: list[Run] = []
    csv_index = 0
    for path in inputs:
        if path.is_dir():
            sweep = path / "sweep.json"
            if not sweep.exists():
                raise ReportError(f"{path}: a folder, but no sweep.json in it")
            for point in json.loads(sweep.read_text())["points"]:
                if point["overall"] is None:
                    continue  # the point ended before traffic
                runs.append(read_run(path / point["csv"], point["series"], point["target_qps"]))
        else:
            label = labels[csv_index] if csv_index < len(labels) else path.stem
            csv_index += 1
            runs.append(read_run(path, label))
    return runs


# --- Figures -------------------------------------------------------------------------------------

def _peaks(runs: list[Run]) -> list[Run]:
    """Each series' run at its highest offered load, in series order."""
    peak: dict[str, Run] = {}
    for run in runs:
        if run.series not in peak or run.offered_qps > peak[run.series].offered_qps:
            peak[run.series] = run
    return list(peak.values())


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
        for series, points in by_series.items():
            points = sorted(points, key=lambda r: r.offered_qps)
            values = [(r.overall.slo_attainment_pct if tier == "all" else r.tiers.get(tier))
                      for r in points]
            ax.plot([r.offered_qps for r in points],
                    [math.nan if v is None else v for v in values], marker="o", label=series)
        ax.set(title=f"tier {tier}" if tier != "all" else "all tiers", xlabel="offered QPS",
               ylim=(-2, 102))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("SLO attainment %")
    axes[0][-1].legend(fontsize="small", loc="lower left")
    _save(fig, "SLO attainment against offered load", path)


def plot_latency_cdfs(runs: list[Run], path: Path) -> None:
    import matplotlib.pyplot as plt

    peaks = _peaks(runs)
    classes = sorted({(c.tier, c.slo) for run in peaks for c in run.classes},
                     key=lambda c: (c[0], _slo_order(c[1])))
    columns = min(3, len(classes))
    rows = math.ceil(len(classes) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.2 * rows), squeeze=False)
    for ax, (tier, slo) in zip(axes.flat, classes):
        for run in peaks:
            mask = (run.tier == tier) & (run.slo == slo) & run.answered
            values = np.sort(run.latency_ns[mask]) / 1e6
            if len(values):
                ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post",
                        label=f"{run.series} @ {run.offered_qps:g}")
        ax.set(title=f"tier {tier} {slo}", xscale="log", xlabel="latency ms", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(classes):]:
        ax.axis("off")
    axes[0][0].set_ylabel("fraction of answered samples")
    axes[0][0].legend(fontsize="small")
    _save(fig, "Latency CDF per class (each series at its highest offered load)", path)


def plot_over_time(runs: list[Run], path: Path) -> None:
    import matplotlib.pyplot as plt

    peaks = _peaks(runs)
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
        latency_ax.set(title=f"{run.series} @ {run.offered_qps:g} QPS", ylabel="p99 latency ms "
                       f"(per {TIME_BIN_S:g} s of issue)", yscale="log")
        for tier in sorted(set(run.tier.tolist())):
            values = [_pct(run.slo_met[(bins == b) & (run.tier == tier)])
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


FIGURES = (("attainment", plot_attainment_vs_load), ("latency_cdf", plot_latency_cdfs),
           ("over_time", plot_over_time))


# --- The page ------------------------------------------------------------------------------------

def _cell(value: float | int | str | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return html.escape(str(value))


def summary_table(runs: list[Run]) -> str:
    head = ("series", "offered QPS", "tier", "slo", "count", "p50 ms", "p95 ms", "p99 ms",
            "SLO attainment %", "errors", "achieved QPS")
    lines = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for run in sorted(runs, key=lambda r: (r.series, r.offered_qps)):
        for row in (*run.classes, run.overall):
            cells = (run.series, f"{run.offered_qps:g}", row.tier, row.slo, row.count,
                     row.p50_ms, row.p95_ms, row.p99_ms, row.slo_attainment_pct, row.errors,
                     row.achieved_qps)
            style = ' class="overall"' if row.tier == "all" else ""
            lines.append(f"<tr{style}>" + "".join(f"<td>{_cell(c)}</td>" for c in cells)
                         + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def write_report(runs: list[Run], output: Path, title: str) -> list[Path]:
    """The HTML, its PNGs and JSON beside it; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    output.parent.mkdir(parents=True, exist_ok=True)
    written, images = [], []
    for name, plot in FIGURES:
        png = output.with_name(f"{output.stem}_{name}.png")
        plot(runs, png)
        written.append(png)
        images.append(f'<img alt="{name}" src="data:image/png;base64,'
                      f'{base64.b64encode(png.read_bytes()).decode()}">')
    sources = "".join(f"<li>{html.escape(run.series)} @ {run.offered_qps:g} QPS: "
                      f"{html.escape(str(run.csv))}</li>" for run in runs)
    output.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
img {{ max-width: 100%; display: block; margin: 1em 0; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }}
tr.overall {{ font-weight: bold; background: #f3f3f3; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(runs)} runs; every number computed from the CSVs listed at the end.</p>
<h2>SLO attainment against offered load</h2>{images[0]}
<h2>Latency CDF per class</h2>{images[1]}
<h2>Latency and attainment over time</h2>{images[2]}
<h2>Summary</h2>
{summary_table(runs)}
<h2>Runs</h2><ul>{sources}</ul>
</body></html>
""", encoding="utf-8")
    numbers = output.with_suffix(".json")
    numbers.write_text(json.dumps({"runs": [
        {"series": run.series, "offered_qps": run.offered_qps, "csv": str(run.csv),
         "classes": [asdict(c) for c in run.classes], "overall": asdict(run.overall),
         "tiers": run.tiers} for run in runs]}, indent=2) + "\n", encoding="utf-8")
    return [output, numbers, *written]


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="fastload CSV files, sweep folders")
    parser.add_argument("-o", "--output", type=Path, default=Path("report.html"),
                        help="the HTML file; PNGs and a JSON of the numbers go beside it "
                             "(default %(default)s)")
    parser.add_argument("--label", action="append", default=[],
                        help="series name of each CSV, in order (default: its file name)")
    parser.add_argument("--title", default="fastload report")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("matplotlib") is None:
        print(f"{PROG}: error: matplotlib is needed: pip install 'fastload[report]'",
              file=sys.stderr)
        return 2
    try:
        runs = load_runs(args.runs, args.label)
    except (ReportError, json.JSONDecodeError, KeyError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    for path in write_report(runs, args.output, args.title):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
