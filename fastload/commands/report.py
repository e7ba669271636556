"""`python -m fastload.report RUN... -o report.html`: runs (CSV files, sweep folders) as one
self-contained HTML page (PNGs inline, no JavaScript, opens offline) plus the PNGs beside it.

Every number is computed from the CSVs (``results.runs``), the record of what happened, so a
report never depends on a summary written by another version: per class count, p50/p95/p99
(nearest rank over answered samples), SLO attainment, errors and achieved rate; they also go to
a JSON file beside the HTML. Figures (``results.figures``): per-tier SLO attainment against
offered load (one line per series: a sweep's workload and policy, or a --label), latency CDFs
per class and latency and attainment over time, both at each series' highest offered load.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from fastload import __version__
from fastload.commands.argparsing import OneLineParser
from fastload.contract.config import JOURNAL_SUFFIX, PARQUET_SUFFIX
from fastload.records.columnar import seal
from fastload.results.page import write_report
from fastload.results.runs import ReportError, load_runs
from fastload.results.server_panels import chosen_panels

PROG = "python -m fastload.report"


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path,
                        help="fastload CSV or Parquet files, journals (.arrows), sweep folders")
    parser.add_argument("-o", "--output", type=Path, default=Path("report.html"),
                        help="the HTML file; PNGs and a JSON of the numbers go beside it "
                             "(default %(default)s)")
    parser.add_argument("--label", action="append", default=[],
                        help="series name of each CSV, in order (default: its file name)")
    parser.add_argument("--title", default="fastload report")
    parser.add_argument("--server-series", metavar="NAME[,NAME...]",
                        help="the server metrics drawn under attainment and p99 over time, "
                             "from each run's .server-metrics.csv, one line per label set "
                             "(default: the reference scheduler's queue per tier and GPU busy "
                             "fraction; Triton's queue time, pending requests and GPU "
                             "utilization)")
    parser.add_argument("--seal", action="store_true",
                        help="first seal each journal given (the .arrows of a Parquet run that "
                             "was killed) into the .parquet beside it, then report that")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("matplotlib") is None:
        print(f"{PROG}: error: matplotlib is needed: pip install 'fastload[report]'",
              file=sys.stderr)
        return 2
    try:
        inputs = [sealed(path) if args.seal else path for path in args.runs]
        runs = load_runs(inputs, args.label)
    except (ReportError, json.JSONDecodeError, KeyError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    names = ([name.strip() for name in args.server_series.split(",") if name.strip()]
             if args.server_series is not None else None)
    for path in write_report(runs, args.output, args.title, chosen_panels(names)):
        print(path)
    return 0


def sealed(path: Path) -> Path:
    """A killed Parquet run's journal sealed into the Parquet file beside it; any other input
    as it is."""
    if path.suffix.lower() != JOURNAL_SUFFIX:
        return path
    parquet = path.with_suffix(PARQUET_SUFFIX)
    try:
        rows = seal(path, parquet, {"version": __version__, "sealed": f"from {path.name} by "
                                    f"{PROG} --seal, after the run was killed"})
    except (OSError, pa.ArrowException) as exc:
        raise ReportError(f"{path}: cannot seal it into {parquet} ({exc})") from None
    print(f"{parquet}: {rows:,} rows sealed from {path}", flush=True)
    return parquet

