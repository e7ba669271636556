"""Reading a run back at scale (issue 23): `python -m fastload.report` on a generated run.

    python bench/report_scale.py --rows 1000000 --rows 10000000

    python bench/report_scale.py --rows 1000000 --baseline /tmp/old/.venv/bin/python

For each size it writes a fastload CSV of that many rows (the balanced mix at 1,000 QPS; lognormal
latencies around 10 ms with a tail past the urgent SLO; 1 % errors), a chunk at a time so that
writing it costs little memory, then runs the report on it in a child that prints its own peak
RSS, and times it; ``--baseline PYTHON`` runs the report of another checkout's venv too (its
editable install), for a ratio measured in one run. Then it reads the report's columns alone
with each reader (fastload's, DuckDB's when installed), each in a child of its own. Then the same
rows as a Parquet run writes them: its journal, sealed into Parquet in a child (timed), and the
report and the readers again on the Parquet file. The CSVs go
to a temporary folder (``--keep DIR`` keeps them; they are never committed: 140 MB per million
rows). Writes ``results/issue23/report_scale.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv

from fastload.contract.workload import builtin_workload
from fastload.records.columnar import Journal, journal_schema
from fastload.records.row import CSV_COLUMNS

from harness import BENCH_DIR, REPO_ROOT, machine

QPS = 1000.0
CHUNK_ROWS = 200_000
# Runs the code given, then prints the child's own peak RSS (KiB) on stderr, whatever its exit.
WITH_PEAK = ("import resource, sys\n"
             "try:\n"
             "    {code}\n"
             "finally:\n"
             "    print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
             " file=sys.stderr)\n")
REPORT = ("import runpy; sys.argv = ['fastload.report', *sys.argv[1:]]; "
          "runpy.run_module('fastload.report', run_name='__main__')")
# The report's columns (results.runs.RUN_COLUMNS), read alone by each reader.
READERS = {
    "fastload": "from pathlib import Path; from fastload.records.reader import read_columns; "
                "from fastload.results.runs import RUN_COLUMNS; "
                "read_columns(Path(sys.argv[1]), RUN_COLUMNS)",
    "duckdb": "import duckdb; from fastload.results.runs import RUN_COLUMNS; "
              "duckdb.sql(f\"SELECT {', '.join(RUN_COLUMNS)} FROM '{sys.argv[1]}'\")"
              ".fetchnumpy()",
}
# Seals a journal into Parquet, as a Parquet run does at its end.
SEAL = ("from pathlib import Path; from fastload.records.columnar import seal; "
        "seal(Path(sys.argv[1]), Path(sys.argv[2]), {'bench': 'report_scale'})")


def write_run(path: Path, rows: int, seed: int) -> None:
    """A run of ``rows`` samples in fastload's columns, written CHUNK_ROWS at a time."""
    rng = np.random.default_rng(seed)
    classes = builtin_workload("balanced").classes
    fractions = np.array([c.fraction for c in classes])
    start_wall_ns, start_mono_ns = 1_760_000_000_000_000_000, 1_000_000_000_000
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(",".join(CSV_COLUMNS) + "\r\n")
        issue_ns = 0.0
        for first in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - first)
            gaps = rng.exponential(1e9 / QPS, n)
            offsets = (issue_ns + np.cumsum(gaps)).astype(np.int64)
            issue_ns = float(offsets[-1])
            which = rng.choice(len(classes), n, p=fractions / fractions.sum())
            latency = (rng.lognormal(np.log(10e6), 0.8, n)).astype(np.int64)
            errors = rng.random(n) < 0.01
            models = rng.random(n) < 0.5
            lines = []
            for i in range(n):
                c = classes[which[i]]
                ok = not errors[i]
                lat = int(latency[i]) if ok else -1
                met = ok and lat <= c.slo_ns
                lines.append(
                    f"{start_wall_ns + offsets[i]},{first + i},{c.tier},{c.slo},"
                    f"{'resnet50' if models[i] else 'vit'},{lat},{lat / 1e6:.3f},{met},"
                    f"{'OK' if ok else 'UNAVAILABLE'},{ok},{start_wall_ns + offsets[i] + c.slo_ns},"
                    f"{int(rng.integers(50_000, 400_000))},{start_mono_ns + offsets[i]},"
                    f"{first + i},all,{QPS:g},0\r\n")
            f.write("".join(lines))


def write_journal(csv_path: Path, journal_path: Path) -> None:
    """The CSV's rows as a Parquet run's journal (its batches as the CSV reader yields them)."""
    schema = journal_schema()
    journal = Journal(journal_path, schema)
    convert = pacsv.ConvertOptions(column_types=schema, true_values=["True"],
                                   false_values=["False"])
    for batch in pacsv.open_csv(csv_path, convert_options=convert):
        journal.write_batch(batch)
    journal.close()


def timed(python: str, code: str, *args: str, cwd: Path = REPO_ROOT) -> dict:
    """``code`` in a child of ``python``: its wall seconds, peak RSS and exit code."""
    started = time.perf_counter()
    proc = subprocess.run([python, "-c", WITH_PEAK.format(code=code), *args], cwd=cwd,
                          capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    peak = [line for line in proc.stderr.splitlines() if line.startswith("peak_rss_kib")]
    return {"exit": proc.returncode, "wall_s": round(wall_s, 2),
            "peak_rss_mb": round(int(peak[-1].split()[1]) / 1024, 1) if peak else None,
            **({"stderr_tail": proc.stderr.strip().splitlines()[-3:]} if proc.returncode else {})}


def measure(path: Path, folder: Path, baseline: str | None) -> dict:
    """The report (and the baseline's), then each reader alone, on one results file."""
    out = str(folder / f"{path.stem}.html")
    result = {"report": timed(sys.executable, REPORT, str(path), "-o", out)}
    if baseline is not None:
        result["baseline_report"] = timed(baseline, REPORT, str(path), "-o", out,
                                          cwd=Path(baseline).absolute().parents[2])
    result["readers"] = {name: timed(sys.executable, code, str(path))
                         for name, code in READERS.items()}
    return result


def measure_parquet(csv_path: Path) -> dict:
    """The same rows as a Parquet run writes them: its journal sealed (timed), then the report
    and the readers on the Parquet file."""
    journal, parquet = csv_path.with_suffix(".arrows"), csv_path.with_suffix(".parquet")
    write_journal(csv_path, journal)
    result = {"journal_mb": round(journal.stat().st_size / 1e6, 1),
              "seal": timed(sys.executable, SEAL, str(journal), str(parquet))}
    return {**result, "parquet_mb": round(parquet.stat().st_size / 1e6, 1),
            **measure(parquet, csv_path.parent, None)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="rows per run; repeatable "
                        "(default 1000000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="keep the generated CSVs in this folder")
    parser.add_argument("--baseline", metavar="PYTHON",
                        help="also time the report of the checkout this venv's python serves")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "issue23")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="fastload-scale-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for rows in args.rows or [1_000_000]:
            csv_path = folder / f"run_{rows}.csv"
            if not csv_path.exists():
                started = time.perf_counter()
                write_run(csv_path, rows, args.seed)
                print(f"wrote {rows:,} rows ({csv_path.stat().st_size / 1e6:.0f} MB) in "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
            result = {"rows": rows, "csv_mb": round(csv_path.stat().st_size / 1e6, 1),
                      **measure(csv_path, folder, args.baseline),
                      "parquet": measure_parquet(csv_path)}
            print(json.dumps(result), flush=True)
            results.append(result)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "report_scale.json"
    path.write_text(json.dumps({"machine": machine(), "command": " ".join(
        [Path(sys.executable).name, *sys.argv]), "results": results}, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
