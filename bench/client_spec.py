"""The spec's client, as the spec writes its SUT, for one class (tier 1, normal SLO).

LoadGen Server scenario, ``lg.ConstructSUT(issue_query, flush)``; ``issue_query`` starts a
thread per call which, per sample, draws the model, builds a fresh numpy tensor, turns it into a
Python list for the repeated float field, blocks on ``stub.Infer(timeout=5.0)``, records the
outcome and completes the sample. The spec runs nine of these (one per class) in one process,
which aborts (LoadGen's issue controller is a process singleton), so the benchmark runs one class
at the full rate. Send lag is taken just before ``stub.Infer``, so it leaves out the protobuf
serialization inside it.
"""
from __future__ import annotations

import random
import threading
import time
from time import monotonic_ns

import grpc
import mlperf_loadgen as lg
import numpy

from fastload._pb.scheduler_pb2 import InferRequest
from fastload._pb.scheduler_pb2_grpc import SchedulerServiceStub
from fastload.contract.workload import MODEL_FOR_SLO, SLO_LATENCY_NS

from harness import client_args, connect, run_loadgen, write_samples

TIER, SLO = 1, "normal"


def main() -> None:
    args = client_args(__doc__)
    random.seed(args.seed)
    numpy.random.seed(args.seed % 2**32)
    stub = SchedulerServiceStub(connect(args.target))
    models = [model for model, _ in MODEL_FOR_SLO[SLO]]
    weights = [weight for _, weight in MODEL_FOR_SLO[SLO]]
    slo_ns = SLO_LATENCY_NS[SLO]
    results: list[tuple[int, int, int, str]] = []
    results_lock = threading.Lock()

    def process_queries(query_samples, issued_ns: int) -> None:
        for query_sample in query_samples:
            model = random.choices(models, weights=weights)[0]
            tensor = numpy.random.rand(1, 3, 224, 224).astype(numpy.float32)
            deadline_ns = time.time_ns() + slo_ns
            request = InferRequest(tier=TIER, deadline_ns=deadline_ns, model_name=model,
                                   input_tensor=tensor.flatten().tolist(),
                                   input_shape=[1, 3, 224, 224])
            sent_ns = monotonic_ns()
            try:
                stub.Infer(request, timeout=5.0)
                status = "OK"
            except grpc.RpcError as exc:
                status = exc.code().name
            finished_ns = monotonic_ns()
            with results_lock:
                results.append((issued_ns, sent_ns - issued_ns, finished_ns - issued_ns, status))
            lg.QuerySamplesComplete([lg.QuerySampleResponse(query_sample.id, 0, 0)])

    def issue_query(query_samples) -> None:
        threading.Thread(target=process_queries, args=(query_samples, monotonic_ns())).start()

    sut = lg.ConstructSUT(issue_query, lambda: None)
    run_loadgen(sut, args)
    lg.DestroySUT(sut)
    write_samples(args.out, results)


if __name__ == "__main__":
    main()
