"""KServe v2 (Triton, KServe, MLServer, OpenVINO Model Server): ModelInfer with the tier as
`priority` and the deadline as `timeout` (_encode_kserve.pyx); models checked before traffic."""
from __future__ import annotations

import math
import time
from typing import Mapping, Sequence

import grpc

from fastload._pb import kserve_pb2 as pb
from fastload.contract.config import KServeOptions, ServerModel
from fastload.contract.exits import TargetMismatch, TargetUnavailable
from fastload.records.row import STATUS_EXPIRED, STATUS_OK
from fastload.targets._encode_kserve import DATATYPE, KServeEncoder
from fastload.targets.base import Encode, tensor_seed

SERVICE = "/inference.GRPCInferenceService/"
# Triton's answer to a request whose `timeout` ran out in its queue.
EXPIRED = (grpc.StatusCode.UNAVAILABLE, "Request timeout expired")
CHECK_TIMEOUT_S = 5.0
class KServeTarget:
    """ModelInfer per sample; ModelReady and ModelMetadata decide each model's input first."""

    method = SERVICE + "ModelInfer"

    def __init__(self, options: KServeOptions, model_shapes: Mapping[str, tuple[int, ...]],
                 seed: int, fresh_tensors: bool) -> None:
        self._options = options
        self._model_shapes = model_shapes
        self._seed = seed
        self._fresh_tensors = fresh_tensors
        self._input_names: dict[str, str] = {}  # workload model -> its server input, once checked

    def prepare(self, channel: grpc.Channel, metadata: Sequence[tuple[str, str]]) -> None:
        for model, shape in self._model_shapes.items():
            server = self._options.server_model(model)
            request = {"name": server.name, "version": server.version}
            ready = _ask(channel, "ModelReady", pb.ModelReadyRequest(**request),
                         pb.ModelReadyResponse, metadata, server)
            if not ready.ready:
                raise TargetUnavailable(f"model {server} is not ready on the server")
            meta = _ask(channel, "ModelMetadata", pb.ModelMetadataRequest(**request),
                        pb.ModelMetadataResponse, metadata, server)
            self._input_names[model] = _input_for(meta, server, model, shape)

    def encoders(self, sender: int) -> dict[str, Encode]:
        encoders = {}
        for model, shape in self._model_shapes.items():
            server = self._options.server_model(model)
            encoder = KServeEncoder(shape, model_name=server.name, model_version=server.version,
                                    input_name=self._input_names[model],
                                    priorities=self._options.priorities,
                                    timeout=self._options.deadline_timeout,
                                    fresh=self._fresh_tensors,
                                    seed=tensor_seed(self._seed, sender, model))
            for _ in range(encoder.pool_size):
                encoder.encode(min(self._options.priorities or (1,)), time.time_ns())
            encoders[model] = encoder.encode
        return encoders

    def outcome(self, code: grpc.StatusCode, details: str, response: bytes | None
                ) -> tuple[str, bool]:
        if code is grpc.StatusCode.OK:
            return STATUS_OK, True
        if (code, details) == EXPIRED:
            return STATUS_EXPIRED, False
        return code.name, False


def _ask(channel: grpc.Channel, method: str, request, response_type,
         metadata: Sequence[tuple[str, str]], server: ServerModel):
    """One start-up call; any failure is the model not being there to serve."""
    call = channel.unary_unary(SERVICE + method, request_serializer=type(request).SerializeToString,
                               response_deserializer=response_type.FromString)
    try:
        return call(request, timeout=CHECK_TIMEOUT_S, metadata=tuple(metadata) or None)
    except grpc.RpcError as exc:
        raise TargetUnavailable(f"{method} for model {server} failed: {exc.code().name}: "
                                f"{exc.details()}") from None


def _input_for(meta: pb.ModelMetadataResponse, server: ServerModel, model: str,
               shape: tuple[int, ...]) -> str:
    """The name of the model's one FP32 input, if ``shape`` fits it (-1: any size)."""
    if len(meta.inputs) != 1:
        raise TargetMismatch(f"model {server} has {len(meta.inputs)} inputs "
                             f"({', '.join(i.name for i in meta.inputs)}); fastload sends one")
    (tensor,) = meta.inputs
    if tensor.datatype != DATATYPE:
        raise TargetMismatch(f"model {server} input {tensor.name!r} is {tensor.datatype}; "
                             f"fastload sends {DATATYPE}")
    declared = list(tensor.shape)
    if len(declared) != len(shape) or any(want not in (-1, dim)
                                          for want, dim in zip(declared, shape)):
        raise TargetMismatch(f"model {server} input {tensor.name!r} has shape {declared}; the "
                             f"workload sends {model} as {list(shape)} "
                             f"({math.prod(shape)} values)")
    return tensor.name
