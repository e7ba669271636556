"""The report's page: one self-contained HTML file (PNGs inline, no JavaScript, opens offline),
the PNGs beside it, and a JSON of every number."""
from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict
from pathlib import Path

from fastload.results.figures import FIGURES
from fastload.results.runs import Run


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
