"""Typed surface of the compiled KServe v2 request encoder (fastload/targets/_encode_kserve.pyx)."""
from typing import Mapping, Sequence

from fastload.targets._tensor import PooledEncoder

DATATYPE: str  # "FP32", the only input datatype fastload sends
MAX_TIMEOUT_US: int  # 2**35 - 1: the largest `timeout` written (9.5 hours)

class KServeEncoder(PooledEncoder):
    """Builds complete ModelInferRequest wire bytes for one model and input, reusing them.

    Each request names ``model_name`` (and ``model_version`` when not empty) and carries one
    FP32 input ``input_name`` of ``shape`` in ``raw_input_contents``. Request parameters, as
    Triton's schedule-policy extension reads them: ``priority`` (uint64_param) is
    ``priorities[tier]``, omitted when ``priorities`` is None; ``timeout`` (int64_param) is the
    time left until ``deadline_ns`` when ``encode()`` runs, in µs, clamped to
    [1, MAX_TIMEOUT_US] (never 0, which Triton reads as "no timeout"), omitted when ``timeout``
    is False. Both are varints padded to a fixed width so a request is rewritten in place.

    Tensors, their stamps and the rotation of pool slots are as in RequestEncoder
    (_encode_scheduler.pyi): the returned bytes belong to the encoder and are rewritten by the
    pool_size-th following call; grpcio copies a request when its call starts. One encoder per
    thread.
    """

    model_name: str
    model_version: str
    input_name: str
    timeout: bool

    def __init__(
        self,
        shape: Sequence[int],
        *,
        model_name: str,
        input_name: str,
        model_version: str = "",
        priorities: Mapping[int, int] | None = None,
        timeout: bool = True,
        pool_size: int = 8,
        fresh: bool = False,
        seed: int = 0,
    ) -> None:
        """ValueError for dims < 0, a tensor of 2 GiB or more, pool_size < 1 or a seed outside
        [0, 2**64); OverflowError for a priority level outside [0, 2**63)."""
    def encode(self, tier: int, deadline_ns: int) -> bytes:
        """The next request's wire bytes, valid until the pool_size-th following call.

        ValueError for a tier ``priorities`` does not map; OverflowError if deadline_ns does
        not fit int64."""
    @property
    def priorities(self) -> dict[int, int] | None: ...
