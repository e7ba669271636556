"""Typed surface of the tensor source both encoders share (fastload/targets/_tensor.pyx)."""
from typing import Sequence

MAX_TENSOR_NBYTES: int
# Requests each encoder keeps in rotation: a request's bytes stay valid for this many calls.
DEFAULT_POOL_SIZE: int

class TensorSource:
    """``pool_size`` random float32 tensors in [0, 1) (numpy's default_rng(seed)) used in
    rotation, each copy stamped with the request counter; or, with ``fresh=True``, every value
    drawn anew from xoshiro256+ per request. Filled from compiled code only."""

    shape: tuple[int, ...]
    elements: int
    pool_size: int
    fresh: bool

    def __init__(self, shape: Sequence[int], *, pool_size: int = 8, fresh: bool = False,
                 seed: int = 0) -> None: ...
    @property
    def nbytes(self) -> int: ...
    def pool_buffer(self, index: int) -> bytes: ...

class PooledEncoder:
    """What every encoder shares: its TensorSource, one reusable request per pool slot (request
    k is written into slot k % pool_size and uses pool tensor k % pool_size) and the counter."""

    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def tensor_nbytes(self) -> int: ...
    @property
    def pool_size(self) -> int: ...
    @property
    def fresh(self) -> bool: ...
    @property
    def encoded(self) -> int:
        """How many requests this encoder has built."""
    def pool_buffer(self, index: int) -> bytes:
        """A copy of pool tensor ``index`` before stamping, for tests and inspection."""
