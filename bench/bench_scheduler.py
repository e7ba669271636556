"""Server CPU per request of the reference scheduler under open-loop 602 KB requests.

The scheduler shares this machine's cores with the load generator, so its CPU per request, not
its simulated GPUs, decides whether it can be the bottleneck. Service times are 0 and GPUs many,
so only the serving cost is measured. Run: `python bench/bench_scheduler.py [--seconds 3]`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import grpc
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout, uninstalled

from fastload._pb.scheduler_pb2 import InferRequest, InferResponse  # noqa: E402
from fastload.contract.workload import INPUT_SHAPE  # noqa: E402
from fastload.scheduler.spawn import SchedulerProcess  # noqa: E402

SERVER_ARGS = ("--gpus", "64", "--service-ms", "resnet50=0", "--service-ms", "vit=0")
RESULTS = Path(__file__).resolve().parent / "results" / "scheduler.json"


def request_bytes(field: str) -> bytes:
    """One 1x3x224x224 float32 request, serialized once so the client costs little per send."""
    tensor = np.random.default_rng(0).random(INPUT_SHAPE, dtype=np.float32)
    req = InferRequest(
        tier=1, deadline_ns=time.time_ns() + 3600 * 10**9, model_name="resnet50",
        input_shape=INPUT_SHAPE,
    )
    if field == "raw":
        req.input_tensor_raw = tensor.tobytes()
    else:
        req.input_tensor.extend(tensor.ravel())
    return req.SerializeToString()


def open_loop(
    call: grpc.UnaryUnaryMultiCallable, data: bytes, qps: float, seconds: float
) -> list[tuple[int, grpc.Future, int]]:
    """Send at fixed times regardless of completions; (send_ns, call, done_ns) in send order."""
    sent = []
    start = time.perf_counter()
    for i in range(int(qps * seconds)):
        time.sleep(max(0.0, start + i / qps - time.perf_counter()))
        done_ns: Future[int] = Future()
        send_ns = time.perf_counter_ns()
        future = call.future(data, timeout=30)
        future.add_done_callback(lambda _, d=done_ns: d.set_result(time.perf_counter_ns()))
        sent.append((send_ns, future, done_ns))
    return [(send_ns, future, done_ns.result()) for send_ns, future, done_ns in sent]


def measure(address: str, pid: int, field: str, qps: float, seconds: float) -> dict:
    data = request_bytes(field)
    server = psutil.Process(pid)
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary("/scheduler.SchedulerService/Infer")
        open_loop(call, data, qps, 0.5)  # warm-up: connection, allocator, code paths
        cpu_before = server.cpu_times()
        sent = open_loop(call, data, qps, seconds)
        cpu_after = server.cpu_times()
    ok = [
        (send_ns, done_ns)
        for send_ns, future, done_ns in sent
        if future.exception() is None and InferResponse.FromString(future.result()).success
    ]
    cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    span_s = (max(done_ns for _, done_ns in ok) - sent[0][0]) / 1e9
    latencies_ms = sorted((done_ns - send_ns) / 1e6 for send_ns, done_ns in ok)
    return {
        "field": field,
        "target_qps": qps,
        "sent": len(sent),
        "completed": len(ok),
        "achieved_qps": round(len(ok) / span_s, 1),
        "server_cpu_us_per_request": round(cpu_s / len(ok) * 1e6, 1),
        "server_cpu_percent_of_core": round(cpu_s / span_s * 100, 1),
        "latency_p50_ms": round(statistics.median(latencies_ms), 2),
        "latency_p99_ms": round(latencies_ms[int(0.99 * (len(latencies_ms) - 1))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured send window per run")
    parser.add_argument("--qps", type=float, nargs="+", default=[200, 500])
    args = parser.parse_args()
    rows = []
    with SchedulerProcess(*SERVER_ARGS) as scheduler:
        for field in ("raw", "float"):
            for qps in args.qps:
                rows.append(measure(scheduler.address, scheduler.pid, field, qps, args.seconds))
    print(
        "| tensor field | target QPS | achieved QPS | completed/sent | server CPU µs/req "
        "| server CPU % of a core | p50 ms | p99 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['field']} | {r['target_qps']:g} | {r['achieved_qps']} "
            f"| {r['completed']}/{r['sent']} | {r['server_cpu_us_per_request']} "
            f"| {r['server_cpu_percent_of_core']} | {r['latency_p50_ms']} | {r['latency_p99_ms']} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "grpcio": grpc.__version__},
        "command": " ".join([sys.executable, *sys.argv]),
        "server_args": SERVER_ARGS,
        "seconds": args.seconds,
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
