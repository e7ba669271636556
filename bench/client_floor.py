"""The floor: the least a Python LoadGen client can do per request over grpcio.

LoadGen Server scenario (ConstructFastSUT) whose callback resends one constant, pre-built
1x3x224x224 request (tensor as bytes, field 6) through a generic unary-unary call with no
serializer, ``.future(payload, timeout=5)``, and completes the sample towards LoadGen from the
future's done callback. No encoding, no thread hand-off, no response parsing: what is left is
LoadGen, grpcio and three timestamps per request.
"""
from __future__ import annotations

import time
from time import monotonic_ns

import grpc
import mlperf_loadgen as lg
import numpy as np

from fastload._pb.scheduler_pb2 import InferRequest
from fastload.contract.workload import INPUT_SHAPE

from harness import (
    INFER_METHOD,
    client_args,
    connect,
    run_loadgen,
    with_input_shape,
    write_samples,
)

TIMEOUT_S = 5.0


def constant_request(seed: int, shape: tuple[int, ...] = INPUT_SHAPE) -> bytes:
    """One resnet50 request whose deadline is an hour away, so the scheduler always serves it."""
    tensor = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return InferRequest(tier=1, deadline_ns=time.time_ns() + 3600 * 10**9, model_name="resnet50",
                        input_tensor_raw=tensor.tobytes(), input_shape=shape).SerializeToString()


def main() -> None:
    args = client_args(__doc__, with_input_shape)
    channel = connect(args.target)
    start_call = channel.unary_unary(INFER_METHOD).future
    payload = constant_request(args.seed, args.input_shape)
    done: list[tuple[int, int, int, grpc.StatusCode]] = []
    record, complete, response = done.append, lg.QuerySamplesComplete, lg.QuerySampleResponse

    def issue_query(sample_ids: list[int], _indices: list[int]) -> None:
        issued_ns = monotonic_ns()
        for sample_id in sample_ids:
            sent_ns = monotonic_ns()
            call = start_call(payload, timeout=TIMEOUT_S)

            def on_done(call: grpc.Future, sample_id: int = sample_id, sent_ns: int = sent_ns) -> None:
                record((issued_ns, sent_ns, monotonic_ns(), call.code()))
                complete([response(sample_id, 0, 0)])

            call.add_done_callback(on_done)

    sut = lg.ConstructFastSUT(issue_query, lambda: None)
    run_loadgen(sut, args)
    lg.DestroyFastSUT(sut)
    channel.close()
    write_samples(args.out, ((issued, sent - issued, finished - issued, code.name)
                             for issued, sent, finished, code in done))


if __name__ == "__main__":
    main()
