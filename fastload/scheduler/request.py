"""Parses and validates raw InferRequest bytes: the one place the scheduler trusts client input.

Works on the upb message directly; tensor sizes come from len() of the bytes field or of the
repeated-float container, so a 150k-float tensor never becomes Python floats.
"""
from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from fastload._pb.scheduler_pb2 import InferRequest
from fastload.contract.workload import TIERS

# Bounds the size of the element-count product, so a hostile shape cannot make math.prod slow.
MAX_DIMS = 32
# The deadline of a request that has none (a KServe request without `timeout`).
NO_DEADLINE_NS = 2**63 - 1


class InvalidRequest(ValueError):
    """A request the scheduler refuses; the message says what was wrong and the value."""


@dataclass(frozen=True, slots=True)
class ValidRequest:
    """What the queue needs from a request; the tensor itself is only checked, never kept."""

    tier: int
    deadline_ns: int
    model: str


def parse_request(data: bytes, models: Collection[str]) -> ValidRequest:
    """Decode one InferRequest and check it against the proto's contract and the served models."""
    try:
        req = InferRequest.FromString(data)
    except DecodeError:
        raise InvalidRequest(f"request is not a valid InferRequest ({len(data)} bytes)") from None
    if req.tier not in TIERS:
        raise InvalidRequest(f"tier must be one of {', '.join(map(str, TIERS))}, got {req.tier}")
    if req.deadline_ns <= 0:
        raise InvalidRequest(
            f"deadline_ns must be a positive absolute Unix time in ns, got {req.deadline_ns}"
        )
    if req.model_name not in models:
        raise InvalidRequest(
            f"unknown model {req.model_name!r}; this scheduler serves {', '.join(sorted(models))}"
        )
    shape = req.input_shape
    if len(shape) > MAX_DIMS:
        raise InvalidRequest(f"input_shape has {len(shape)} dimensions; at most {MAX_DIMS} allowed")
    if any(dim < 0 for dim in shape):
        raise InvalidRequest(f"input_shape must not have negative dimensions, got {list(shape)}")
    elements = math.prod(shape)
    raw_bytes = len(req.input_tensor_raw)
    if raw_bytes:
        if raw_bytes != 4 * elements:
            raise InvalidRequest(
                f"input_tensor_raw has {raw_bytes} bytes but input_shape {list(shape)} "
                f"needs {4 * elements} (float32)"
            )
    elif len(req.input_tensor) != elements:
        raise InvalidRequest(
            f"input_tensor has {len(req.input_tensor)} floats but input_shape {list(shape)} "
            f"needs {elements}"
        )
    return ValidRequest(req.tier, req.deadline_ns, req.model_name)
