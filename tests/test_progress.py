"""The live status line and --fail-if: fastload under a pseudo-terminal, in logs, and exit 6."""
from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastload.contract.thresholds import ThresholdError, parse_threshold
from fastload.results.summary import ClassSummary, RunSummary
from fastload.results.thresholds import check

from test_generator import read_rows, run_fastload

LINE = re.compile(r"fastload: +([\d.]+)/3\.0 s  issued ([\d,]+)  [\d.]+ QPS  in flight \d+  "
                  r"errors (\d+)  p99 \(last 1 s\) (?:[\d.]+ ms|–)  SLO met (?:[\d.]+ %|–)")


def test_status_line_is_rewritten_in_place_on_a_terminal(tmp_path: Path, address: str) -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastload", "--scheduler-url", address, "--total-qps", "100",
         "--duration-ms", "3000", "--metrics-csv", str(tmp_path / "m.csv"),
         "--output-dir", str(tmp_path / "logs")],
        stdout=subprocess.DEVNULL, stderr=terminal, stdin=subprocess.DEVNULL)
    os.close(terminal)
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: fastload has exited
            break
        if not chunk:
            break
        screen += chunk
    os.close(controller)
    assert proc.wait(timeout=30) == 0
    text = screen.decode()
    updates = [u for u in text.split("\r") if u.strip()]
    assert len(updates) >= 3, text  # about one a second, each overwriting the last
    parsed = [LINE.match(u) for u in updates]
    assert all(parsed), updates
    issued = [int(m[2].replace(",", "")) for m in parsed]
    assert issued == sorted(issued) and issued[-1] > 200
    assert text.endswith("\x1b[K\r\n") or text.endswith("\x1b[K\n")  # the last one is kept
    assert len(read_rows(tmp_path / "m.csv")) == issued[-1]


def test_plain_lines_off_a_terminal_and_none_with_quiet(tmp_path: Path, address: str) -> None:
    common = ("--scheduler-url", address, "--total-qps", "50", "--duration-ms", "6000")
    proc, _ = run_fastload(tmp_path / "plain", *common)
    assert proc.returncode == 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("fastload: ") for line in lines), lines
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    proc, _ = run_fastload(tmp_path / "quiet", *common, "--quiet")
    assert proc.returncode == 0 and proc.stderr == ""


def test_fail_if_exits_6_naming_the_condition(tmp_path: Path, address: str) -> None:
    common = ("--scheduler-url", address, "--total-qps", "100", "--duration-ms", "1500",
              "--quiet")
    proc, csv_path = run_fastload(tmp_path / "held", *common, "--fail-if", "all.p50>0",
                                  "--fail-if", "tier1_urgent.attainment<50")
    assert proc.returncode == 6, proc.stderr
    assert proc.stderr.startswith("fastload: --fail-if all.p50>0: all p50 is ")
    assert len(proc.stderr.splitlines()) == 1
    assert len(read_rows(csv_path)) > 100  # the data is kept
    proc, _ = run_fastload(tmp_path / "passed", *common, "--fail-if", "all.errors>0",
                           "--fail-if", "tier1_urgent.attainment<50")
    assert proc.returncode == 0 and proc.stderr == ""


def summary_with(attainment: float, p99_ms: float, count: int = 10) -> RunSummary:
    row = ClassSummary(1, "urgent", count, 1.0, 2.0, p99_ms, attainment, 0, 5.0, 5.0, 1.0)
    return RunSummary("w", 1, True, (), False, 1.0, (row,), row)


@pytest.mark.parametrize("condition, attainment, p99_ms, held", [
    ("tier1_urgent.attainment<99", 98.9, 1.0, True),
    ("tier1_urgent.attainment<99", 99.0, 1.0, False),
    ("tier1_urgent.attainment<=99", 99.0, 1.0, True),
    ("all.p99 >= 250", 100.0, 250.0, True),
    ("all.p99>250", 100.0, 250.0, False),
    ("all.p99!=1e2", 100.0, 100.0, False),
    ("tier1_urgent.attainment==100", float("nan"), 1.0, True),  # no samples: cannot pass
])
def test_threshold_conditions(condition: str, attainment: float, p99_ms: float,
                              held: bool) -> None:
    threshold = parse_threshold(condition, ["tier1_urgent"])
    assert (check(threshold, summary_with(attainment, p99_ms)) is not None) == held


@pytest.mark.parametrize("condition, message", [
    ("tier1_urgent.attainment", "must be ROW.FIELD OP NUMBER"),
    ("tier1_urgent.attainment<abc", "must be ROW.FIELD OP NUMBER"),
    ("tier2_urgent.p99>1", "no row 'tier2_urgent'; the workload has tier1_urgent, all"),
    ("all.latency>1", "no field 'latency'; choose from attainment, p50"),
])
def test_bad_thresholds(condition: str, message: str) -> None:
    with pytest.raises(ThresholdError, match=re.escape(message)):
        parse_threshold(condition, ["tier1_urgent"])


def test_embedded_policy_and_gpus_reach_the_scheduler(tmp_path: Path) -> None:
    proc, _ = run_fastload(tmp_path, "--embedded", "--embedded-policy", "fifo",
                           "--embedded-gpus", "7", "--total-qps", "50", "--duration-ms", "500",
                           "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "(--policy fifo --gpus 7)" in proc.stdout
