"""Per-request preparation cost of one 1x3x224x224 InferRequest, spec path vs fastload encoder.

    python bench/bench_encode.py [--repeat N] [--json PATH]

Each contender is a zero-argument callable that returns one request's wire bytes, as a client
would build it right before the gRPC call; every repeat times a batch of calls sized to take
about --seconds, and the table reports the median over repeats in microseconds per request.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from fastload._pb.scheduler_pb2 import InferRequest
from fastload.targets._encode_scheduler import FIELD_FLOAT, FIELD_RAW, RequestEncoder

SHAPE = (1, 3, 224, 224)
MODEL_NAME = "resnet50"
SLO_NS = 50_000_000
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "encode.json"

Prepare = Callable[[], bytes]


def spec_float_list() -> bytes:
    """The spec's client: numpy → Python list → repeated float field 4."""
    tensor = np.random.rand(*SHAPE).astype(np.float32)
    return InferRequest(tier=1, deadline_ns=time.time_ns() + SLO_NS, model_name=MODEL_NAME,
                        input_tensor=tensor.flatten().tolist(),
                        input_shape=SHAPE).SerializeToString()


def protobuf_raw_bytes() -> bytes:
    """The same protobuf class, but the tensor as bytes in field 6: no list in between."""
    tensor = np.random.rand(*SHAPE).astype(np.float32)
    return InferRequest(tier=1, deadline_ns=time.time_ns() + SLO_NS, model_name=MODEL_NAME,
                        input_tensor_raw=tensor.tobytes(),
                        input_shape=SHAPE).SerializeToString()


def fastload(**options: object) -> Prepare:
    encode = RequestEncoder(SHAPE, **options).encode
    return lambda: encode(1, time.time_ns() + SLO_NS, MODEL_NAME)


CONTENDERS: dict[str, Prepare] = {
    "spec: rand → tolist → field 4": spec_float_list,
    "protobuf: rand → tobytes → field 6": protobuf_raw_bytes,
    "fastload default (field 6)": fastload(tensor_field=FIELD_RAW),
    "fastload field 4": fastload(tensor_field=FIELD_FLOAT),
    "fastload fresh=True (field 6)": fastload(fresh=True),
}


def per_request_us(prepare: Prepare, repeat: int, seconds: float) -> list[float]:
    """Microseconds per request for each of ``repeat`` batches of about ``seconds`` each."""
    start = time.perf_counter()
    prepare()
    batch = max(3, int(seconds / max(time.perf_counter() - start, 1e-7)))
    timings = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(batch):
            prepare()
        timings.append((time.perf_counter_ns() - start) / batch / 1000)
    return timings


def machine() -> dict[str, object]:
    cpu_model = next((line.split(":", 1)[1].strip()
                      for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor() or "unknown")
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu_model,
            "python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="batches per contender")
    parser.add_argument("--seconds", type=float, default=0.3, help="target time per batch")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args()
    if args.repeat < 1 or args.seconds <= 0:
        parser.error(f"--repeat must be >= 1 and --seconds > 0, got {args.repeat}, "
                     f"{args.seconds}")

    results = []
    for name, prepare in CONTENDERS.items():
        timings = per_request_us(prepare, args.repeat, args.seconds)
        results.append({"contender": name, "median_us": statistics.median(timings),
                        "repeats_us": timings})
    spec_us = results[0]["median_us"]
    for result in results:
        result["speedup_vs_spec"] = spec_us / result["median_us"]

    info = machine()
    print(f"{info['nproc']} CPUs, {info['cpu_model']}, Python {info['python']}; "
          f"shape {SHAPE}, median of {args.repeat} batches\n")
    print("| contender | µs / request | speed-up vs spec |")
    print("|---|---:|---:|")
    for result in results:
        print(f"| {result['contender']} | {result['median_us']:,.1f} | "
              f"{result['speedup_vs_spec']:,.1f}× |")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "command": sys.argv, "shape": SHAPE,
                                     "results": results}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
