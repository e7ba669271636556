"""Triton's perf_analyzer on the ladder's target and rates, when its binary is on PATH.

    python bench/perf_analyzer.py --rates 300,500 [--duration-ms 10000]

perf_analyzer is C++ and ships in Triton's SDK container; the PyPI `perf-analyzer` package is a
placeholder, so on a machine without the SDK this prints a note and exits 0. Otherwise it starts
the reference scheduler with the ladder's settings and, per rate, runs
``perf_analyzer -i grpc --request-rate-range R --request-distribution poisson`` with random
1x3x224x224 FP32 inputs for model resnet50, and reports its process CPU per request (rusage of
the child) and the throughput it reports. perf_analyzer has no per-request timestamps, so send
lag and issue CV are not available for it; compare CPU per request and achieved rate with
``runner.py --contenders fastload-kserve,tritonclient,...`` at the same rates.
"""
from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import sys

from fastload.contract.workload import INPUT_SHAPE
from fastload.scheduler.spawn import SchedulerProcess

from harness import SCHEDULER_ARGS
from ladder_stats import fmt

THROUGHPUT = re.compile(r"Throughput:\s*([\d.]+)\s*infer/sec")
REQUEST_COUNT = re.compile(r"Request count:\s*(\d+)")


def run_at(binary: str, target: str, qps: float, duration_ms: int) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [binary, "-m", "resnet50", "-u", target, "-i", "grpc",
         "--shape", "input:" + ",".join(map(str, INPUT_SHAPE)), "--input-data", "random",
         "--request-rate-range", f"{qps:g}", "--request-distribution", "poisson",
         "--measurement-mode", "time_windows", "--measurement-interval", str(duration_ms)],
        capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    throughput = THROUGHPUT.findall(proc.stdout)
    counts = [int(c) for c in REQUEST_COUNT.findall(proc.stdout)]
    return {"target_qps": qps, "returncode": proc.returncode,
            "throughput": float(throughput[-1]) if throughput else None,
            # perf_analyzer also sends during its warm-up windows; its counts cover the
            # measured windows only, so this over-states CPU per request somewhat.
            "cpu_us_per_request": 1e6 * cpu_s / sum(counts) if counts else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="300,500")
    parser.add_argument("--duration-ms", type=int, default=10000)
    args = parser.parse_args()
    binary = shutil.which("perf_analyzer")
    if binary is None:
        print("perf_analyzer: not on PATH (it ships in Triton's SDK container; the PyPI "
              "perf-analyzer package is a placeholder): skipped")
        return 0
    with SchedulerProcess(*SCHEDULER_ARGS) as scheduler:
        print("| target QPS | perf_analyzer throughput | CPU µs/req | exit |\n|---:|---:|---:|---:|")
        for qps in (float(r) for r in args.rates.split(",")):
            row = run_at(binary, scheduler.address, qps, args.duration_ms)
            print(f"| {qps:g} | {fmt(row['throughput'], 1)} | "
                  f"{fmt(row['cpu_us_per_request'], 0)} | {row['returncode']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
