"""The report's page: one self-contained HTML file (PNGs inline, no JavaScript, opens offline),
the PNGs beside it, and a JSON of every number."""
from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Sequence

from fastload.results.figures import attainment_band, grouped, report_figures
from fastload.results.runs import Run
from fastload.results.server_panels import DEFAULT_PANELS, Panel


def _cell(value: float | int | str | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return html.escape(str(value))


def _table(head: Sequence[str], rows: Iterable[tuple[str, Sequence[object]]]) -> str:
    """An HTML table; each row its CSS classes and its cells."""
    lines = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    lines += [(f'<tr class="{style}">' if style else "<tr>")
              + "".join(f"<td>{_cell(c)}</td>" for c in cells) + "</tr>" for style, cells in rows]
    lines.append("</table>")
    return "\n".join(lines)


def _in_order(runs: list[Run]) -> list[Run]:
    return sorted(runs, key=lambda r: (r.series, r.offered_qps))


def summary_table(runs: list[Run]) -> str:
    """Every class of every run; a client-limited run's rows greyed and marked."""
    head = ("series", "offered QPS", "tier", "slo", "count", "p50 ms", "p95 ms", "p99 ms",
            "SLO attainment %", "errors", "achieved QPS", "load")
    return _table(head, (
        (" ".join(name for name, on in (("overall", row.tier == "all"),
                                        ("limited", not run.counted)) if on),
         (run.series, f"{run.offered_qps:g}", row.tier, row.slo, row.count, row.p50_ms,
          row.p95_ms, row.p99_ms, row.slo_attainment_pct, row.errors, row.achieved_qps,
          _verdict(run)))
        for run in _in_order(runs) for row in (*run.classes, run.overall)))


def means_table(runs: list[Run]) -> str:
    """Per point with repeats and per tier (and all): SLO attainment's mean over the repeats and
    its 95 % interval; empty when no point was repeated."""
    points = {(series, qps): members
              for series, group in grouped(runs, lambda r: r.series).items()
              for qps, members in grouped([r for r in group if r.counted],
                                           lambda r: r.offered_qps).items()}
    if all(len(members) < 2 for members in points.values()):
        return ""
    head = ("series", "offered QPS", "tier", "repeats", "SLO attainment % (mean)",
            "95 % CI low", "95 % CI high")
    rows = []
    for (series, qps), members in sorted(points.items()):
        for tier in [*sorted({t for r in members for t in r.tiers}, key=int), "all"]:
            band = attainment_band(members, tier)
            rows.append(("overall" if tier == "all" else "",
                         (series, f"{qps:g}", tier, len(members), band.mean, band.low,
                          band.high)))
    return "<h2>Means over repeats</h2>\n" + _table(head, rows)


def certificate_table(runs: list[Run]) -> str:
    """Each run's load certificate: its verdict, the reason, and the client's own figures."""
    head = ("series", "offered QPS", "load", "reason", "send lag p99 ms", "loop lag p99 ms",
            "issue lateness p99 ms", "busiest sender % of a core", "furthest rate σ",
            "issue gaps fit p", "lag limit ms", "cores")
    return _table(head, (("" if run.counted else "limited",
                          (run.series, f"{run.offered_qps:g}", _verdict(run),
                           *_certificate_cells(run.load)))
                         for run in _in_order(runs)))


def _verdict(run: Run) -> str:
    return run.load["verdict"] if run.load else "no certificate"


def _certificate_cells(load: dict | None) -> tuple:
    if load is None:
        return ("no summary JSON beside the CSV",) + (None,) * 8
    senders = [p["busy"] for p in load["processes"] if p["role"] == "sender"]
    sigmas = [abs(c["sigmas"]) for c in load["rate"] if c["sigmas"] is not None]
    return (load["reason"] or "–",
            *(load[key]["p99_ms"] if load[key] else None
              for key in ("send_lag", "loop_lag", "issue_lateness")),
            100 * max(senders) if senders else None, max(sigmas) if sigmas else None,
            (load.get("issue_fit") or {}).get("p_value"), load["lag_limit_ms"], load["cores"])


def write_report(runs: list[Run], output: Path, title: str,
                 panels: Sequence[Panel] = DEFAULT_PANELS) -> list[Path]:
    """The HTML, its PNGs and JSON beside it (``panels``: the server's series drawn over
    time); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    output.parent.mkdir(parents=True, exist_ok=True)
    written, figures = [], []
    for name, heading, plot in report_figures(panels):
        png = output.with_name(f"{output.stem}_{name}.png")
        if not plot(runs, png):
            continue
        written.append(png)
        figures.append(f'<h2>{html.escape(heading)}</h2><img alt="{name}" '
                       f'src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">')
    limited_runs = ", ".join(f"{r.series} @ {r.offered_qps:g} QPS" for r in runs
                             if not r.counted)
    limited = (f" Client-limited (greyed, not counted as the server's result): "
               f"{html.escape(limited_runs)}." if limited_runs else "")
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
tr.limited {{ color: #888; font-style: italic; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(runs)} runs; every number computed from the CSVs listed at the end.{limited}</p>
{"".join(figures)}
<h2>Summary</h2>
{summary_table(runs)}
{means_table(runs)}
<h2>Load certificates</h2>
<p>Whether each run's load was the one planned, from its summary JSON: a client-limited run's
latencies include the client's own delay, so it is never drawn as the server's result.</p>
{certificate_table(runs)}
<h2>Runs</h2><ul>{sources}</ul>
</body></html>
""", encoding="utf-8")
    numbers = output.with_suffix(".json")
    numbers.write_text(json.dumps({"runs": [
        {"series": run.series, "offered_qps": run.offered_qps, "csv": str(run.csv),
         "classes": [asdict(c) for c in run.classes], "overall": asdict(run.overall),
         "tiers": run.tiers, "load": run.load, "counted": run.counted, "signal": run.signal,
         "seed": run.seed} for run in runs]},
        indent=2) + "\n", encoding="utf-8")
    return [output, numbers, *written]
