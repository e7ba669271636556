"""RequestEncoder against the reference: the generated protobuf class parses and re-serializes."""
from __future__ import annotations

from concurrent import futures

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastload._pb.scheduler_pb2 import InferRequest
from fastload.targets._encode_scheduler import FIELD_FLOAT, FIELD_RAW, RequestEncoder

INT32 = st.one_of(st.sampled_from([0, 1, -1, 2**31 - 1, -2**31]),
                  st.integers(-2**31, 2**31 - 1))
INT64 = st.one_of(st.sampled_from([0, -1, 2**63 - 1, -2**63, 1740888024000000000]),
                  st.integers(-2**63, 2**63 - 1))
NAMES = st.one_of(st.sampled_from(["", "resnet50", "vit", "ünïcødé-模型-🚀", "m" * 300]),
                  st.text())  # st.text() yields no lone surrogates, which str → UTF-8 refuses
SHAPES = st.lists(st.integers(0, 6), max_size=4)
FIELDS = st.sampled_from([FIELD_RAW, FIELD_FLOAT])
REAL_SHAPE = (1, 3, 224, 224)


def stamped(pool_buffer: bytes, k: int) -> bytes:
    """The spec'd stamp, computed independently: 22 bits of k per value in the first three."""
    values = np.frombuffer(pool_buffer, "<f4").copy()
    for i in range(min(3, values.size)):
        values[i] = ((k >> (22 * i)) & (2**22 - 1)) * 2.0**-22
    return values.tobytes()


def tensor_bytes(request: InferRequest, tensor_field: int) -> bytes:
    """The tensor payload, asserting the other tensor field is empty."""
    if tensor_field == FIELD_RAW:
        assert len(request.input_tensor) == 0
        return request.input_tensor_raw
    assert request.input_tensor_raw == b""
    return np.array(request.input_tensor, "<f4").tobytes()


def reference(tier: int, deadline_ns: int, model_name: str, shape: tuple[int, ...],
              tensor: bytes, tensor_field: int) -> bytes:
    request = InferRequest(tier=tier, deadline_ns=deadline_ns, model_name=model_name,
                           input_shape=shape)
    if tensor_field == FIELD_RAW:
        request.input_tensor_raw = tensor
    else:
        request.input_tensor.extend(np.frombuffer(tensor, "<f4").tolist())
    return request.SerializeToString()


@settings(max_examples=300, deadline=None)
@given(shape=SHAPES, tensor_field=FIELDS, pool_size=st.integers(1, 4),
       seed=st.integers(0, 2**64 - 1),
       requests=st.lists(st.tuples(INT32, INT64, NAMES), min_size=1, max_size=6))
def test_encode_matches_protobuf(shape: list[int], tensor_field: int, pool_size: int, seed: int,
                                 requests: list[tuple[int, int, str]]) -> None:
    encoder = RequestEncoder(shape, pool_size=pool_size, tensor_field=tensor_field, seed=seed)
    for k, (tier, deadline_ns, model_name) in enumerate(requests):
        encoded = encoder.encode(tier, deadline_ns, model_name)
        parsed = InferRequest.FromString(encoded)
        assert (parsed.tier, parsed.deadline_ns, parsed.model_name) == (tier, deadline_ns,
                                                                        model_name)
        assert list(parsed.input_shape) == shape
        expected = stamped(encoder.pool_buffer(k % pool_size), k)
        assert tensor_bytes(parsed, tensor_field) == expected
        assert encoded == reference(tier, deadline_ns, model_name, tuple(shape), expected,
                                    tensor_field)
        values = np.frombuffer(expected, "<f4")
        assert np.all((values >= 0) & (values <= 1))
    assert encoder.encoded == len(requests)


@pytest.mark.parametrize("tensor_field", [FIELD_RAW, FIELD_FLOAT])
@pytest.mark.parametrize("fresh", [False, True])
def test_real_size_request_parses(tensor_field: int, fresh: bool) -> None:
    encoder = RequestEncoder(REAL_SHAPE, tensor_field=tensor_field, fresh=fresh, seed=7)
    assert encoder.tensor_nbytes == 4 * 150528
    parsed = InferRequest.FromString(encoder.encode(2, 1740888024000000000, "resnet50"))
    assert list(parsed.input_shape) == list(REAL_SHAPE)
    values = np.frombuffer(tensor_bytes(parsed, tensor_field), "<f4")
    assert values.size == 150528
    assert np.all(np.isfinite(values)) and np.all((values >= 0) & (values <= 1))


def test_properties_echo_arguments() -> None:
    encoder = RequestEncoder([2, 3], pool_size=5, tensor_field=FIELD_FLOAT, fresh=True)
    assert (encoder.shape, encoder.tensor_nbytes, encoder.pool_size, encoder.tensor_field,
            encoder.fresh, encoder.encoded) == ((2, 3), 24, 5, FIELD_FLOAT, True, 0)


def test_pool_is_not_stamped() -> None:
    encoder = RequestEncoder([8], pool_size=1, seed=3)
    before = encoder.pool_buffer(0)
    for _ in range(3):
        encoder.encode(1, 1, "m")
    assert encoder.pool_buffer(0) == before


def test_every_request_tensor_is_distinct() -> None:
    encoder = RequestEncoder([2, 3], pool_size=4, seed=1)
    payloads = {InferRequest.FromString(encoder.encode(1, 1, "m")).input_tensor_raw
                for _ in range(20_000)}
    assert len(payloads) == 20_000


def test_stamp_carries_into_second_value() -> None:
    # 2**22 requests is where the counter first spills into value 1; a shift bug shows here.
    encoder = RequestEncoder([3], pool_size=1)
    encode = encoder.encode
    for _ in range(2**22 + 1):
        last = encode(0, 0, "")
    k = 2**22
    assert InferRequest.FromString(last).input_tensor_raw == stamped(encoder.pool_buffer(0), k)
    assert np.frombuffer(stamped(b"\0" * 12, k), "<f4").tolist() == [0.0, 2.0**-22, 0.0]


@pytest.mark.parametrize("fresh", [False, True])
def test_values_look_uniform(fresh: bool) -> None:
    # 16 equal bins over 150528 values: every count within 6 sigma of n/16 (fixed seed).
    encoder = RequestEncoder(REAL_SHAPE, fresh=fresh, seed=11)
    values = np.frombuffer(InferRequest.FromString(encoder.encode(1, 1, "m")).input_tensor_raw,
                           "<f4")
    counts, _ = np.histogram(values, bins=16, range=(0, 1))
    expected = values.size / 16
    assert np.all(np.abs(counts - expected) < 6 * np.sqrt(expected * 15 / 16))


def fresh_tensors(seed: int, count: int, shape: tuple[int, ...] = (1, 3, 32, 32)) -> list[bytes]:
    encoder = RequestEncoder(shape, fresh=True, seed=seed)
    return [InferRequest.FromString(encoder.encode(1, 1, "m")).input_tensor_raw
            for _ in range(count)]


def test_fresh_requests_differ_almost_everywhere() -> None:
    tensors = [np.frombuffer(t, "<f4") for t in fresh_tensors(seed=5, count=20)]
    for previous, current in zip(tensors, tensors[1:]):
        assert np.all((current >= 0) & (current < 1))
        assert np.mean(previous == current) < 0.01


def test_fresh_is_reproducible_per_seed() -> None:
    assert fresh_tensors(seed=9, count=5) == fresh_tensors(seed=9, count=5)
    assert fresh_tensors(seed=9, count=5) != fresh_tensors(seed=10, count=5)


def test_fresh_has_no_pool() -> None:
    with pytest.raises(ValueError, match="no pool"):
        RequestEncoder([3], fresh=True).pool_buffer(0)


@pytest.mark.parametrize("args, kwargs, error, message", [
    (([1, -3, 2],), {}, ValueError, r"shape\[1\] must be in \[0, 2147483647\], got -3"),
    (([2**31],), {}, ValueError, r"shape\[0\] must be in"),
    (([2**20, 2**20],), {}, ValueError, r"1099511627776 float32 values .* under 2 GiB"),
    (([3],), {"pool_size": 0}, ValueError, r"pool_size must be >= 1, got 0"),
    (([3],), {"tensor_field": 5}, ValueError, r"tensor_field must be 4 .* or 6 .*, got 5"),
    (([3],), {"seed": -1}, ValueError, r"seed must be in \[0, 2\*\*64\), got -1"),
    (([1.5],), {}, TypeError, r"'float' object cannot be interpreted as an integer"),
])
def test_bad_constructor_arguments(args: tuple, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        RequestEncoder(*args, **kwargs)


@pytest.mark.parametrize("tier, deadline_ns, error, message", [
    (2**31, 0, OverflowError, r"tier \(int32\) must be in \[-2147483648, 2147483647\], got "
                              r"2147483648"),
    (-2**31 - 1, 0, OverflowError, r"tier \(int32\) must be in"),
    (1, 2**63, OverflowError, r"deadline_ns \(int64\) must be in .*, got 9223372036854775808"),
    (1, -2**63 - 1, OverflowError, r"deadline_ns \(int64\) must be in"),
    (1.0, 0, TypeError, r"'float' object cannot be interpreted as an integer"),
])
def test_bad_encode_arguments(tier: object, deadline_ns: object, error: type,
                              message: str) -> None:
    encoder = RequestEncoder([3])
    with pytest.raises(error, match=message):
        encoder.encode(tier, deadline_ns, "m")
    assert encoder.encoded == 0


def test_model_name_must_be_str() -> None:
    with pytest.raises(TypeError, match="model_name"):
        RequestEncoder([3]).encode(1, 1, b"resnet50")


def test_requests_are_reused_in_rotation() -> None:
    encoder = RequestEncoder([4], pool_size=2, seed=5)
    first, second = encoder.encode(1, 10, "m"), encoder.encode(1, 11, "m")
    first_copy = memoryview(first).tobytes()
    third = encoder.encode(2, 12, "m")
    assert third is first and second is not first
    assert third != first_copy  # rewritten in place: tier, deadline and stamp changed
    assert InferRequest.FromString(third).deadline_ns == 12


def test_length_change_builds_a_new_request() -> None:
    encoder = RequestEncoder([4], pool_size=1, seed=5)
    short = encoder.encode(1, 1, "m")
    short_copy = memoryview(short).tobytes()
    longer = encoder.encode(1, 1, "model")
    assert longer is not short and short == short_copy
    assert InferRequest.FromString(longer).model_name == "model"
    assert encoder.encode(2, 1, "model") is longer


def test_grpc_sends_the_request_as_it_was_at_call_start() -> None:
    """The reuse contract: grpcio copies the message when the call starts, so rewriting the
    encoder's request right after ``future()`` returns does not touch what the server gets."""
    received: list[bytes] = []

    def infer(request: bytes, _context: grpc.ServicerContext) -> bytes:
        received.append(request)
        return b""

    handler = grpc.method_handlers_generic_handler(
        "scheduler.SchedulerService", {"Infer": grpc.unary_unary_rpc_method_handler(infer)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=(handler,),
                         options=(("grpc.max_receive_message_length", -1),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            infer_call = channel.unary_unary("/scheduler.SchedulerService/Infer")
            encoder = RequestEncoder(REAL_SHAPE, pool_size=1, seed=9)
            sent, calls = [], []
            for k in range(20):
                request = encoder.encode(1, 1740888024000000000 + k, "resnet50")
                sent.append(memoryview(request).tobytes())
                calls.append(infer_call.future(request, timeout=10))
            for call in calls:
                call.result()
    finally:
        server.stop(grace=None)
    assert sorted(received) == sorted(sent)
    assert len(set(sent)) == 20
