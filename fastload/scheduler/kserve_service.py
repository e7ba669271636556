"""KServe v2 front end of the reference scheduler: `inference.GRPCInferenceService`'s health,
metadata and ModelInfer, so `fastload --protocol kserve` (and tritonclient) can drive it.

ModelInfer requests join the same queue as SchedulerService's, read the way Triton's
schedule-policy extension reads them: parameter `priority` is the tier (1 highest; 0, a missing
one or one above the lowest tier means the default level, the lowest tier) and `timeout`, in µs
from arrival, sets the deadline (0 or missing: none). A request whose timeout expires before a
GPU starts it is answered as Triton answers it: UNAVAILABLE "Request timeout expired".
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import grpc
from google.protobuf.message import DecodeError

from fastload._pb import kserve_pb2 as pb
from fastload.contract.workload import TIERS
from fastload.scheduler.request import MAX_DIMS, NO_DEADLINE_NS, InvalidRequest, ValidRequest

if TYPE_CHECKING:
    from fastload.scheduler.server import Scheduler

SERVICE_NAME = "inference.GRPCInferenceService"
EXPIRED_MESSAGE = "Request timeout expired"  # Triton's words, with StatusCode.UNAVAILABLE
INPUT_NAME = "input"
DATATYPE = "FP32"
MODEL_VERSION = "1"
DEFAULT_TIER = TIERS[-1]


@dataclass(frozen=True)
class KServeModels:
    """The served models and the input each declares in ModelMetadata."""

    input_shapes: Mapping[str, tuple[int, ...]]

    def metadata(self, name: str, version: str) -> pb.ModelMetadataResponse:
        self._check(name, version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=name, versions=[MODEL_VERSION], platform="fastload_reference",
            inputs=[tensor(name=INPUT_NAME, datatype=DATATYPE, shape=self.input_shapes[name])],
            outputs=[],
        )

    def ready(self, name: str, version: str) -> bool:
        return name in self.input_shapes and version in ("", MODEL_VERSION)

    def _check(self, name: str, version: str) -> None:
        if name not in self.input_shapes:
            raise LookupError(f"Request for unknown model: '{name}' is not found")
        if version not in ("", MODEL_VERSION):
            raise LookupError(f"Request for unknown model: '{name}' version {version} is not "
                              f"found")

    def parse_infer(self, data: bytes, received_ns: int) -> tuple[ValidRequest, str]:
        """A ModelInferRequest as the queue's ValidRequest, and its id to echo; InvalidRequest
        for a malformed one, LookupError for an unknown model or version."""
        try:
            req = pb.ModelInferRequest.FromString(data)
        except DecodeError:
            raise InvalidRequest(f"request is not a valid ModelInferRequest ({len(data)} bytes)"
                                 ) from None
        self._check(req.model_name, req.model_version)
        if len(req.inputs) != 1 or req.inputs[0].name != INPUT_NAME:
            raise InvalidRequest(f"model '{req.model_name}' expects one input '{INPUT_NAME}', "
                                 f"got {[tensor.name for tensor in req.inputs]}")
        tensor = req.inputs[0]
        if tensor.datatype != DATATYPE:
            raise InvalidRequest(f"input '{INPUT_NAME}' must be {DATATYPE}, got "
                                 f"{tensor.datatype!r}")
        shape = list(tensor.shape)
        declared = self.input_shapes[req.model_name]
        if len(shape) > MAX_DIMS or len(shape) != len(declared) or any(
                dim < 0 or want not in (-1, dim) for dim, want in zip(shape, declared)):
            raise InvalidRequest(f"input '{INPUT_NAME}' shape {shape} does not match the "
                                 f"model's {list(declared)}")
        nbytes = 4 * math.prod(shape)
        if len(req.raw_input_contents) > 1:
            raise InvalidRequest(f"{len(req.raw_input_contents)} raw_input_contents for 1 input")
        given = (len(req.raw_input_contents[0]) if req.raw_input_contents
                 else 4 * len(tensor.contents.fp32_contents))
        if given != nbytes:
            raise InvalidRequest(f"input '{INPUT_NAME}' has {given} bytes of data but shape "
                                 f"{shape} needs {nbytes}")
        priority = _int_parameter(req, "priority")
        tier = priority if priority in TIERS else DEFAULT_TIER
        timeout_us = _int_parameter(req, "timeout")
        deadline_ns = received_ns + timeout_us * 1000 if timeout_us > 0 else NO_DEADLINE_NS
        return ValidRequest(tier, deadline_ns, req.model_name), req.id


def _int_parameter(req: pb.ModelInferRequest, key: str) -> int:
    """An integer request parameter, from int64_param or uint64_param; 0 when absent."""
    if key not in req.parameters:
        return 0
    parameter = req.parameters[key]
    choice = parameter.WhichOneof("parameter_choice")
    if choice not in ("int64_param", "uint64_param"):
        raise InvalidRequest(f"parameter '{key}' must be an integer, got {choice}")
    return getattr(parameter, choice)


def kserve_handler(scheduler: Scheduler,
                   input_shapes: Mapping[str, tuple[int, ...]]) -> grpc.GenericRpcHandler:
    """GRPCInferenceService's methods the reference serves, onto ``scheduler``'s queue."""
    models = KServeModels(input_shapes)

    async def server_live(_request: pb.ServerLiveRequest, _context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(_request: pb.ServerReadyRequest, _context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    async def model_ready(request: pb.ModelReadyRequest, _context) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=models.ready(request.name, request.version))

    async def model_metadata(request: pb.ModelMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        try:
            return models.metadata(request.name, request.version)
        except LookupError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))

    async def model_infer(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await scheduler.admit(context)
        try:
            valid, request_id = models.parse_infer(data, time.time_ns())
        except LookupError as exc:
            scheduler.stats.rejected += 1
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except InvalidRequest as exc:
            await scheduler.reject(context, exc)
        if not await scheduler.run(valid):
            await context.abort(grpc.StatusCode.UNAVAILABLE, EXPIRED_MESSAGE)
        return pb.ModelInferResponse(model_name=valid.model, model_version=MODEL_VERSION,
                                     id=request_id).SerializeToString()

    def unary(method, request_type) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=request_type.FromString,
            response_serializer=lambda response: response.SerializeToString())

    return grpc.method_handlers_generic_handler(SERVICE_NAME, {
        "ServerLive": unary(server_live, pb.ServerLiveRequest),
        "ServerReady": unary(server_ready, pb.ServerReadyRequest),
        "ModelReady": unary(model_ready, pb.ModelReadyRequest),
        "ModelMetadata": unary(model_metadata, pb.ModelMetadataRequest),
        # Raw bytes in and out, as Infer: one parse, in parse_infer.
        "ModelInfer": grpc.unary_unary_rpc_method_handler(model_infer),
    })
