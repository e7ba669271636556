"""Parquet results (--output-format parquet): every value the CSV holds, typed, with the run's
metadata in the footer; a journal that keeps its rows through SIGKILL; the one reader for all."""
from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastload.contract.rates import RateSchedule
from fastload.records import reader
from fastload.records.columnar import ArrowRows, Journal, journal_schema, run_metadata, seal
from fastload.records.recorder import CsvRows, Recorder
from fastload.records.row import CSV_COLUMNS
from fastload.results.stats import RunStats

from test_faults import start_fastload, wait_for_output
from test_generator import read_rows, run_fastload
from test_records import CLASSES, sample

DICTIONARY = pa.dictionary(pa.int32(), pa.string())


def test_parquet_holds_every_value_the_csv_holds(tmp_path):
    csv_path, journal, parquet = (tmp_path / "m.csv", tmp_path / "m.arrows",
                                  tmp_path / "m.parquet")
    recorder = Recorder(CsvRows(open(csv_path, "w", newline="")), RunStats(CLASSES).add,
                        RateSchedule.constant(250, 1000), start_mono_ns=0)
    records = [recorder.open(sample(i, 1_000_000 * i)) for i in range(40)]
    for i, record in enumerate(records[:33]):
        record.send_mono_ns = record.issue_mono_ns + 1000 * i
        recorder.close(record, record.issue_mono_ns + 37_777_777 * i,
                       "OK" if i % 4 else "UNAVAILABLE", i % 3 != 0)
    recorder.finish()  # the last 7 were never sent
    arrow_rows = ArrowRows(Journal(journal, journal_schema()))
    arrow_rows.write(records[:20])
    arrow_rows.flush()
    arrow_rows.write(records[20:])
    arrow_rows.flush()
    arrow_rows.close()
    assert seal(journal, parquet, {"seed": 5, "workload": "balanced"}) == 40
    assert not journal.exists()

    from_csv = reader.read_columns(csv_path, CSV_COLUMNS)
    from_parquet = reader.read_columns(parquet, CSV_COLUMNS)
    order = np.argsort(from_csv["sample_id"])
    for name in CSV_COLUMNS:
        np.testing.assert_array_equal(from_parquet[name], from_csv[name][order], err_msg=name)
    schema = pq.read_schema(parquet)
    assert schema.field("slo").type == DICTIONARY and schema.field("status").type == DICTIONARY
    assert schema.field("timestamp_issued").type == pa.int64()
    assert schema.field("slo_met").type == pa.bool_()
    assert run_metadata(parquet) == {"seed": 5, "workload": "balanced"}


def test_a_parquet_run_matches_the_csv_run_of_the_same_seed(tmp_path, address):
    """The same seed gives the same samples; the Parquet run's come from two sender processes
    into one file, read here with pyarrow alone, as a user's script would."""
    flags = ("--scheduler-url", address, "--total-qps", "200", "--duration-ms", "1500",
             "--seed", "1234")
    proc, csv_path = run_fastload(tmp_path / "csv", *flags)
    assert proc.returncode == 0, proc.stderr
    proc, parquet_csv = run_fastload(tmp_path / "parquet", *flags, "--output-format", "parquet",
                                     "--processes", "2")
    assert proc.returncode == 0, proc.stderr
    parquet = parquet_csv.with_suffix(".parquet")
    assert not parquet_csv.exists() and not parquet_csv.with_suffix(".arrows").exists()

    table = pq.read_table(parquet).sort_by("sample_id")
    rows = sorted(read_rows(csv_path), key=lambda row: int(row["sample_id"]))
    n = min(len(rows), table.num_rows)
    assert n > 100 and table.column("sample_id").to_pylist() == list(range(table.num_rows))
    written = {name: table.column(name).to_pylist()[:n] for name in CSV_COLUMNS}
    for name in ("tier", "slo", "model", "issuer", "status", "success",
                 "target_qps_at_issue", "phase"):
        as_text = [str(v) if name != "target_qps_at_issue" else f"{v:g}" for v in written[name]]
        assert as_text == [row[name] for row in rows[:n]], name
    slo_ns = {cls.slo: cls.slo_ns for cls in CLASSES}
    assert [d - t for d, t in zip(written["deadline_ns"], written["timestamp_issued"])] == \
        [slo_ns[slo] for slo in written["slo"]]
    assert written["latency_ms"] == [round(ns / 1e6, 3) for ns in written["latency_ns"]]
    assert all(lag >= 0 for lag in written["send_lag_ns"])

    metadata = run_metadata(parquet)
    summary = json.loads(parquet.with_suffix(".json").read_text())
    assert metadata["seed"] == 1234 and metadata["workload"] == "balanced"
    assert metadata["load_certificate"]["verdict"] == summary["load"]["verdict"]
    assert "Poisson arrivals at 200 QPS" in metadata["arrivals"] and metadata["version"]
    assert metadata["transport"] == summary["transport"] == "h2"


def journal_rows(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        return len(reader.read_columns(journal, ("sample_id",))["sample_id"])
    except reader.ResultsFileError:  # not even its schema written yet
        return 0


def test_a_killed_parquet_run_keeps_its_rows_in_the_journal(tmp_path):
    proc, csv_path = start_fastload(tmp_path, "--embedded", "--total-qps", "100",
                                    "--duration-ms", "60000", "--output-format", "parquet")
    journal, parquet = csv_path.with_suffix(".arrows"), csv_path.with_suffix(".parquet")
    wait_for_output(proc, "fastload: seed")
    deadline = time.monotonic() + 60
    while journal_rows(journal) < 100:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "fewer than 100 rows in the journal within 60 s"
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=30)
    assert not parquet.exists()
    columns = reader.read_columns(journal, CSV_COLUMNS)
    kept = len(columns["sample_id"])
    assert kept >= 100 and len(set(columns["sample_id"].tolist())) == kept

    report = subprocess.run([sys.executable, "-m", "fastload.report", "--seal", str(journal),
                             "-o", str(tmp_path / "report.html")],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert f"{parquet}: {kept:,} rows sealed" in report.stdout
    assert not journal.exists() and pq.read_metadata(parquet).num_rows == kept
    assert "after the run was killed" in run_metadata(parquet)["sealed"]
    assert (tmp_path / "report.html").exists()


@pytest.mark.parametrize("args, message", [
    (("--metrics-csv", "m.arrows"), "--metrics-csv must not end in .arrows"),
    (("--metrics-csv", "m.parquet", "--output-format", "csv"),
     "--output-format csv cannot write a CSV to m.parquet"),
])
def test_bad_output_format_flags_exit_2_with_one_line(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "fastload", *args], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def readme_block(marker: str) -> str:
    """The code block after ``marker`` in the README."""
    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    after = text[text.index(marker):]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_answers_one_question_with_duckdb_and_pandas(tmp_path, address, capsys,
                                                                  monkeypatch):
    """The README's interop block, run as written on a Parquet run: DuckDB and pandas both
    count each class as the summary does."""
    pytest.importorskip("duckdb")
    pytest.importorskip("pandas")
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", address, "--total-qps", "200",
                                  "--duration-ms", "1500", "--seed", "99",
                                  "--output-format", "parquet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    monkeypatch.chdir(csv_path.parent)
    exec(readme_block("<!-- interop -->"), {})
    printed = capsys.readouterr().out.splitlines()
    for row in summary["classes"]:
        answers = [line for line in printed
                   if line.split()[:3] == [str(row["tier"]), row["slo"], str(row["count"])]
                   or re.search(rf"\b{row['tier']}\b.*\b{row['slo']}\b.*\b{row['count']}\b", line)]
        assert len(answers) >= 2, (row, printed)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_stops_the_journal_not_the_run(capsys):
    stats = RunStats(CLASSES)
    recorder = Recorder(ArrowRows(Journal(Path("/dev/full"), journal_schema())), stats.add)
    for i in range(3):
        recorder.close(recorder.open(sample(i, 1000 * i)), 1000 * i + 10, "OK", True)
    recorder.finish()
    assert recorder.write_error is not None and recorder.write_error.errno == errno.ENOSPC
    assert "cannot write /dev/full" in capsys.readouterr().err
    assert stats.overall().count == 3
