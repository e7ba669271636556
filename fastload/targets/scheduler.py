"""The spec's protocol: scheduler.SchedulerService/Infer with an InferRequest
(_encode_scheduler.pyx)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Mapping, Sequence

import grpc

from fastload._pb.scheduler_pb2 import InferResponse
from fastload.records.row import STATUS_OK
from fastload.targets._encode_scheduler import RequestEncoder
from fastload.targets.base import Encode, tensor_seed


@dataclass(frozen=True)
class SchedulerTarget:
    """Every model goes to the one Infer method; the scheduler answers success or expiry."""

    model_shapes: Mapping[str, tuple[int, ...]]
    seed: int
    tensor_field: int
    fresh_tensors: bool
    method: str = "/scheduler.SchedulerService/Infer"

    def prepare(self, channel: grpc.Channel, metadata: Sequence[tuple[str, str]]) -> None:
        """Nothing to ask: the proto has no metadata call; a bad request fails per sample."""

    def encoders(self, sender: int) -> dict[str, Encode]:
        encoders = {}
        for model, shape in self.model_shapes.items():
            encoder = RequestEncoder(shape, tensor_field=self.tensor_field,
                                     fresh=self.fresh_tensors,
                                     seed=tensor_seed(self.seed, sender, model))
            for _ in range(encoder.pool_size):  # the model name is part of the reused bytes
                encoder.encode(1, time.time_ns(), model)
            encoders[model] = partial(encoder.encode, model_name=model)
        return encoders

    def outcome(self, code: grpc.StatusCode, details: str, response: bytes | None
                ) -> tuple[str, bool]:
        if code is grpc.StatusCode.OK:
            return STATUS_OK, InferResponse.FromString(response).success
        return code.name, False
