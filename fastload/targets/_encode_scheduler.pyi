"""Typed surface of the compiled request encoder (fastload/targets/_encode_scheduler.pyx)."""
from typing import Sequence

from fastload.targets._tensor import PooledEncoder

FIELD_RAW: int  # 6: bytes input_tensor_raw
FIELD_FLOAT: int  # 4: packed repeated float input_tensor

class RequestEncoder(PooledEncoder):
    """Builds complete InferRequest wire bytes for one input shape, reusing them in rotation.

    Tensors come from ``pool_size`` pre-generated random float32 buffers in [0, 1), used in
    rotation (request k uses buffer k % pool_size). Request k is written into slot
    k % pool_size: the bytes object ``encode()`` returns belongs to the encoder and is
    rewritten in place by the pool_size-th following call. Hand it to grpcio (which copies a
    message when its call starts) or copy it (``memoryview(r).tobytes()``) before then; use
    one encoder per thread. Each request's copy, never the pool, is
    stamped with the encoder's request counter k: value i of the first min(3, n) becomes
    ((k >> 22*i) & (2**22 - 1)) * 2**-22, an exact float32 in [0, 1). So no two requests
    from one encoder carry identical tensor bytes (for tensors of >= 3 elements).
    With ``fresh=True`` every value of every request is drawn anew from xoshiro256+
    (seeded by ``seed``) instead, unstamped; there is no pool.
    Output is byte-identical to ``scheduler_pb2.InferRequest(...).SerializeToString()``.
    """

    def __init__(
        self,
        shape: Sequence[int],
        *,
        pool_size: int = 8,
        tensor_field: int = 6,
        fresh: bool = False,
        seed: int = 0,
    ) -> None:
        """Validates everything up front: dims in [0, 2**31), tensor under 2 GiB,
        pool_size >= 1, tensor_field 4 or 6, seed in [0, 2**64); ValueError otherwise."""
    def encode(self, tier: int, deadline_ns: int, model_name: str) -> bytes:
        """The next request's wire bytes, valid until the pool_size-th following call.

        A slot's bytes object is reused while the encoded lengths of tier, deadline and model
        name stay the same (always, for one model and Unix-ns deadlines); otherwise it is
        rebuilt, which copies the tensor once.

        OverflowError if tier does not fit int32 or deadline_ns int64."""
    @property
    def tensor_field(self) -> int: ...
