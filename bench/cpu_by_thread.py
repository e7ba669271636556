"""Where fastload's client CPU goes: every process and thread of one run, over its steady window.

    python bench/cpu_by_thread.py [--qps 500] [--duration-ms 12000] [--processes N] [-- FLAGS]

Starts the ladder's reference scheduler, runs ``python -m fastload`` against it, and reads the
CPU time of every thread of fastload's process tree (/proc via psutil) at two instants inside
the run, from 1/3 to 5/6 of its duration: start-up and shutdown stay out. Per-thread figures
miss threads that end inside the window, which fastload does not start in its steady state (the
floor client does: grpcio's sync stack starts threads, so this tool is not for comparing
clients; runner.py measures whole process trees).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psutil

from fastload.scheduler.spawn import SchedulerProcess

from harness import SCHEDULER_ARGS, machine


def thread_cpu_s(root: psutil.Process) -> dict[tuple[int, int], tuple[str, float]]:
    """(pid, tid) -> (label, CPU seconds) for every thread of root and its descendants."""
    threads = {}
    for index, process in enumerate([root, *root.children(recursive=True)]):
        role = "fastload" if index == 0 else _role(process)
        try:
            for thread in process.threads():
                comm = Path(f"/proc/{process.pid}/task/{thread.id}/comm").read_text().strip()
                threads[process.pid, thread.id] = (
                    f"{role} {process.pid} / {comm} +{thread.id - process.pid}",
                    thread.user_time + thread.system_time)
        except (psutil.Error, OSError):
            continue
    return threads


def _role(process: psutil.Process) -> str:
    """A child's part: a sender process holds a TCP connection, an arrival process does not."""
    try:
        return "sender" if process.net_connections("tcp") else "arrivals"
    except psutil.Error:
        return "child"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qps", type=float, default=500)
    parser.add_argument("--duration-ms", type=int, default=12000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("flags", nargs="*", help="more fastload flags, after --")
    args = parser.parse_args()
    print(machine())
    with SchedulerProcess(*SCHEDULER_ARGS) as scheduler, tempfile.TemporaryDirectory() as tmp:
        run = subprocess.Popen(
            [sys.executable, "-m", "fastload", "--scheduler-url", scheduler.address, "--total-qps",
             f"{args.qps:g}", "--duration-ms", str(args.duration_ms), "--processes",
             str(args.processes), "--metrics-csv", f"{tmp}/m.csv", "--output-dir", f"{tmp}/lg",
             "--quiet", *args.flags], stdout=subprocess.DEVNULL)
        root = psutil.Process(run.pid)
        duration_s = args.duration_ms / 1000
        time.sleep(duration_s / 3)
        before, start = thread_cpu_s(root), time.monotonic()
        time.sleep(duration_s / 2)
        after, window_s = thread_cpu_s(root), time.monotonic() - start
        run.wait()
    requests = args.qps * window_s
    by_label: dict[str, float] = defaultdict(float)
    for key, (label, cpu_s) in after.items():
        by_label[label] += cpu_s - before.get(key, (label, 0.0))[1]
    print(f"`{' '.join(sys.argv)}`: {window_s:.1f} s window, µs of CPU per request")
    for label, cpu_s in sorted(by_label.items(), key=lambda item: -item[1]):
        if cpu_s > 0:
            print(f"{label:48s} {cpu_s / requests * 1e6:8.1f}")
    print(f"{'total':48s} {sum(by_label.values()) / requests * 1e6:8.1f}")


if __name__ == "__main__":
    main()
