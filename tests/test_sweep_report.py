"""fastload.sweep over rates and policies against the embedded scheduler, and fastload.report
over the result: the report's numbers equal those recomputed here from the CSVs."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fastload.contract.percentiles import nearest_rank
from fastload.results.figures import p99_per_bin_ms
from fastload.results.runs import at_highest_load, load_runs

WORKLOAD = (
    'name = "small"\n'
    "[models.resnet50]\nshape = [1, 16]\n"
    '[[classes]]\ntier = 1\nslo = "urgent"\nfraction = 0.3\nmodels = { resnet50 = 1.0 }\n'
    '[[classes]]\ntier = 3\nslo = "urgent"\nfraction = 0.7\nmodels = { resnet50 = 1.0 }\n'
)
ANSWERED = ("OK", "EXPIRED")


def run_module(module: str, *args: str, cwd: Path, timeout_s: float = 300
               ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout_s)


def small_sweep(folder: Path, *flags: str) -> subprocess.CompletedProcess:
    """fastload.sweep of the small workload on the embedded scheduler, into ``folder``/out."""
    (folder / "small.toml").write_text(WORKLOAD)
    return run_module("fastload.sweep", "--workload", "small.toml", "--embedded",
                      "--min-query-count", "1", "--quiet", "--output-dir", "out", *flags,
                      cwd=folder)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two rates under fifo and under priority on one simulated GPU (5 ms per request, so
    200 QPS of capacity): 300 QPS overloads it."""
    folder = tmp_path_factory.mktemp("sweep")
    proc = small_sweep(folder, "--qps", "100,300", "--embedded-policy", "fifo,priority",
                       "--embedded-gpus", "1", "--duration-ms", "2500", "--seed", "4")
    assert proc.returncode == 0, proc.stderr
    assert "sweep: 4 points" in proc.stdout
    return folder / "out"


def recompute(csv_path: Path) -> dict[tuple[str, str], dict]:
    """Per class and overall, straight from the CSV with numpy."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    groups: dict[tuple[str, str], list[dict]] = {("all", "all"): rows}
    for row in rows:
        groups.setdefault((row["tier"], row["slo"]), []).append(row)
    result = {}
    for key, members in groups.items():
        latencies = np.array([int(r["latency_ns"]) for r in members if r["status"] in ANSWERED])
        issues = np.sort([int(r["issue_mono_ns"]) for r in members])
        result[key] = {
            "count": len(members),
            "errors": sum(r["status"] not in ANSWERED for r in members),
            "slo_attainment_pct": 100 * np.mean([r["slo_met"] == "True" for r in members]),
            "achieved_qps": (len(issues) - 1) / ((issues[-1] - issues[0]) / 1e9),
            **{f"p{q}_ms": float(np.percentile(latencies, q, method="inverted_cdf")) / 1e6
               for q in (50, 95, 99)},
        }
    return result


def test_sweep_writes_every_point_and_its_table(sweep: Path) -> None:
    points = json.loads((sweep / "sweep.json").read_text())["points"]
    assert [(p["series"], p["target_qps"]) for p in points] == [
        ("small-fifo", 100), ("small-fifo", 300), ("small-priority", 100),
        ("small-priority", 300)]
    for point in points:
        assert (sweep / point["csv"]).exists() and (sweep / point["json"]).exists()
        summary = json.loads((sweep / point["json"]).read_text())
        assert point["overall"] == summary["overall"] and point["exit_code"] == 0
    by = {(p["series"], p["target_qps"]): p for p in points}
    tier1 = {key: next(c for c in p["classes"] if c["tier"] == 1)["slo_attainment_pct"]
             for key, p in by.items()}
    # Overloaded, priority keeps tier 1's SLO; fifo does not.
    assert tier1[("small-priority", 300)] > 95 > tier1[("small-fifo", 300)]


def test_report_numbers_equal_the_csvs(sweep: Path, tmp_path: Path) -> None:
    proc = run_module("fastload.report", str(sweep), "-o", str(tmp_path / "r.html"),
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["runs"]) == 4
    for run in report["runs"]:
        expected = recompute(Path(run["csv"]))
        for row in (*run["classes"], run["overall"]):
            want = expected[(str(row["tier"]), row["slo"])]
            for key, value in want.items():
                assert row[key] == pytest.approx(value, rel=1e-9), (run["csv"], row, key)
    for name in ("attainment", "latency_cdf", "over_time"):
        png = (tmp_path / f"r_{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
    page = (tmp_path / "r.html").read_text()
    assert page.count('<img alt="') == 3 and page.count("data:image/png;base64,") == 3
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")


def test_report_labels_csv_files(sweep: Path, tmp_path: Path) -> None:
    fifo, priority = sweep / "small-fifo" / "qps300.csv", sweep / "small-priority" / "qps300.csv"
    proc = run_module("fastload.report", str(fifo), str(priority), "--label", "fifo",
                      "--label", "priority", "-o", str(tmp_path / "two.html"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((tmp_path / "two.json").read_text())["runs"]
    assert [(r["series"], r["offered_qps"]) for r in runs] == [("fifo", 300), ("priority", 300)]


@pytest.mark.parametrize("args, message", [
    (("nope.csv",), "nope.csv: cannot read it"),
    (("a.csv",), "a.csv: not a fastload CSV with rows"),
    (("a.csv", "--label", "x", "--label", "y"), "2 --label for 1 CSV files"),
    ((".",), "a folder, but no sweep.json in it"),
])
def test_report_bad_input(tmp_path: Path, args: tuple, message: str) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    proc = run_module("fastload.report", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "report.html").exists()


def test_stop_when_ends_a_series_at_the_knee(tmp_path: Path) -> None:
    proc = small_sweep(tmp_path, "--qps", "300:500:100", "--embedded-gpus", "1",
                       "--duration-ms", "1500", "--stop-when", "ATTAINMENT<90")
    assert proc.returncode == 0, proc.stderr
    points = json.loads((tmp_path / "out" / "sweep.json").read_text())["points"]
    assert [p["target_qps"] for p in points] == [300]
    assert "attainment" in proc.stdout and "the series stops here" in proc.stdout


def test_a_parquet_sweep_computes_its_intervals_from_the_parquet_files(tmp_path: Path) -> None:
    """--output-format parquet passes through to every point; the sweep's means over repeats
    and the report read the Parquet files."""
    proc = small_sweep(tmp_path, "--qps", "150", "--repeats", "2", "--duration-ms", "1500",
                       "--output-format", "parquet")
    assert proc.returncode == 0, proc.stderr
    sweep = json.loads((tmp_path / "out" / "sweep.json").read_text())
    paths = [tmp_path / "out" / point["csv"] for point in sweep["points"]]
    assert [path.suffix for path in paths] == [".parquet", ".parquet"]
    attainment = [100 * np.mean(pq.read_table(path, columns=["slo_met"]).column(0).to_numpy())
                  for path in paths]
    [overall] = [row for row in sweep["means"][0]["rows"] if row["tier"] == "all"]
    assert overall["slo_attainment_pct"]["mean"] == pytest.approx(np.mean(attainment))
    report = run_module("fastload.report", "out", "-o", "report.html", cwd=tmp_path)
    assert report.returncode == 0, report.stderr


def test_a_client_limited_point_ends_its_series_and_is_not_counted(tmp_path: Path) -> None:
    """5,000 QPS of the spec's 602 KB requests is more than one sender process sends on any
    machine: that point is client-limited, ends its series under --stop-when (whatever the
    attainment) and makes the sweep exit 8; the report greys it, draws it off the attainment
    line and takes the other figures from the highest point the server answered for."""
    proc = run_module("fastload.sweep", "--qps", "100,5000,6000", "--embedded",
                      "--embedded-gpus", "64", "--duration-ms", "1500", "--min-query-count",
                      "1", "--quiet", "--stop-when", "ATTAINMENT<1", "--output-dir", "out",
                      cwd=tmp_path)
    assert proc.returncode == 8, proc.stderr
    points = json.loads((tmp_path / "out" / "sweep.json").read_text())["points"]
    assert [(p["target_qps"], p["exit_code"], p["load"]["verdict"]) for p in points] == [
        (100, 0, "load as planned"), (5000, 8, "client-limited")]
    assert f"sweep: balanced at 5000 QPS was client-limited ({points[1]['load']['reason']}); " \
           f"the series stops here" in proc.stdout
    assert "sweep: client-limited, so not the server's result (exit 8): balanced at 5000 QPS" \
        in proc.stdout
    report = run_module("fastload.report", "out", "-o", "r.html", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert [(r["offered_qps"], r["counted"], r["load"]["verdict"]) for r in runs] == [
        (100, True, "load as planned"), (5000, False, "client-limited")]
    page = (tmp_path / "r.html").read_text()
    assert "<h2>Load certificates</h2>" in page
    assert page.count('<tr class="overall limited">') == 1  # the summary's row of 5,000 QPS
    assert "Client-limited (greyed, not counted as the server's result): balanced @ 5000 " \
           "QPS." in page
    assert at_highest_load(load_runs([tmp_path / "out"], []))[0].offered_qps == 100


@pytest.mark.parametrize("args, message", [
    (("--qps", "100", "--total-qps", "5"), "--total-qps is set per point by the sweep"),
    (("--qps", "0,100"), "--qps rates must be positive"),
    (("--qps", "500:100:100"), "--qps must be rates like"),
    (("--qps", "100", "--stop-when", "p99>3"), "--stop-when must be ATTAINMENT<PCT"),
    (("--qps", "100", "--embedded-policy", "fifo"), "--embedded-policy needs --embedded"),
    (("--qps", "100", "--embedded", "--embedded-policy", "lifo"), "invalid choice: 'lifo'"),
])
def test_sweep_bad_flags_exit_2_before_any_run(tmp_path: Path, args: tuple,
                                               message: str) -> None:
    proc = run_module("fastload.sweep", *args, "--output-dir", "out", cwd=tmp_path, timeout_s=60)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="no chromium (apt-get install -y chromium): the browser check "
                           "tests/browser/check_html.sh is then run by hand")
def test_report_opens_offline_in_chromium(sweep: Path, tmp_path: Path) -> None:
    report = tmp_path / "r.html"
    assert run_module("fastload.report", str(sweep), "-o", str(report),
                      cwd=tmp_path).returncode == 0
    check = subprocess.run(["bash", str(Path(__file__).parent / "browser" / "check_html.sh"),
                            str(report), "3"], capture_output=True, text=True, timeout=180)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "REPORT-CHECK OK images=3 tables=2"  # summary, certificates


def test_p99_per_bin_is_each_bins_own_nearest_rank_p99():
    """The over-time figure's p99 per second, from one sort of every row, against each bin's
    rows sorted alone (bins left empty included)."""
    rng = np.random.default_rng(1)
    bins = rng.integers(0, 50, 10_000)
    bins[bins == 7] = 8
    latency_ns = rng.integers(1, 10**9, 10_000)
    got = p99_per_bin_ms(bins, latency_ns, 51)
    for b in range(51):
        mine = np.sort(latency_ns[bins == b])
        if len(mine):
            assert got[b] == mine[nearest_rank(len(mine), 99) - 1] / 1e6
        else:
            assert np.isnan(got[b])
