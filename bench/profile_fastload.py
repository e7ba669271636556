"""Where fastload's client CPU per request goes, piece by piece.

    python bench/profile_fastload.py [--qps 500] [--duration-ms 10000] [--fresh-tensors]

Two kinds of numbers, labelled in the output:

in-situ   One real ``fastload.runner.run`` in this process against the reference scheduler,
          with the hot-path functions wrapped in per-thread CPU timers (time.thread_time_ns):
          LoadGen child process (rusage from the moment it is told to go until it is joined),
          the senders' pipe read, Recorder.open/close, encoder, ``future()`` start, done
          callback, completion pipe write, and every thread's CPU from /proc over the test
          window, which also gives what the timers cannot see (gRPC's C threads). The timers
          cost about 2 x the measured per-call overhead per wrapped piece; it is printed.
isolated  The same pieces called in a loop on their own: encode(), ``future()`` start (one call
          in flight at a time), response parse, Recorder.open+close, the child's issue
          record, and LoadGen with an empty callback (bench/client_empty.py, steady CPU).
          Isolated numbers miss cache and scheduling effects of the real run.
"""
from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import psutil

import fastload.arrivals.pipe as fl_pipe
import fastload.runner as fl_runner
from fastload.arrivals.pipe import (ARRIVAL, COMPLETION, KIND_ISSUED, Arrivals, IssuedSample,
                                    Issuer)
from fastload.cli import parse_config
from fastload.dispatch import Dispatcher
from fastload.metrics import Record, Recorder
from fastload.summary import RunStats
from runner import (BENCH_DIR, INFER_METHOD, SCHEDULER_ARGS, STARTUP_DURATION_MS, STARTUP_QPS,
                    connect, machine, read_samples)

thread_ns = time.thread_time_ns


class Timers:
    """Per-piece totals of thread CPU ns and call counts; safe from any thread."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def add(self, piece: str, ns: int) -> None:
        with self._lock:
            self.ns[piece] += ns
            self.calls[piece] += 1

    def wrap(self, piece: str, function, count_faults: bool = False):
        add = self.add
        if count_faults:  # minor page faults inside the call, as a "… page faults" piece
            def usage() -> int:
                return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt

            def timed_with_faults(*args, **kwargs):
                faults, start = usage(), thread_ns()
                try:
                    return function(*args, **kwargs)
                finally:
                    add(piece, thread_ns() - start)
                    add(piece + " page faults", usage() - faults)
            return timed_with_faults

        def timed(*args, **kwargs):
            start = thread_ns()
            try:
                return function(*args, **kwargs)
            finally:
                add(piece, thread_ns() - start)
        return timed


TIMERS = Timers()


class _TimedCall:
    def __init__(self, multicallable) -> None:
        self.future = TIMERS.wrap("sender: gRPC future() start", multicallable.future,
                                  count_faults=True)


def _thread_cpu_ns(pid: int | str = "self") -> dict[int, int]:
    """Every live thread of a process: native id -> CPU ns (schedstat: ns, not 10 ms ticks)."""
    result = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return result
    for tid in tids:
        try:
            result[int(tid)] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return result


def _thread_names() -> dict[int, str]:
    return {t.native_id: t.name for t in threading.enumerate()}


_thread_run = threading.Thread.run


def _timed_thread_run(self: threading.Thread) -> None:
    """Python threads that end inside the test window (gRPC's channel-spin threads, which
    grpcio ends whenever no call is in flight and starts again with the next call) leave
    /proc before the window closes, so each run's own CPU is added up here."""
    kind = "grpc" if _is_grpc_thread(self) else self.name
    start = thread_ns()
    try:
        _thread_run(self)
    finally:
        if WINDOW.open:
            TIMERS.add(f"thread ended: {kind}", thread_ns() - start)
            WINDOW.ended_tids.add(threading.get_native_id())


class Window:
    """CPU of this process and its threads, and the LoadGen child's, over the test window."""

    def __init__(self) -> None:
        self.open = False
        self.start_threads: dict[int, int] = {}
        self.end_threads: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.comms: dict[int, str] = {}
        self.ended_tids: set[int] = set()
        self.start_self_s = self.end_self_s = 0.0
        self.child_cpu_at_go_s = 0.0
        self.child_pid = 0
        self.child_threads_at_go: dict[int, int] = {}
        self.child_threads_last: dict[int, int] = {}

    @staticmethod
    def self_cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def watch_child(self, pid: int) -> None:
        """Poll the LoadGen child's threads until it exits; the last poll misses <= 20 ms."""
        self.child_pid = pid
        self.child_threads_at_go = _thread_cpu_ns(pid)
        self.child_threads_last = dict(self.child_threads_at_go)

        def poll() -> None:
            while True:
                threads = _thread_cpu_ns(pid)
                if not threads:
                    return
                self.child_threads_last.update(threads)  # keeps threads that have ended
                time.sleep(0.02)
        threading.Thread(target=poll, name="profile-child-poll", daemon=True).start()


WINDOW = Window()


class TimedIssuer(Issuer):
    def go(self, go_mono_ns: int) -> None:
        times = psutil.Process(self.process.pid).cpu_times()
        WINDOW.child_cpu_at_go_s += times.user + times.system
        WINDOW.watch_child(self.process.pid)
        super().go(go_mono_ns)

    def complete(self, sample_id: int) -> None:
        start = thread_ns()
        super().complete(sample_id)
        TIMERS.add("done: completion pipe write (Issuer.complete)", thread_ns() - start)


class TimedArrivals(Arrivals):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.receive = TIMERS.wrap("sender: pipe read + unpack (Arrivals.receive)", self.receive)


class TimedRecorder(Recorder):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.open = TIMERS.wrap("sender: Recorder.open", self.open)
        self.close = TIMERS.wrap("done: Recorder.close", self.close)


class TimedDispatcher(Dispatcher):
    def __init__(self, channel, target, *args, **kwargs) -> None:
        super().__init__(channel, target, *args, **kwargs)
        self._encoders = [{model: TIMERS.wrap("sender: encode()", encode, count_faults=True)
                           for model, encode in encoders.items()}
                          for encoders in self._encoders]
        self._infer = _TimedCall(self._infer)

    def serve(self, arrivals, recorder, stop) -> bool:
        WINDOW.start_threads = _thread_cpu_ns()
        WINDOW.start_self_s = Window.self_cpu_s()
        WINDOW.open = True
        start = thread_ns()
        try:
            return super().serve(arrivals, recorder, stop)
        finally:
            TIMERS.add("main: serve (all)", thread_ns() - start)

    def _send_arrivals(self, arrivals, encoders) -> None:
        start = thread_ns()
        try:
            super()._send_arrivals(arrivals, encoders)
        finally:
            TIMERS.add("sender: loop (all)", thread_ns() - start)

    def _send(self, issuer, record, encode) -> None:
        start = thread_ns()
        super()._send(issuer, record, encode)
        TIMERS.add("sender: _send (all)", thread_ns() - start)

    def _on_done(self, issuer, record, call) -> None:
        start = thread_ns()
        super()._on_done(issuer, record, call)
        TIMERS.add("done: _on_done (all)", thread_ns() - start)

    def drain(self, timeout_s: float) -> bool:
        drained = super().drain(timeout_s)
        WINDOW.names = _thread_names()
        WINDOW.end_threads = _thread_cpu_ns()
        WINDOW.comms = {tid: _comm(tid) for tid in WINDOW.end_threads}
        WINDOW.end_self_s = Window.self_cpu_s()
        WINDOW.open = False
        return drained


def fastload_argv(target: str, qps: float, duration_ms: int, seed: int, out_dir: Path,
                  fresh: bool) -> list[str]:
    return ["--scheduler-url", target, "--total-qps", f"{qps:g}", "--duration-ms",
            str(duration_ms), "--min-query-count", "1", "--seed", str(seed),
            "--metrics-csv", str(out_dir / "metrics.csv"), "--output-dir", str(out_dir / "lg"),
            *(["--fresh-tensors"] if fresh else [])]


def in_situ(target: str, args: argparse.Namespace, out_dir: Path) -> tuple[list, int, float]:
    """One instrumented fastload run; rows of (piece, µs/request), completed count, timer cost."""
    fl_runner.Dispatcher, fl_runner.Recorder, fl_runner.Arrivals, fl_pipe.Issuer = \
        TimedDispatcher, TimedRecorder, TimedArrivals, TimedIssuer
    threading.Thread.run = _timed_thread_run
    # A short run first, so lazy imports and first-call costs fall outside the measured one.
    with redirect_stdout(sys.stderr):
        fl_runner.run(parse_config(fastload_argv(target, 100, 300, args.seed, out_dir / "warm",
                                                 args.fresh_tensors)))
    TIMERS.ns.clear(), TIMERS.calls.clear()
    WINDOW.child_cpu_at_go_s = 0.0
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with redirect_stdout(sys.stderr):
        code = fl_runner.run(parse_config(fastload_argv(target, args.qps, args.duration_ms,
                                                        args.seed, out_dir / "run",
                                                        args.fresh_tensors)))
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    samples = read_samples(out_dir / "run" / "metrics.csv")
    completed = sum(s == "OK" for s in samples["status"])
    print(f"fastload exit {code}: {completed} of {len(samples['status'])} requests OK",
          file=sys.stderr)
    child_total_s = (children_after.ru_utime + children_after.ru_stime
                     - children_before.ru_utime - children_before.ru_stime)
    per_ns = 1 / 1e3 / completed  # ns of CPU over the run -> µs per completed request

    def us(piece: str) -> float:
        return TIMERS.ns.get(piece, 0) * per_ns

    rows = []
    child_us = (child_total_s - WINDOW.child_cpu_at_go_s) * 1e6 / completed
    rows.append(("LoadGen child process, from go to exit", child_us, "in-situ rusage"))
    child_main, child_first_new, child_other = child_threads_us(completed)
    rows.append(("  main thread: LoadGen issue loop + issue callback (draw, pack, pipe write)",
                 child_main, "in-situ /proc poll"))
    rows.append(("  completion thread (pipe read, QuerySamplesComplete; first thread started "
                 "after go)", child_first_new, "in-situ /proc poll"))
    rows.append(("  LoadGen's other threads", child_other, "in-situ /proc poll"))

    live = {tid: WINDOW.end_threads[tid] - WINDOW.start_threads.get(tid, 0)
            for tid in WINDOW.end_threads if tid not in WINDOW.ended_tids}
    names = WINDOW.names
    main_tid = threading.main_thread().native_id
    main_us = live.pop(main_tid, 0) * per_ns
    rows.append(("parent main thread (waits for the senders)", main_us, "in-situ /proc"))
    senders_us = sum(ns for tid, ns in live.items()
                     if names.get(tid, "").startswith("fastload-send")) * per_ns
    rows.append(("senders (fastload-send_*)", senders_us, "in-situ /proc"))
    rows.append(("  pipe read + unpack (Arrivals.receive; blocked time costs no CPU)",
                 us("sender: pipe read + unpack (Arrivals.receive)"), "in-situ timer"))
    rows.append(("  Recorder.open", us("sender: Recorder.open"), "in-situ timer"))
    rows.append(("  encode() (minor page faults per call: "
                 f"{_faults('sender: encode()'):.1f})", us("sender: encode()"),
                 "in-situ timer"))
    rows.append(("  gRPC future() start (minor page faults per call: "
                 f"{_faults('sender: gRPC future() start'):.1f})",
                 us("sender: gRPC future() start"), "in-situ timer"))
    rows.append(("  rest of _send (clock, add_done_callback, partial, watchdog queue)",
                 us("sender: _send (all)") - us("sender: encode()")
                 - us("sender: gRPC future() start"), "in-situ timer"))
    rows.append(("  rest of the sender loop (in-flight slot, loop)",
                 us("sender: loop (all)") - us("sender: _send (all)")
                 - us("sender: pipe read + unpack (Arrivals.receive)")
                 - us("sender: Recorder.open"), "in-situ timer"))
    spin_starts = TIMERS.calls.get("thread ended: grpc", 0)
    spin_us = us("thread ended: grpc") + sum(
        ns for tid, ns in live.items() if _is_spin_thread(tid)) * per_ns
    rows.append((f"gRPC's Python threads: channel spin, where done callbacks run "
                 f"({spin_starts / completed:.2f} ended and restarted per request)", spin_us,
                 "in-situ run timer + /proc"))
    rows.append(("  done callback _on_done: parse response, Recorder.close, completion",
                 us("done: _on_done (all)"), "in-situ timer"))
    rows.append(("    of which Recorder.close", us("done: Recorder.close"), "in-situ timer"))
    rows.append(("    of which completion pipe write (Issuer.complete)",
                 us("done: completion pipe write (Issuer.complete)"), "in-situ timer"))
    writer_us = sum(ns for tid, ns in live.items() if names.get(tid) == "fastload-writer") \
        * per_ns
    rows.append(("CSV writer thread (rows, summary statistics)", writer_us, "in-situ /proc"))
    profiler_us = sum(ns for tid, ns in live.items() if names.get(tid) == "profile-child-poll") \
        * per_ns
    c_threads = {tid: ns for tid, ns in live.items() if tid not in names}
    c_names = sorted({WINDOW.comms.get(tid, "?") for tid in c_threads})
    rows.append((f"gRPC C-core threads ({', '.join(c_names)})",
                 sum(c_threads.values()) * per_ns, "in-situ /proc"))
    parent_us = (WINDOW.end_self_s - WINDOW.start_self_s) * 1e6 / completed - profiler_us
    accounted = main_us + senders_us + spin_us + writer_us + sum(c_threads.values()) * per_ns
    rows.append(("parent, rest (other threads, thread creation and exit, rounding)",
                 parent_us - accounted, "in-situ rusage - the above"))
    rows.append(("parent process total over the test window (profiler's poll thread removed)",
                 parent_us, "in-situ rusage"))
    rows.append(("fastload total: child + parent", child_us + parent_us, "in-situ rusage"))
    return rows, completed, timer_overhead_us()


def _faults(piece: str) -> float:
    calls = TIMERS.calls.get(piece, 0)
    return TIMERS.ns.get(piece + " page faults", 0) / calls if calls else 0.0


def _is_grpc_thread(thread: threading.Thread | None) -> bool:
    """grpcio starts its Python threads (channel spin, connectivity polling) through
    cygrpc.ForkManagedThread, whose target is its context wrapper ``_run``."""
    return getattr(getattr(thread, "_target", None), "__name__", "") == "_run"


def _is_spin_thread(tid: int) -> bool:
    return _is_grpc_thread(next((t for t in threading.enumerate() if t.native_id == tid), None))


def _comm(tid: int) -> str:
    try:
        return Path(f"/proc/self/task/{tid}/comm").read_text().strip()
    except OSError:
        return "ended"


def child_threads_us(completed: int) -> tuple[float, float, float]:
    """The child's main thread, its first thread started after go, and the rest, µs/request."""
    at_go, last = WINDOW.child_threads_at_go, WINDOW.child_threads_last
    pid = WINDOW.child_pid
    new = sorted(tid for tid in last if tid not in at_go)
    main = (last.get(pid, 0) - at_go.get(pid, 0)) / 1e3 / completed
    first = (last[new[0]] if new else 0) / 1e3 / completed
    other = sum(last[tid] - at_go.get(tid, 0) for tid in last
                if tid != pid and tid not in new[:1]) / 1e3 / completed
    return main, first, other


def timer_overhead_us() -> float:
    """Cost of one wrapped call around a no-op: what each in-situ timer adds."""
    noop = TIMERS.wrap("overhead", lambda: None)
    start = time.perf_counter_ns()
    for _ in range(20000):
        noop()
    return (time.perf_counter_ns() - start) / 20000 / 1e3


def _median_us(function, repeats: int, clock=time.perf_counter_ns) -> float:
    timings = []
    for _ in range(repeats):
        start = clock()
        function()
        timings.append(clock() - start)
    return statistics.median(timings) / 1e3


def isolated(target: str, args: argparse.Namespace, out_dir: Path) -> list:
    from fastload._encode import RequestEncoder
    from fastload._pb.scheduler_pb2 import InferResponse
    from fastload.workload import INPUT_SHAPE, builtin_workload

    rows = []
    for fresh in (False, True):
        encoder = RequestEncoder(INPUT_SHAPE, fresh=fresh, seed=args.seed)
        rows.append((f"encoder encode() (fresh={fresh})",
                     _median_us(lambda: encoder.encode(1, time.time_ns(), "resnet50"), 2000),
                     "isolated wall, median"))
    payload = RequestEncoder(INPUT_SHAPE, seed=args.seed).encode(1, time.time_ns() + 3600 * 10**9,
                                                                 "resnet50")
    channel = connect(target)
    infer = channel.unary_unary(INFER_METHOD, _registered_method=True)
    start_cpu, start_wall, response = [], [], b""
    for _ in range(500):
        wall, cpu = time.perf_counter_ns(), thread_ns()
        call = infer.future(payload, timeout=5)
        start_cpu.append(thread_ns() - cpu)
        start_wall.append(time.perf_counter_ns() - wall)
        response = call.result()
    channel.close()
    rows.append(("gRPC future() start, one call in flight",
                 statistics.median(start_cpu) / 1e3, "isolated thread CPU, median"))
    rows.append(("gRPC future() start, one call in flight (wall)",
                 statistics.median(start_wall) / 1e3, "isolated wall, median"))
    rows.append(("InferResponse.FromString(response).success",
                 _median_us(lambda: InferResponse.FromString(response).success, 20000),
                 "isolated wall, median"))
    cls = builtin_workload("balanced").classes[0]
    stats = RunStats([cls])
    with open(os.devnull, "w") as devnull:
        recorder = Recorder(devnull, stats.add)
        issuer = SimpleNamespace(plan=SimpleNamespace(label="all"))
        sample_ids = itertools.count()

        def open_close() -> None:
            sample = IssuedSample(next(sample_ids), issuer, 1, cls, "resnet50", 1, 1)
            recorder.close(recorder.open(sample), 2, "OK", True)
        rows.append(("Recorder.open + Recorder.close", _median_us(open_close, 20000),
                     "isolated wall, median"))
        records = [Record(IssuedSample(i, issuer, 1, cls, "resnet50", 1, 1)) for i in range(1000)]
        for record in records:
            record.status, record.done_mono_ns, record.success = "OK", 5_000_000, True

        def write_batch() -> None:
            devnull.write("".join([record.csv_line("1,urgent,resnet50") for record in records]))
            stats.add(records)
        rows.append(("writer: CSV row + statistics, per record (batches of 1000)",
                     _median_us(write_batch, 20) / len(records), "isolated wall, median"))
        recorder.finish()
    read_fd, write_fd = os.pipe()

    def drain_pipe() -> None:
        while os.read(read_fd, 65536):
            pass
    drain = threading.Thread(target=drain_pipe, daemon=True)
    drain.start()
    issue_record = lambda: os.write(  # noqa: E731 - the child's issue_query body, one sample
        write_fd, b"".join(ARRIVAL.pack(i, i, 1, 2, 0, KIND_ISSUED, 0, 0) for i in (7,)))
    rows.append(("child's issue record: pack + pipe write (one sample)",
                 _median_us(issue_record, 10000), "isolated wall, median"))
    rows.append(("completion: pipe write of one 8-byte id",
                 _median_us(lambda: os.write(write_fd, COMPLETION.pack(7)), 10000),
                 "isolated wall, median"))
    os.close(write_fd)
    drain.join()
    os.close(read_fd)
    rows.append(("LoadGen alone, empty callback (bench/client_empty.py), same rate and seed",
                 steady_client_us("client_empty.py", target, args, out_dir),
                 "isolated process, rusage, steady"))
    child_us, parent_us = child_protocol_us(args, out_dir)
    rows.append(("fastload's LoadGen child, parent completing each sample at once (no gRPC)",
                 child_us, "isolated process, rusage, steady"))
    rows.append(("  that parent: pipe read, unpack, completion write", parent_us,
                 "isolated thread CPU"))
    rows.append(("for scale: the floor client (bench/client_floor.py), same rate and seed",
                 steady_client_us("client_floor.py", target, args, out_dir),
                 "isolated process, rusage, steady"))
    return rows


def child_protocol_us(args: argparse.Namespace, out_dir: Path) -> tuple[float, float]:
    """fastload's own LoadGen child (fastload.arrivals) with a parent that completes every
    sample the moment it arrives, no gRPC: (child, parent) CPU µs per sample, start-up of the
    child excluded. The child's cost minus LoadGen-alone's is the pipe protocol's."""
    import multiprocessing

    from fastload.arrivals.loadgen import ArrivalPlan, run_loadgen
    from fastload.workload import builtin_workload
    from runner import TARGET_LATENCY_NS

    plan = ArrivalPlan("all", args.qps, TARGET_LATENCY_NS, args.duration_ms, 1, args.seed,
                       str(out_dir / "protocol"), builtin_workload("balanced").classes)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    arrivals = Arrivals([plan], run_loadgen, multiprocessing.get_context("spawn"))
    arrivals.wait_ready(60)
    issuer = arrivals.issuers[0]
    times = psutil.Process(issuer.process.pid).cpu_times()
    startup_s = times.user + times.system
    parent_start = thread_ns()
    arrivals.go(time.monotonic_ns())
    samples = 0
    while sample := arrivals.receive():
        issuer.complete(sample.loadgen_id)
        samples += 1
    parent_ns = thread_ns() - parent_start
    arrivals.stop()
    arrivals.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime - startup_s
    return child_s * 1e6 / samples, parent_ns / 1e3 / samples


def steady_client_us(script: str, target: str, args: argparse.Namespace, out_dir: Path) -> float:
    """Steady CPU per completed request of a bench client: a full run minus a one-request run."""
    def cpu_s(qps: float, duration_ms: int, name: str) -> tuple[float, int]:
        out = out_dir / f"{name}.csv"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, str(BENCH_DIR / script), "--target", target,
                        "--qps", f"{qps:g}", "--duration-ms", str(duration_ms), "--seed",
                        str(args.seed), "--out", str(out)], check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                sum(s == "OK" for s in read_samples(out)["status"]))

    startup_s, _ = cpu_s(STARTUP_QPS, STARTUP_DURATION_MS, f"{script}-startup")
    total_s, completed = cpu_s(args.qps, args.duration_ms, script)
    return (total_s - startup_s) * 1e6 / completed


def print_table(title: str, rows: list) -> None:
    print(f"\n{title}\n\n| piece | µs / request | how measured |\n|---|---:|---|")
    for piece, value, how in rows:
        print(f"| {piece} | {value:,.1f} | {how} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qps", type=float, default=500.0, help="target QPS (default 500)")
    parser.add_argument("--duration-ms", type=int, default=10000, help="default 10000")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fresh-tensors", action="store_true", help="profile --fresh-tensors")
    args = parser.parse_args()
    from fastload.scheduler.spawn import SchedulerProcess

    info = machine()
    with tempfile.TemporaryDirectory(prefix="fastload-profile-") as tmp, \
            SchedulerProcess(*SCHEDULER_ARGS) as scheduler:
        out_dir = Path(tmp)
        situ_rows, completed, overhead_us = in_situ(scheduler.address, args, out_dir)
        iso_rows = isolated(scheduler.address, args, out_dir)
    print(f"{info['nproc']} CPUs, {info['cpu_model']}, Python {info['python']}, grpcio "
          f"{info['grpcio']}; fastload {info['git']}\n`{' '.join([Path(sys.executable).name, *sys.argv])}`: "
          f"{args.qps:g} QPS for {args.duration_ms} ms, {completed} requests completed"
          f"{', --fresh-tensors' if args.fresh_tensors else ''}")
    print_table("In-situ, one fastload run (timers add about "
                f"{overhead_us:.1f} µs per wrapped call; thread CPU from /proc schedstat, ns)",
                situ_rows)
    print_table("Isolated, each piece on its own", iso_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
