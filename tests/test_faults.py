"""Faults: a scheduler that dies, stalls or errs, interrupts, and bad input; real processes only."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from fastload.records.row import CSV_COLUMNS

from test_generator import loadgen_query_count, read_rows, run_fastload


def start_fastload(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    csv_path = tmp_path / "out" / "metrics.csv"
    cmd = [sys.executable, "-m", "fastload", "--metrics-csv", str(csv_path),
           "--output-dir", str(tmp_path / "logs"), "--min-query-count", "1", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    return proc, csv_path


def wait_for_output(proc: subprocess.Popen, text: str, timeout_s: float = 30) -> None:
    """Read stdout lines until one contains text (the run has started issuing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if text in line:
            return
        assert line or proc.poll() is None, f"fastload exited early: {proc.stderr.read()}"
    raise AssertionError(f"no {text!r} from fastload within {timeout_s} s")


def wait_for_rows(proc: subprocess.Popen, csv_path: Path, count: int,
                  timeout_s: float = 60) -> None:
    """Wait until the CSV holds at least ``count`` whole rows: the run has recorded that much,
    however slowly this machine started its processes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = csv_path.read_bytes().count(b"\n") if csv_path.exists() else 0
        if lines - 1 >= count:  # less the header
            return
        assert proc.poll() is None, f"fastload exited early: {proc.stderr.read()}"
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} rows in {csv_path} within {timeout_s} s")


@pytest.mark.parametrize("transport", ["h2", "grpcio"])
def test_scheduler_dying_mid_run_completes_every_sample_with_unavailable(tmp_path, start_scheduler,
                                                                          transport):
    scheduler = start_scheduler("--gpus", "64", "--service-ms", "resnet50=1",
                                "--service-ms", "vit=1")
    started = time.monotonic()
    proc, csv_path = start_fastload(tmp_path, "--scheduler-url", scheduler.address,
                                    "--total-qps", "200", "--duration-ms", "4000",
                                    "--timeout-ms", "2000", "--seed", "9",
                                    "--transport", transport)
    wait_for_output(proc, "fastload: seed")
    wait_for_rows(proc, csv_path, 100)
    scheduler.proc.kill()
    out, err = proc.communicate(timeout=60)
    elapsed_s = time.monotonic() - started
    assert proc.returncode == 1, err
    assert elapsed_s < 4 + 2 + 15  # duration + timeout + start-up and shutdown
    rows = read_rows(csv_path)
    assert len(rows) == loadgen_query_count(tmp_path / "logs")
    statuses = Counter(r["status"] for r in rows)
    assert statuses["OK"] > 0 and statuses["UNAVAILABLE"] > 0
    assert set(statuses) <= {"OK", "UNAVAILABLE"}
    assert all(r["slo_met"] == "False" for r in rows if r["status"] != "OK")
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    assert summary["overall"]["errors"] == statuses["UNAVAILABLE"]
    per_class = sum(row["errors"] for row in summary["classes"])
    assert per_class == statuses["UNAVAILABLE"]


@pytest.mark.parametrize("transport", ["h2", "grpcio"])
def test_stalled_scheduler_times_out_keeps_the_rate_and_caps_memory(tmp_path, start_scheduler,
                                                                   transport):
    scheduler = start_scheduler("--gpus", "64", "--service-ms", "resnet50=1",
                                "--service-ms", "vit=1")
    proc, csv_path = start_fastload(tmp_path, "--scheduler-url", scheduler.address,
                                    "--total-qps", "300", "--duration-ms", "10000",
                                    "--timeout-ms", "1500", "--max-inflight", "200",
                                    "--seed", "4", "--transport", transport)
    # Connected, then frozen: the kernel still accepts bytes, nothing is ever answered.
    wait_for_output(proc, "fastload: seed")
    os.kill(scheduler.pid, signal.SIGSTOP)
    try:
        measure_stall(proc, csv_path, tmp_path)
    finally:
        os.kill(scheduler.pid, signal.SIGCONT)


def measure_stall(proc: subprocess.Popen, csv_path: Path, tmp_path: Path) -> None:
    tree = psutil.Process(proc.pid)
    peak_rss = 0
    while proc.poll() is None:
        try:
            processes = [tree, *tree.children(recursive=True)]
            peak_rss = max(peak_rss, sum(p.memory_info().rss for p in processes))
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    out, err = proc.communicate()
    print(f"\npeak RSS of fastload's process tree during a 10 s stall at 300 QPS: "
          f"{peak_rss / 2**20:.0f} MiB")
    assert proc.returncode == 1, err
    rows = read_rows(csv_path)
    statuses = Counter(r["status"] for r in rows)
    # Requests in flight time out; the rest are refused at the cap, never queued without bound.
    assert statuses["DEADLINE_EXCEEDED"] > 0 and statuses["CLIENT_OVERLOAD"] > 0
    assert set(statuses) == {"DEADLINE_EXCEEDED", "CLIENT_OVERLOAD"}
    overloaded = [r for r in rows if r["status"] == "CLIENT_OVERLOAD"]
    assert all(int(r["latency_ns"]) < 50_000_000 for r in overloaded)
    timed_out = [int(r["latency_ns"]) for r in rows if r["status"] == "DEADLINE_EXCEEDED"]
    assert min(timed_out) >= 1_400_000_000 and max(timed_out) < 3_000_000_000
    # The issue schedule keeps its rate although nothing is answered.
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    assert abs(summary["overall"]["achieved_qps"] - 300) < 0.1 * 300
    assert len(rows) == loadgen_query_count(tmp_path / "logs")
    assert peak_rss < 1.5 * 2**30


def test_scheduler_errors_are_recorded_and_the_rest_unaffected(tmp_path, start_scheduler):
    scheduler = start_scheduler("--gpus", "64", "--service-ms", "resnet50=1")
    workload = tmp_path / "mix.json"
    workload.write_text(json.dumps({
        "models": {"unknown_model": {"shape": [1, 3, 8, 8]}},
        "classes": [
            {"tier": 1, "slo": "urgent", "fraction": 0.5},
            {"tier": 2, "slo": "normal", "fraction": 0.5, "models": {"unknown_model": 1.0}},
        ],
    }))
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", scheduler.address,
                                  "--total-qps", "100", "--duration-ms", "2000",
                                  "--workload-file", str(workload))
    assert proc.returncode == 1, proc.stderr
    rows = read_rows(csv_path)
    by_model = {m: Counter(r["status"] for r in rows if r["model"] == m)
                for m in ("resnet50", "unknown_model")}
    assert set(by_model["unknown_model"]) == {"INVALID_ARGUMENT"}
    assert set(by_model["resnet50"]) == {"OK"}
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    errors = {(c["tier"], c["slo"]): c["errors"] for c in summary["classes"]}
    assert errors[(1, "urgent")] == 0 and errors[(2, "normal")] == sum(by_model["unknown_model"].values())


@pytest.mark.parametrize("sig, code, processes", [(signal.SIGINT, 130, 1),
                                                 (signal.SIGTERM, 143, 1),
                                                 (signal.SIGINT, 130, 3)])
def test_interrupt_writes_partial_outputs_marked_interrupted(tmp_path, start_scheduler, sig, code,
                                                             processes):
    scheduler = start_scheduler("--gpus", "64", "--service-ms", "resnet50=1",
                                "--service-ms", "vit=1")
    proc, csv_path = start_fastload(tmp_path, "--scheduler-url", scheduler.address,
                                    "--total-qps", "200", "--duration-ms", "60000",
                                    "--processes", str(processes))
    wait_for_output(proc, "fastload: seed")
    wait_for_rows(proc, csv_path, 201)
    interrupted_at = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert time.monotonic() - interrupted_at < 10
    assert "stopped issuing" in err and "INTERRUPTED" in out
    rows = read_rows(csv_path)
    assert 200 < len(rows) < 1000
    assert {r["status"] for r in rows} == {"OK"}
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    assert summary["interrupted"] is True and summary["overall"]["count"] == len(rows)


@pytest.mark.parametrize("make_args, message", [
    (lambda p: ("--metrics-csv", str(p / "a_file" / "m.csv")), "--metrics-csv"),
    (lambda p: ("--output-dir", str(p / "a_file")), "--output-dir"),
    (lambda p: ("--workload-file", str(p / "missing.toml")), "cannot read it"),
    (lambda p: ("--workload-file", str(p / "bad.toml")), "classes[0].fraction"),
    (lambda p: ("--workload-file", str(p / "sum.toml")), "fractions must sum to 1"),
    (lambda p: ("--workload-file", str(p / "junk.json")), "not valid JSON"),
])
def test_bad_paths_and_workload_files_exit_2_before_traffic(tmp_path, make_args, message):
    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "bad.toml").write_text('[[classes]]\ntier = 1\nslo = "urgent"\nfraction = -1\n')
    (tmp_path / "sum.toml").write_text('[[classes]]\ntier = 1\nslo = "urgent"\nfraction = 0.4\n')
    (tmp_path / "junk.json").write_text("{not json")
    # Port 1 has no scheduler: reaching the network would fail differently (exit 3).
    proc = subprocess.run(
        [sys.executable, "-m", "fastload", "--scheduler-url", "127.0.0.1:1",
         "--output-dir", str(tmp_path / "logs"), *make_args(tmp_path)],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "logs").exists() and not (tmp_path / "metrics.csv").exists()


def test_sigkill_mid_run_leaves_every_completed_sample_on_disk(tmp_path, address):
    """What the OOM killer or a lost SSH session does: no handler runs, so whatever is on disk
    is all there is. Rows reach the file within a flush period (0.25 s) of completing."""
    proc, csv_path = start_fastload(tmp_path, "--scheduler-url", address,
                                    "--total-qps", "300", "--duration-ms", "30000",
                                    "--seed", "8")
    wait_for_output(proc, "fastload: seed")
    wait_for_rows(proc, csv_path, 1500)
    loadgen_children = psutil.Process(proc.pid).children()
    killed_at_ns = time.monotonic_ns()
    proc.kill()
    proc.communicate(timeout=10)

    text = csv_path.read_text()
    lines = text.splitlines()
    if not text.endswith("\n"):
        lines = lines[:-1]  # a row cut mid-write is tolerated
    rows = list(csv.DictReader(lines))
    assert rows and all(None not in r.values() and len(r) == len(CSV_COLUMNS) for r in rows)
    # Samples are numbered in issue order; every one completed 2 s before the kill is there.
    ids = {int(r["sample_id"]) for r in rows}
    assert len(ids) == len(rows)
    done_ns = {int(r["sample_id"]): int(r["issue_mono_ns"]) + int(r["latency_ns"]) for r in rows}
    settled = [i for i, t in done_ns.items() if t < killed_at_ns - 2_000_000_000]
    assert set(range(max(settled) + 1)) <= ids
    first_issue_ns = min(int(r["issue_mono_ns"]) for r in rows)
    assert len(settled) > 0.8 * 300 * (killed_at_ns - 2e9 - first_issue_ns) / 1e9
    assert all(r["status"] == "OK" for r in rows)
    # The LoadGen child does not outlive its parent waiting for completions that never come.
    gone, alive = psutil.wait_procs(loadgen_children, timeout=10)
    assert not alive, f"LoadGen process left running: {alive}"


@pytest.mark.parametrize("make_args, message", [
    (lambda p: ("--metrics-csv", "/proc/nope/x.csv"), "--metrics-csv: cannot create /proc/nope"),
    (lambda p: ("--metrics-csv", str(p / "a_dir")), "--metrics-csv"),
    (lambda p: ("--output-dir", "/proc/nope"), "--output-dir: cannot create /proc/nope"),
    (lambda p: ("--output-dir", "/proc/self"), "--output-dir /proc/self: cannot write in it"),
    (lambda p: ("--metrics-csv", str(p / "m.json")), "must not end in .json"),
])
def test_unwritable_outputs_exit_2_before_traffic_with_a_live_scheduler(tmp_path, start_scheduler,
                                                                        make_args, message):
    (tmp_path / "a_dir").mkdir()
    scheduler = start_scheduler("--gpus", "64")
    args = {"--metrics-csv": str(tmp_path / "out" / "metrics.csv"),
            "--output-dir": str(tmp_path / "logs")}
    args.update(dict(zip(*[iter(make_args(tmp_path))] * 2)))
    proc = subprocess.run(
        [sys.executable, "-m", "fastload", "--scheduler-url", scheduler.address,
         "--duration-ms", "1000", *[x for pair in args.items() for x in pair]],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    # Nothing was sent, and nothing half-made is left behind.
    assert "received=0 " in scheduler.stop(signal.SIGINT).stdout
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()


def test_a_killed_fastload_leaves_no_process_behind(tmp_path):
    """SIGKILL runs no handler: the embedded scheduler and the LoadGen process notice on their
    own that their parent is gone and exit."""
    proc, csv_path = start_fastload(tmp_path, "--embedded", "--total-qps", "100",
                             "--duration-ms", "30000")
    wait_for_output(proc, "fastload: seed")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the LoadGen process starts after that line
        children = psutil.Process(proc.pid).children(recursive=True)
        commands = [" ".join(child.cmdline()) for child in children]
        if any("spawn_main" in c for c in commands):
            break
        time.sleep(0.2)
    assert any("fastload.scheduler" in c for c in commands), commands
    assert any("spawn_main" in c for c in commands), commands
    wait_for_rows(proc, csv_path, 1)  # issuing
    proc.kill()
    proc.communicate(timeout=10)
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running: {[' '.join(p.cmdline()) for p in alive]}"
