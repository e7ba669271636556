"""Typed surface of the compiled request encoder (fastload/_encode.pyx)."""
from typing import Sequence

FIELD_RAW: int  # 6: bytes input_tensor_raw
FIELD_FLOAT: int  # 4: packed repeated float input_tensor

class RequestEncoder:
    """Builds complete InferRequest wire bytes for one input shape.

    Tensors come from ``pool_size`` pre-generated random float32 buffers in [0, 1], used in
    rotation; each request's copy is stamped with the encoder's request counter, so no two
    requests from one encoder carry identical tensor bytes (for tensors of >= 3 elements).
    With ``fresh=True`` every value of every request is regenerated instead.
    """

    def __init__(
        self,
        shape: Sequence[int],
        *,
        pool_size: int = 8,
        tensor_field: int = 6,
        fresh: bool = False,
        seed: int = 0,
    ) -> None: ...
    def encode(self, tier: int, deadline_ns: int, model_name: str) -> bytes:
        """One request's wire bytes: a new bytes object, tensor copied once into place."""
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def tensor_nbytes(self) -> int: ...
    @property
    def pool_size(self) -> int: ...
    @property
    def tensor_field(self) -> int: ...
    @property
    def fresh(self) -> bool: ...
    @property
    def encoded(self) -> int:
        """How many requests this encoder has built."""
