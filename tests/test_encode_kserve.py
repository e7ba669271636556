"""KServeEncoder against the reference: the generated ModelInferRequest class parses its bytes
to exactly the values given."""
from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_encode import NAMES, SHAPES, stamped

from fastload._pb.kserve_pb2 import ModelInferRequest
from fastload.targets._encode_kserve import DATATYPE, MAX_TIMEOUT_US, KServeEncoder

TIERS = st.integers(-5, 2**31 - 1)
LEVELS = st.one_of(st.sampled_from([0, 1, 127, 128, 2**63 - 1]), st.integers(0, 2**63 - 1))
PRIORITIES = st.one_of(st.none(), st.dictionaries(TIERS, LEVELS, min_size=1, max_size=4))
# Deadlines from long past to beyond the 9.5-hour clamp, relative to now.
DEADLINE_OFFSETS_NS = st.one_of(
    st.sampled_from([-10**9, 0, 999, 1000, 100_000_000, 2_000_000_000, 10**15, -2**62]),
    st.integers(-10**12, 4 * 10**13))


def expected_timeout_us(deadline_ns: int, before_ns: int, after_ns: int) -> tuple[int, int]:
    """The range of `timeout` an encode between two clock reads may write."""
    def at(now_ns: int) -> int:
        return min(max((deadline_ns - now_ns) // 1000, 1), MAX_TIMEOUT_US)

    return at(after_ns), at(before_ns)


@settings(max_examples=300, deadline=None)
@given(shape=SHAPES, model_name=NAMES, model_version=NAMES, input_name=NAMES,
       priorities=PRIORITIES, timeout=st.booleans(), pool_size=st.integers(1, 3),
       seed=st.integers(0, 2**64 - 1), data=st.data())
def test_parses_to_the_values_given(shape: list[int], model_name: str, model_version: str,
                                    input_name: str, priorities: dict[int, int] | None,
                                    timeout: bool, pool_size: int, seed: int,
                                    data: st.DataObject) -> None:
    encoder = KServeEncoder(shape, model_name=model_name, model_version=model_version,
                            input_name=input_name, priorities=priorities, timeout=timeout,
                            pool_size=pool_size, seed=seed)
    tiers = st.sampled_from(sorted(priorities)) if priorities else TIERS
    for k in range(data.draw(st.integers(1, 6))):
        tier, offset_ns = data.draw(tiers), data.draw(DEADLINE_OFFSETS_NS)
        before_ns = time.time_ns()
        deadline_ns = max(before_ns + offset_ns, -2**63)  # the earliest is the int64 minimum
        parsed = ModelInferRequest.FromString(encoder.encode(tier, deadline_ns))
        after_ns = time.time_ns()

        assert (parsed.model_name, parsed.model_version, parsed.id) == (model_name,
                                                                        model_version, "")
        (tensor,) = parsed.inputs
        assert (tensor.name, tensor.datatype, list(tensor.shape)) == (input_name, "FP32", shape)
        assert not tensor.HasField("contents") and not tensor.parameters and not parsed.outputs
        expected = stamped(encoder.pool_buffer(k % pool_size), k)
        assert list(parsed.raw_input_contents) == [expected]

        params = dict(parsed.parameters)
        if priorities is None:
            assert "priority" not in params
        else:
            assert params.pop("priority").WhichOneof("parameter_choice") == "uint64_param"
            assert parsed.parameters["priority"].uint64_param == priorities[tier]
        if timeout:
            assert params.pop("timeout").WhichOneof("parameter_choice") == "int64_param"
            low, high = expected_timeout_us(deadline_ns, before_ns, after_ns)
            assert low <= parsed.parameters["timeout"].int64_param <= high
        assert not params
    assert encoder.encoded == k + 1


@pytest.mark.parametrize("fresh", [False, True])
def test_real_size_request(fresh: bool) -> None:
    encoder = KServeEncoder((1, 3, 224, 224), model_name="resnet50_onnx", model_version="2",
                            input_name="input__0", priorities={1: 1, 2: 2, 3: 3}, fresh=fresh,
                            seed=7)
    parsed = ModelInferRequest.FromString(encoder.encode(1, time.time_ns() + 100_000_000))
    values = np.frombuffer(parsed.raw_input_contents[0], "<f4")
    assert values.size == 150528 and np.all((values >= 0) & (values < 1))
    assert 90_000 < parsed.parameters["timeout"].int64_param <= 100_000
    assert parsed.inputs[0].datatype == DATATYPE


def test_requests_are_rewritten_in_place_and_tensors_differ() -> None:
    encoder = KServeEncoder([2, 3], model_name="m", input_name="x", priorities={1: 1, 2: 200},
                            pool_size=2, seed=1)
    first = encoder.encode(1, time.time_ns() + 10**9)
    first_copy = memoryview(first).tobytes()
    encoder.encode(1, time.time_ns())
    third = encoder.encode(2, time.time_ns() - 10**9)
    assert third is first and third != first_copy and len(third) == len(first_copy)
    parsed = ModelInferRequest.FromString(third)
    assert parsed.parameters["priority"].uint64_param == 200
    assert parsed.parameters["timeout"].int64_param == 1  # late: expire at once, never "none"
    tensors = {ModelInferRequest.FromString(encoder.encode(1, 1)).raw_input_contents[0]
               for _ in range(10_000)}
    assert len(tensors) == 10_000


def test_empty_tensor_still_has_its_raw_entry() -> None:
    parsed = ModelInferRequest.FromString(
        KServeEncoder([0], model_name="m", input_name="x").encode(1, 0))
    assert list(parsed.raw_input_contents) == [b""]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"shape": [2, -1]}, ValueError, r"shape\[1\] must be >= 0, got -1"),
    ({"shape": [2**20, 2**20]}, ValueError, r"under 2 GiB"),
    ({"pool_size": 0}, ValueError, r"pool_size must be >= 1, got 0"),
    ({"priorities": {1: -1}}, OverflowError, r"priority of tier 1 must be in \[0, "),
    ({"model_name": None}, TypeError, r"model_name"),
])
def test_bad_constructor_arguments(kwargs: dict, error: type, message: str) -> None:
    arguments = {"shape": [3], "model_name": "m", "input_name": "x", **kwargs}
    with pytest.raises(error, match=message):
        KServeEncoder(arguments.pop("shape"), **arguments)


def test_bad_encode_arguments() -> None:
    encoder = KServeEncoder([3], model_name="m", input_name="x", priorities={1: 1})
    with pytest.raises(ValueError, match=r"no priority level for tier 4; the encoder maps "
                                         r"tiers \[1\]"):
        encoder.encode(4, 0)
    with pytest.raises(OverflowError, match=r"deadline_ns \(int64\) must be in"):
        encoder.encode(1, 2**63)
    assert encoder.encoded == 0
