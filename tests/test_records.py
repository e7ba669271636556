"""The Recorder's streaming CSV and the bounded statistics it feeds, on real files."""
from __future__ import annotations

import csv
import errno
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fastload.arrivals.pipe import IssuedSample
from fastload.contract.rates import RateSchedule
from fastload.contract.workload import builtin_workload
from fastload.records import reader
from fastload.records.recorder import FLUSH_PERIOD_S, CsvRows, Recorder
from fastload.records.row import CSV_COLUMNS
from fastload.results.stats import RunStats
from fastload.results.summary import summarize

CLASSES = builtin_workload("balanced").classes
ISSUER = SimpleNamespace(plan=SimpleNamespace(label="all"))


def sample(sample_id: int, issue_ns: int) -> IssuedSample:
    cls = CLASSES[sample_id % len(CLASSES)]
    return IssuedSample(sample_id, ISSUER, 1000 + sample_id, cls, cls.models[0][0], issue_ns,
                        1_700_000_000_000_000_000 + issue_ns, 0, 0)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_reach_the_file_while_the_run_goes_on(tmp_path):
    path = tmp_path / "m.csv"
    stats = RunStats(CLASSES)
    recorder = Recorder(CsvRows(open(path, "w", newline="")), stats.add)
    records = [recorder.open(sample(i, 1_000_000 * i)) for i in range(50)]
    for record in records[:30]:
        recorder.close(record, record.issue_mono_ns + 2_000_000, "OK", True)
    deadline = time.monotonic() + 100 * FLUSH_PERIOD_S
    while len(on_disk := read_csv(path)) < 30 and time.monotonic() < deadline:
        time.sleep(FLUSH_PERIOD_S / 5)
    # Before finish(): what a SIGKILL now would leave.
    assert sorted(int(r["sample_id"]) for r in on_disk) == list(range(30))
    assert all(r["latency_ns"] == "2000000" and r["status"] == "OK" for r in on_disk)

    recorder.close(records[30], records[30].issue_mono_ns + 5, "UNAVAILABLE", False)
    recorder.finish()
    rows = read_csv(path)
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == 50
    never = [r for r in rows if r["status"] == "NOT_SENT"]
    assert sorted(int(r["sample_id"]) for r in never) == list(range(31, 50))
    assert all(r["latency_ns"] == "-1" and r["slo_met"] == "False" for r in never)
    overall = stats.overall()
    assert (overall.count, overall.errors, overall.met) == (50, 20, 30)


def test_concurrent_closes_are_recorded_once_each(tmp_path):
    path = tmp_path / "m.csv"
    stats = RunStats(CLASSES)
    recorder = Recorder(CsvRows(open(path, "w", newline="")), stats.add)
    records = [recorder.open(sample(i, i)) for i in range(4000)]
    closed = []

    def close_all(status: str) -> None:  # gRPC's callback racing the watchdog
        closed.append(sum(recorder.close(r, r.issue_mono_ns + 7, status, True) for r in records))

    threads = [threading.Thread(target=close_all, args=(s,)) for s in ("OK", "DEADLINE_EXCEEDED")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.finish()
    assert sum(closed) == 4000
    rows = read_csv(path)
    assert sorted(int(r["sample_id"]) for r in rows) == list(range(4000))
    assert stats.overall().count == 4000


def test_summary_percentiles_match_exact_ones_within_a_percent(tmp_path):
    rng = np.random.default_rng(3)
    latency_ns = rng.lognormal(np.log(20e6), 1.0, 20_000).astype(np.int64)
    stats = RunStats(CLASSES)
    recorder = Recorder(CsvRows(open(tmp_path / "m.csv", "w", newline="")), stats.add)
    for i, latency in enumerate(latency_ns.tolist()):
        record = recorder.open(sample(i, i * 1000))
        recorder.close(record, record.issue_mono_ns + latency, "OK", True)
    recorder.finish()
    summary = summarize(stats, 300.0, "balanced", 1, [])
    for q in (50, 95, 99):
        exact_ms = np.percentile(latency_ns, q, method="inverted_cdf") / 1e6
        assert getattr(summary.overall, f"p{q}_ms") == pytest.approx(exact_ms, rel=0.01)
    for row, cls in zip(summary.classes, CLASSES):
        mine = latency_ns[[i % len(CLASSES) == CLASSES.index(cls) for i in range(len(latency_ns))]]
        assert row.count == len(mine)
        assert row.p99_ms == pytest.approx(np.percentile(mine, 99, method="inverted_cdf") / 1e6,
                                           rel=0.01)
        assert row.slo_attainment_pct == pytest.approx(100 * np.mean(mine <= cls.slo_ns))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_stops_the_csv_not_the_run(capsys):
    stats = RunStats(CLASSES)
    recorder = Recorder(CsvRows(open("/dev/full", "w", newline="")), stats.add)
    record = recorder.open(sample(0, 0))
    recorder.close(record, 10, "OK", True)
    recorder.finish()
    assert recorder.write_error is not None and recorder.write_error.errno == errno.ENOSPC
    assert "cannot write /dev/full" in capsys.readouterr().err
    assert stats.overall().count == 1


def test_rows_parse_back_with_csv_and_quote_odd_model_names(tmp_path):
    path = tmp_path / "m.csv"
    cls = CLASSES[0]
    recorder = Recorder(CsvRows(open(path, "w", newline="")), RunStats(CLASSES).add)
    odd = IssuedSample(0, ISSUER, 7, cls, 'resnet,"50"', 100, 1_700_000_000_000_000_100, 0, 0)
    record = recorder.open(odd)
    record.send_mono_ns = 150
    recorder.close(record, 2_500_100, "OK", True)
    recorder.finish()
    [row] = read_csv(path)
    assert row == {
        "timestamp_issued": "1700000000000000100", "sample_id": "0", "tier": str(cls.tier),
        "slo": cls.slo, "model": 'resnet,"50"', "latency_ns": "2500000", "latency_ms": "2.500",
        "slo_met": "True", "status": "OK", "success": "True",
        "deadline_ns": str(1_700_000_000_000_000_100 + cls.slo_ns), "send_lag_ns": "50",
        "issue_mono_ns": "100", "loadgen_sample_id": "7", "issuer": "all",
        "target_qps_at_issue": "", "phase": "0",
    }


def test_the_reader_types_every_column_as_the_recorder_wrote_it(tmp_path, monkeypatch):
    # Small blocks, so that the rows cross several of them (each its own string dictionary).
    monkeypatch.setattr(reader, "BLOCK_BYTES", 1024)
    path = tmp_path / "m.csv"
    recorder = Recorder(CsvRows(open(path, "w", newline="")), RunStats(CLASSES).add,
                        RateSchedule.constant(250, 1000), start_mono_ns=0)
    records = [recorder.open(sample(i, 1_000_000 * i)) for i in range(30)]
    for i, record in enumerate(records[:25]):
        record.send_mono_ns = record.issue_mono_ns + 1000
        recorder.close(record, record.issue_mono_ns + 50_000_000 * i, "OK" if i % 4 else
                       "UNAVAILABLE", i % 3 != 0)
    recorder.finish()  # the last 5 were never sent
    columns = reader.read_columns(path, CSV_COLUMNS)
    by_id = {record.sample_id: record for record in records}
    order = [by_id[i] for i in columns["sample_id"].tolist()]
    assert columns["tier"].dtype == np.int64 and columns["slo_met"].dtype == bool
    assert columns["tier"].tolist() == [r.cls.tier for r in order]
    assert columns["slo"].tolist() == [r.cls.slo for r in order]
    assert columns["latency_ns"].tolist() == [r.latency_ns for r in order]
    assert columns["slo_met"].tolist() == [r.slo_met for r in order]
    assert columns["success"].tolist() == [r.success for r in order]
    assert columns["status"].tolist() == [r.status for r in order]
    assert columns["send_lag_ns"].tolist() == [r.send_lag_ns for r in order]
    assert columns["target_qps_at_issue"].tolist() == [250.0] * 30
    assert 0 < columns["slo_met"].sum() < 25 and (columns["status"] == "NOT_SENT").sum() == 5


def test_the_reader_names_a_file_it_cannot_read(tmp_path):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(reader.ResultsFileError, match="other.csv: not a fastload CSV"):
        reader.read_columns(tmp_path / "other.csv", ("tier", "slo_met"))
    with pytest.raises(reader.ResultsFileError, match="missing.csv: cannot read it"):
        reader.read_columns(tmp_path / "missing.csv", ("tier",))
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(CSV_COLUMNS) + "\r\n")
    assert reader.read_columns(empty, ("tier", "slo"))["tier"].tolist() == []


def test_the_reader_skips_the_cut_last_line_of_a_killed_run(tmp_path):
    path = tmp_path / "killed.csv"
    whole = "1,0,1,urgent,resnet50,5000000,5.000,True,OK,True,9,100,7,0,all,10,0\r\n"
    path.write_text(",".join(CSV_COLUMNS) + "\r\n" + whole * 3 + whole[:23])
    columns = reader.read_columns(path, ("tier", "slo", "latency_ns", "slo_met"))
    assert columns["latency_ns"].tolist() == [5_000_000] * 3
    assert columns["slo"].tolist() == ["urgent"] * 3 and columns["slo_met"].all()
