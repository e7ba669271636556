"""The interface every target implements (its errors before traffic: contract.exits)."""
from __future__ import annotations

import random
from typing import Callable, Mapping, Protocol, Sequence

import grpc

# One request's bytes from the sample's tier and absolute deadline (Unix ns). The bytes belong
# to the encoder and are rewritten a few calls later; grpcio copies them when the call starts.
Encode = Callable[[int, int], bytes]


class Target(Protocol):
    method: str  # the gRPC method every request is sent to

    def prepare(self, channel: grpc.Channel, metadata: Sequence[tuple[str, str]]) -> None:
        """Check the server before traffic (calls carry ``metadata``); TargetUnavailable or
        TargetMismatch if it won't do."""

    def encoders(self, sender: int) -> Mapping[str, Encode]:
        """One sender's encode function per workload model, every reusable request already
        built (encoders reuse bytes, so each sender process has its own; ``sender`` seeds its
        tensors apart)."""

    def outcome(self, code: grpc.StatusCode, details: str, response: bytes | None
                ) -> tuple[str, bool]:
        """A finished call's status for the CSV and whether the server reported success, from
        its gRPC code and details and, for OK, the response bytes."""


def tensor_seed(seed: int, sender: int, model: str) -> int:
    """The run's seed for one sender's tensors of one model: runs repeat, senders differ."""
    return random.Random(f"{seed}:tensor:{sender}:{model}").getrandbits(64)

