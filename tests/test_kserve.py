"""KServe v2: the reference scheduler's GRPCInferenceService, fastload --protocol kserve end to
end against it, and the checks that stop a run before traffic."""
from __future__ import annotations

import json
import time
from typing import Callable

import grpc
import pytest

from fastload._pb import kserve_pb2 as pb
from fastload.contract.config import ServerModel
from fastload.contract.exits import TargetMismatch
from fastload.scheduler.kserve_service import KServeModels
from fastload.scheduler.spawn import SchedulerProcess
from fastload.targets._encode_kserve import KServeEncoder
from fastload.targets.kserve import _input_for

from test_generator import read_rows, run_fastload

SERVICE = "/inference.GRPCInferenceService/"
SMALL_WORKLOAD = (
    'name = "small"\n'
    "[models.resnet50]\nshape = [1, 16]\n"
    '[[classes]]\ntier = 1\nslo = "urgent"\nfraction = 0.5\n'
    '[[classes]]\ntier = 3\nslo = "relaxed"\nfraction = 0.5\n'
)


class KServeClient:
    """Typed calls to GRPCInferenceService; ModelInfer takes raw bytes."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)

    def call(self, method: str, request, response_type):
        return self.channel.unary_unary(
            SERVICE + method, request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString)(request, timeout=10)

    def infer(self, data: bytes, timeout_s: float = 10) -> pb.ModelInferResponse:
        call = self.channel.unary_unary(SERVICE + "ModelInfer",
                                        response_deserializer=pb.ModelInferResponse.FromString)
        return call(data, timeout=timeout_s)

    def infer_future(self, data: bytes) -> grpc.Future:
        return self.channel.unary_unary(SERVICE + "ModelInfer").future(data, timeout=10)


@pytest.fixture
def kserve(start_scheduler: Callable[..., SchedulerProcess]) -> KServeClient:
    """The reference with one slow GPU, so queued requests can expire."""
    return KServeClient(start_scheduler("--gpus", "1", "--service-ms", "resnet50=40",
                                        "--input-shape", "resnet50=-1x4").address)


def small_request(**kwargs) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(**{"model_name": "resnet50", "id": "r-1", **kwargs})
    if not kwargs.get("inputs"):
        request.inputs.add(name="input", datatype="FP32", shape=[2, 4])
        request.raw_input_contents.append(b"\0" * 32)
    return request


def test_health_and_metadata(kserve: KServeClient) -> None:
    assert kserve.call("ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse).live
    assert kserve.call("ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse).ready
    ready = [kserve.call("ModelReady", pb.ModelReadyRequest(name=name, version=version),
                         pb.ModelReadyResponse).ready
             for name, version in (("resnet50", ""), ("resnet50", "1"), ("vit", ""),
                                   ("resnet50", "2"), ("nope", ""))]
    assert ready == [True, True, True, False, False]
    meta = kserve.call("ModelMetadata", pb.ModelMetadataRequest(name="resnet50"),
                       pb.ModelMetadataResponse)
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [
        ("input", "FP32", [-1, 4])]
    with pytest.raises(grpc.RpcError) as error:
        kserve.call("ModelMetadata", pb.ModelMetadataRequest(name="nope"),
                    pb.ModelMetadataResponse)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in error.value.details()


def test_infer_answers_and_echoes_the_id(kserve: KServeClient) -> None:
    response = kserve.infer(small_request().SerializeToString())
    assert (response.model_name, response.model_version, response.id) == ("resnet50", "1", "r-1")


def test_timeout_expires_in_the_queue_as_triton_answers(kserve: KServeClient) -> None:
    """One GPU at 40 ms per request: of five sent at once with a 100 ms timeout, two or three
    start in time; the rest expire. Without `timeout` nothing expires."""
    encoder = KServeEncoder([2, 4], model_name="resnet50", input_name="input",
                            priorities={1: 1})
    kserve.infer(encoder.encode(1, time.time_ns() + 10**9))  # connected, the GPU idle again
    calls = [kserve.infer_future(encoder.encode(1, time.time_ns() + 100_000_000))
             for _ in range(5)]
    codes = [call.code() for call in calls]
    assert codes.count(grpc.StatusCode.OK) >= 2
    expired = [call for call in calls if call.code() != grpc.StatusCode.OK]
    assert len(expired) >= 2
    assert {(c.code(), c.details()) for c in expired} == {
        (grpc.StatusCode.UNAVAILABLE, "Request timeout expired")}
    no_timeout = KServeEncoder([2, 4], model_name="resnet50", input_name="input",
                               timeout=False)
    calls = [kserve.infer_future(no_timeout.encode(1, 0)) for _ in range(4)]
    assert [call.code() for call in calls] == [grpc.StatusCode.OK] * 4


@pytest.mark.parametrize("request_kwargs, code, message", [
    ({"model_name": "nope"}, grpc.StatusCode.NOT_FOUND, "unknown model: 'nope'"),
    ({"model_version": "7"}, grpc.StatusCode.NOT_FOUND, "version 7"),
    ({"inputs": [pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP16",
                                                       shape=[2, 4])]},
     grpc.StatusCode.INVALID_ARGUMENT, "must be FP32, got 'FP16'"),
    ({"inputs": [pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32",
                                                       shape=[2, 5])]},
     grpc.StatusCode.INVALID_ARGUMENT, r"shape [2, 5] does not match the model's [-1, 4]"),
    ({"inputs": [pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32",
                                                       shape=[2, 4])]},
     grpc.StatusCode.INVALID_ARGUMENT, "expects one input 'input', got ['x']"),
])
def test_bad_requests_are_refused(kserve: KServeClient, request_kwargs: dict,
                                  code: grpc.StatusCode, message: str) -> None:
    request = small_request(**request_kwargs)
    if request_kwargs.get("inputs"):
        request.raw_input_contents.append(b"\0" * 32)
    with pytest.raises(grpc.RpcError) as error:
        kserve.infer(request.SerializeToString())
    assert error.value.code() == code and message in error.value.details()


def test_wrong_tensor_size_and_garbage_are_refused(kserve: KServeClient) -> None:
    request = small_request()
    request.raw_input_contents[0] = b"\0" * 31
    for data, message in ((request.SerializeToString(), "has 31 bytes of data but shape"),
                          (b"\xff\xff", "not a valid ModelInferRequest")):
        with pytest.raises(grpc.RpcError) as error:
            kserve.infer(data)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.value.details()


@pytest.mark.parametrize("priorities, tiers", [
    ({1: 1, 2: 2, 3: 3}, {1: 1, 2: 2, 3: 3}),
    ({1: 3, 2: 2, 3: 1}, {1: 3, 2: 2, 3: 1}),  # reversed by --tier-priority
    ({1: 0, 2: 9, 3: 2}, {1: 3, 2: 3, 3: 2}),  # 0 and unknown levels: the default, tier 3
    (None, {1: 3, 2: 3, 3: 3}),  # --tier-priority off
])
def test_the_reference_reads_priority_as_tier_and_timeout_as_deadline(
        priorities: dict | None, tiers: dict) -> None:
    models = KServeModels({"resnet50": (-1, 4)})
    encoder = KServeEncoder([3, 4], model_name="resnet50", input_name="input",
                            priorities=priorities)
    for tier, expected_tier in tiers.items():
        sent_ns = time.time_ns()
        valid, _ = models.parse_infer(encoder.encode(tier, sent_ns + 500_000_000), sent_ns)
        assert valid.tier == expected_tier and valid.model == "resnet50"
        assert 499_000_000 <= valid.deadline_ns - sent_ns <= 500_000_000


@pytest.mark.parametrize("inputs, message", [
    ([("input", "FP32", [-1, 16]), ("mask", "FP32", [-1, 16])], "has 2 inputs (input, mask)"),
    ([("input", "INT8", [-1, 16])], "input 'input' is INT8; fastload sends FP32"),
    ([("input", "FP32", [-1, 3, 16])], "has shape [-1, 3, 16]; the workload sends resnet50 as"),
    ([("input", "FP32", [2, 16])], "has shape [2, 16]"),
])
def test_models_that_do_not_fit_are_a_mismatch(inputs: list, message: str) -> None:
    tensor = pb.ModelMetadataResponse.TensorMetadata
    meta = pb.ModelMetadataResponse(
        inputs=[tensor(name=n, datatype=d, shape=s) for n, d, s in inputs])
    with pytest.raises(TargetMismatch) as error:
        _input_for(meta, ServerModel("resnet50_onnx", "2"), "resnet50", (1, 16))
    assert message in str(error.value) and "resnet50_onnx version 2" in str(error.value)


@pytest.mark.parametrize("processes", [1, 2])  # 2: the checked target goes to sender processes
def test_embedded_kserve_run_answers_every_sample(tmp_path, processes: int) -> None:
    workload = tmp_path / "small.toml"
    workload.write_text(SMALL_WORKLOAD)
    proc, csv_path = run_fastload(tmp_path, "--embedded", "--protocol", "kserve",
                                  "--total-qps", "200", "--duration-ms", "2000",
                                  "--workload-file", str(workload), "--seed", "3",
                                  "--processes", str(processes))
    assert proc.returncode == 0, proc.stderr
    assert "(KServe v2)" in proc.stdout
    rows = read_rows(csv_path)
    assert len(rows) > 250 and {r["status"] for r in rows} == {"OK"}
    assert all(r["success"] == "True" for r in rows)
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    assert summary["overall"]["count"] == len(rows) and summary["overall"]["errors"] == 0
    assert f"received={len(rows)} completed={len(rows)}" in proc.stdout


def test_expired_samples_are_answers_not_errors(tmp_path, start_scheduler) -> None:
    """An overloaded server answers late samples "timeout expired": EXPIRED in the CSV, timed,
    never met, and not an error (exit 0), one for each the server counted."""
    scheduler = start_scheduler("--gpus", "1", "--service-ms", "resnet50=30",
                                "--input-shape", "resnet50=-1x16")
    workload = tmp_path / "small.toml"
    workload.write_text(SMALL_WORKLOAD)
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", scheduler.address,
                                  "--protocol", "kserve", "--total-qps", "100",
                                  "--duration-ms", "2000", "--workload-file", str(workload))
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(csv_path)
    expired = [r for r in rows if r["status"] == "EXPIRED"]
    assert {r["status"] for r in rows} == {"OK", "EXPIRED"} and len(expired) > 20
    assert all(r["slo_met"] == "False" and int(r["latency_ns"]) > 0 for r in expired)
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    assert summary["overall"]["errors"] == 0
    stats = scheduler.stop().stdout
    assert f"expired={len(expired)} " in stats


def test_missing_model_stops_before_traffic(tmp_path, start_scheduler) -> None:
    scheduler = start_scheduler()
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", scheduler.address,
                                  "--protocol", "kserve", "--model-map", "vit=vit_trt:3",
                                  "--duration-ms", "1000", timeout_s=30)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip() == "fastload: error: model vit_trt version 3 is not ready on " \
                                  "the server"
    assert not csv_path.exists() and not (tmp_path / "logs").exists()
    assert "received=0" in scheduler.stop().stdout


def test_shape_mismatch_stops_before_traffic(tmp_path, start_scheduler) -> None:
    scheduler = start_scheduler("--input-shape", "resnet50=-1x5")
    workload = tmp_path / "small.toml"
    workload.write_text(SMALL_WORKLOAD)
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", scheduler.address,
                                  "--protocol", "kserve", "--workload-file", str(workload),
                                  "--duration-ms", "1000", timeout_s=30)
    assert proc.returncode == 2, proc.stderr
    assert "model resnet50 input 'input' has shape [-1, 5]" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not csv_path.exists()


@pytest.mark.parametrize("args, message", [
    (("--tier-priority", "1=1,2=2,3=3"), "--tier-priority needs --protocol kserve"),
    (("--model-map", "vit=v"), "--model-map needs --protocol kserve"),
    (("--no-deadline-timeout",), "--deadline-timeout needs --protocol kserve"),
    (("--protocol", "kserve", "--tensor-field", "float"), "--tensor-field is for --protocol "
                                                          "scheduler"),
    (("--protocol", "kserve", "--model-map", "vit"), "--model-map must be MODEL=SERVER_MODEL"),
    (("--protocol", "kserve", "--model-map", "bert=b"), "the workload has no model 'bert'"),
    (("--protocol", "kserve", "--tier-priority", "1=1,2=x"), "--tier-priority must be off or"),
    (("--protocol", "kserve", "--tier-priority", "1=1,2=2"), "gives no level for tier 3"),
    (("--protocol", "kserve", "--tier-priority", "off", "--priority-signal", "equal"),
     "--priority-signal equal changes the priority sent, but --tier-priority off sends none"),
])
def test_bad_kserve_flags_exit_2(tmp_path, args: tuple, message: str) -> None:
    proc, csv_path = run_fastload(tmp_path, "--embedded", *args, timeout_s=30)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not csv_path.exists()
