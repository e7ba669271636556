"""tritonclient, the way its docs show: one ``async_infer`` per LoadGen sample over KServe v2.

LoadGen Server scenario (ConstructFastSUT); per sample the callback builds an ``InferInput``
(name, shape, "FP32"), fills it with ``set_data_from_numpy`` and calls
``InferenceServerClient.async_infer`` with the request parameters fastload sends too
(``priority`` = tier 1, ``timeout`` = µs to the sample's deadline); the result callback records
the outcome and completes the sample. The tensor is a fresh ``np.random.rand(...)`` per request,
as a client sending unique inputs would do, or with ``--reuse-tensor`` one array made at start.
Needs ``tritonclient[grpc]`` (protobuf < 7): see bench/README.md.
"""
from __future__ import annotations

from time import monotonic_ns

import mlperf_loadgen as lg
import numpy as np
import tritonclient.grpc as triton

from fastload.contract.workload import INPUT_SHAPE, SLO_LATENCY_NS

from harness import client_args, run_loadgen, write_samples

MODEL, INPUT_NAME, TIER = "resnet50", "input", 1
SLO_NS = SLO_LATENCY_NS["normal"]
TIMEOUT_S = 5.0


def main() -> None:
    args = client_args(__doc__, extra=lambda p: p.add_argument(
        "--reuse-tensor", action="store_true", help="send one numpy tensor made at start"))
    client = triton.InferenceServerClient(args.target)
    if not client.is_model_ready(MODEL):
        raise SystemExit(f"model {MODEL} is not ready at {args.target}")
    rng = np.random.default_rng(args.seed)
    fixed = rng.random(INPUT_SHAPE, dtype=np.float32)
    done: list[tuple[int, int, int, str]] = []
    record, complete, response = done.append, lg.QuerySamplesComplete, lg.QuerySampleResponse

    def issue_query(sample_ids: list[int], _indices: list[int]) -> None:
        issued_ns = monotonic_ns()
        for sample_id in sample_ids:
            tensor = fixed if args.reuse_tensor else np.random.rand(*INPUT_SHAPE).astype(
                np.float32)
            infer_input = triton.InferInput(INPUT_NAME, list(INPUT_SHAPE), "FP32")
            infer_input.set_data_from_numpy(tensor)
            sent_ns = monotonic_ns()

            # tritonclient calls callback(result=..., error=...): the names are the contract.
            def on_result(result, error, sample_id: int = sample_id,
                          sent_ns: int = sent_ns) -> None:
                status = "OK" if error is None else (error.status() or "CLIENT_ERROR")
                record((issued_ns, sent_ns - issued_ns, monotonic_ns() - issued_ns,
                        status.removeprefix("StatusCode.")))
                complete([response(sample_id, 0, 0)])

            client.async_infer(MODEL, [infer_input], on_result, priority=TIER,
                               timeout=(SLO_NS - (monotonic_ns() - issued_ns)) // 1000,
                               client_timeout=TIMEOUT_S)

    sut = lg.ConstructFastSUT(issue_query, lambda: None)
    run_loadgen(sut, args)
    lg.DestroyFastSUT(sut)
    client.close()
    write_samples(args.out, done)


if __name__ == "__main__":
    main()
