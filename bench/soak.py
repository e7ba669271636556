"""Soak: one long fastload run, with its memory and CPU per request reported as it goes.

    python bench/soak.py --minutes 10 --qps 500                    # docs/performance.md's soak figures
    python bench/soak.py --minutes 1 --qps 1000 --interval-s 10 --shape 1,16

Starts the reference scheduler (the ladder's settings: 64 simulated GPUs, 0 ms service, so it
never limits the rate), runs ``python -m fastload`` against it and samples, every interval:
rows on disk (the CSV streams, so this is what a SIGKILL would leave), the fastload process's RSS
and its LoadGen child's, and the CPU of both over the rows completed in that interval. Growth
per request is measured from the first sample (after start-up and the first interval's warm-up:
encoders built, gRPC buffers grown, the watchdog's window filled) to the last.
Not part of CI: it takes as long as you ask.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from fastload.contract.workload import builtin_workload
from fastload.scheduler.spawn import SchedulerProcess

from harness import BENCH_DIR, REPO_ROOT, SCHEDULER_ARGS, machine


@dataclass
class Sample:
    elapsed_s: float
    rows: int
    parent_rss_bytes: int
    loadgen_rss_bytes: int
    parent_cpu_s: float
    loadgen_cpu_s: float


class CsvRows:
    """Counts the rows of a growing CSV by reading only what was appended since last time."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._newlines = 0

    def count(self) -> int:
        try:
            with open(self._path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return 0
        self._offset += len(chunk)
        self._newlines += chunk.count(b"\n")
        return max(0, self._newlines - 1)  # the header


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def take_sample(parent: psutil.Process, rows: CsvRows, started: float) -> Sample | None:
    try:
        children = parent.children()
        return Sample(
            elapsed_s=time.monotonic() - started, rows=rows.count(),
            parent_rss_bytes=parent.memory_info().rss,
            loadgen_rss_bytes=sum(c.memory_info().rss for c in children),
            parent_cpu_s=_cpu_s(parent), loadgen_cpu_s=sum(_cpu_s(c) for c in children),
        )
    except psutil.NoSuchProcess:
        return None


def workload_file(shape: tuple[int, ...], directory: Path) -> Path:
    """The balanced mix with every model's input shape replaced."""
    workload = builtin_workload("balanced")
    path = directory / "soak_workload.json"
    path.write_text(json.dumps({
        "name": f"balanced_{'x'.join(map(str, shape))}",
        "models": {m: {"shape": list(shape)} for m in workload.model_shapes},
        "classes": [{"tier": c.tier, "slo": c.slo, "fraction": c.fraction,
                     "models": dict(c.models)} for c in workload.classes],
    }))
    return path


def report_line(previous: Sample, sample: Sample, first: Sample) -> str:
    done = sample.rows - previous.rows
    cpu_s = (sample.parent_cpu_s + sample.loadgen_cpu_s
             - previous.parent_cpu_s - previous.loadgen_cpu_s)
    since = sample.rows - first.rows
    growth = ((sample.parent_rss_bytes - first.parent_rss_bytes) / since
              if since > 0 else float("nan"))
    return (f"{sample.elapsed_s:7.0f} s  rows {sample.rows:>9,}  "
            f"{done / max(sample.elapsed_s - previous.elapsed_s, 1e-9):7.1f} QPS  "
            f"RSS fastload {sample.parent_rss_bytes / 2**20:6.1f} MiB, LoadGen "
            f"{sample.loadgen_rss_bytes / 2**20:6.1f} MiB  "
            f"growth {growth:7.1f} B/request  "
            f"CPU {cpu_s * 1e6 / done if done else float('nan'):6.0f} µs/request")


def soak(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="fastload-soak-") as tmp, \
            SchedulerProcess(*SCHEDULER_ARGS) as scheduler:
        tmp_dir = Path(tmp)
        csv_path = tmp_dir / "metrics.csv"
        argv = [sys.executable, "-m", "fastload", "--scheduler-url", scheduler.address,
                "--total-qps", f"{args.qps:g}", "--duration-ms", str(int(args.minutes * 60000)),
                "--min-query-count", "1", "--seed", str(args.seed),
                "--metrics-csv", str(csv_path), "--output-dir", str(tmp_dir / "loadgen")]
        if args.shape:
            argv += ["--workload-file", str(workload_file(args.shape, tmp_dir))]
        print(f"soak: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        parent, rows, started = psutil.Process(proc.pid), CsvRows(csv_path), time.monotonic()
        samples: list[Sample] = []
        while proc.poll() is None:
            time.sleep(args.interval_s - (time.monotonic() - started) % args.interval_s)
            sample = take_sample(parent, rows, started)
            if sample is None or proc.poll() is not None:
                break
            samples.append(sample)
            if len(samples) > 1:
                print(report_line(samples[-2], sample, samples[0]), flush=True)
        stdout, stderr = proc.communicate()
        total_rows = rows.count()
        scheduler_stats = scheduler.stop(signal.SIGINT).stdout.strip()
    print(stdout.strip())
    if proc.returncode not in (0, 1):
        print(stderr.strip(), file=sys.stderr)
    first, last = samples[0], samples[-1]
    requests = last.rows - first.rows
    result = {
        "machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "qps": args.qps, "minutes": args.minutes, "shape": args.shape or "workload default",
        "exit_code": proc.returncode, "rows": total_rows, "scheduler_stats": scheduler_stats,
        "measured_from_s": first.elapsed_s, "measured_to_s": last.elapsed_s,
        "parent_rss_growth_bytes_per_request": (last.parent_rss_bytes
                                                - first.parent_rss_bytes) / requests,
        "loadgen_rss_growth_bytes_per_request": (last.loadgen_rss_bytes
                                                 - first.loadgen_rss_bytes) / requests,
        "cpu_us_per_request": (last.parent_cpu_s + last.loadgen_cpu_s - first.parent_cpu_s
                               - first.loadgen_cpu_s) * 1e6 / requests,
        "samples": [asdict(s) for s in samples],
    }
    print(f"\nend state: exit {proc.returncode}, {total_rows:,} rows; from "
          f"{first.elapsed_s:.0f} s to {last.elapsed_s:.0f} s ({requests:,} requests): RSS growth "
          f"{result['parent_rss_growth_bytes_per_request']:.1f} B/request in fastload, "
          f"{result['loadgen_rss_growth_bytes_per_request']:.1f} B/request in its LoadGen "
          f"process; client CPU {result['cpu_us_per_request']:.0f} µs/request; {scheduler_stats}")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="run length (default 10)")
    parser.add_argument("--qps", type=float, default=500.0, help="total rate (default 500)")
    parser.add_argument("--interval-s", type=float, default=60.0,
                        help="seconds between report lines (default 60)")
    parser.add_argument("--shape", type=lambda t: tuple(int(d) for d in t.split(",")),
                        help="input shape of every model, e.g. 1,16 (default 1,3,224,224)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "soak.json",
                        help="where the JSON result goes (default bench/results/soak.json)")
    args = parser.parse_args(argv)
    if args.minutes * 60 < 2 * args.interval_s or args.qps <= 0:
        parser.error("need --minutes covering at least two intervals and --qps > 0")
    return args


def main() -> int:
    args = parse_args()
    result = soak(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
