"""The results writer's CPU per record: CSV rows against Parquet (the journal's batches, then
the seal into Parquet), on the same records, alternating, in one process (issue 23).

    python bench/writer_cost.py [--records 200000] [--repeats 5] [--out bench/results/issue23]

Each repeat writes the same records as the Recorder's writer thread does (chunks of 48, one
flush per 250 records: 1,000 QPS at the 0.25 s flush period) through ``CsvRows`` and through
``ArrowRows`` followed by ``seal``, and takes the process CPU time of each. The run's statistics
(the same for both) are left out, so the figures are the writer's own.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from fastload.arrivals.pipe import IssuedSample
from fastload.contract.workload import builtin_workload
from fastload.records.columnar import ArrowRows, Journal, journal_schema, seal
from fastload.records.recorder import CsvRows, RowSink
from fastload.records.row import Record

from harness import BENCH_DIR, machine

_CHUNK = 48  # the Recorder's records per hold of the GIL
_PER_FLUSH = 250  # records closed per 0.25 s flush at 1,000 QPS


def make_records(count: int) -> list[Record]:
    """Closed records of the balanced mix, as a run at 1,000 QPS leaves them."""
    workload = builtin_workload("balanced")
    issuer = SimpleNamespace(plan=SimpleNamespace(label="all"))
    records = []
    for i in range(count):
        cls = workload.classes[i % len(workload.classes)]
        issue_ns = 1_000_000 * i
        record = Record(IssuedSample(i, issuer, 94_000_000_000_000 + i, cls,
                                     cls.models[i % len(cls.models)][0], issue_ns,
                                     1_700_000_000_000_000_000 + issue_ns, 0, 0))
        record.send_mono_ns = issue_ns + 40_000 + i % 977
        record.finish(issue_ns + 7_000_000 + 1000 * (i % 5003), "OK", True)
        record.target_qps = "1000"
        records.append(record)
    return records


def write_all(rows: RowSink, records: list[Record]) -> None:
    for flush_start in range(0, len(records), _PER_FLUSH):
        flush = records[flush_start:flush_start + _PER_FLUSH]
        for start in range(0, len(flush), _CHUNK):
            rows.write(flush[start:start + _CHUNK])
        rows.flush()
    rows.close()


def cpu_per_record_us(records: list[Record], folder: Path, parquet: bool) -> float:
    started = time.process_time()
    if parquet:
        journal = folder / "m.arrows"
        write_all(ArrowRows(Journal(journal, journal_schema())), records)
        seal(journal, folder / "m.parquet", {"bench": "writer_cost"})
    else:
        write_all(CsvRows(open(folder / "m.csv", "w", newline="", buffering=1 << 16)), records)
    return (time.process_time() - started) / len(records) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "issue23")
    args = parser.parse_args()
    print(machine(), flush=True)
    records = make_records(args.records)
    figures: dict[str, list[float]] = {"csv": [], "parquet": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for kind in ("csv", "parquet"):
                figures[kind].append(cpu_per_record_us(records, Path(folder), kind == "parquet"))
    medians = {kind: statistics.median(values) for kind, values in figures.items()}
    ratio = medians["parquet"] / medians["csv"]
    print(f"writer CPU per record, median of {args.repeats}: CSV {medians['csv']:.2f} us, "
          f"Parquet {medians['parquet']:.2f} us (journal and seal): {ratio:.2f}x "
          f"({'PASS' if ratio <= 1.10 else 'FAIL'}: issue 23 asks at most 1.10x)")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "writer_cost.json"
    path.write_text(json.dumps({"machine": machine(), "records": args.records,
                                "cpu_us_per_record": figures, "median_us": medians,
                                "parquet_over_csv": ratio}, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
