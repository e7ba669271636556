"""The reference scheduler as a real subprocess: serving, policy order, expiry, bad input,
shutdown and flags, and the overload behaviour it exists to show."""
from __future__ import annotations

import math
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Callable, Iterator

import grpc
import pytest

from fastload._pb import scheduler_pb2 as pb
from fastload.scheduler.server import MAX_MESSAGE_BYTES
from fastload.scheduler.spawn import SchedulerProcess

INFER = "/scheduler.SchedulerService/Infer"
REPO_ROOT = Path(__file__).resolve().parents[1]
FAR_NS = 60 * 10**9


def make_request(
    *,
    tier: int = 1,
    model: str = "resnet50",
    deadline_in_ns: int = FAR_NS,
    field: str = "raw",
    shape: tuple[int, ...] = (2, 2),
) -> pb.InferRequest:
    """A valid request (unless the caller breaks it) with a tensor matching `shape`."""
    elements = math.prod(shape)
    req = pb.InferRequest(
        tier=tier, deadline_ns=time.time_ns() + deadline_in_ns, model_name=model, input_shape=shape
    )
    if field == "raw":
        req.input_tensor_raw = b"\x00\x00\x80\x3f" * elements
    else:
        req.input_tensor.extend([1.0] * elements)
    return req


class Client:
    """Raw-bytes calls to Infer, so tests can send anything, even bytes that are not a proto."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self._call = self.channel.unary_unary(INFER)

    def send(self, data: bytes, timeout_s: float = 10.0) -> pb.InferResponse:
        return pb.InferResponse.FromString(self._call(data, timeout=timeout_s))

    def infer(self, req: pb.InferRequest, timeout_s: float = 10.0) -> pb.InferResponse:
        return self.send(req.SerializeToString(), timeout_s)

    def infer_future(self, req: pb.InferRequest, timeout_s: float = 30.0) -> grpc.Future:
        return self._call.future(req.SerializeToString(), timeout=timeout_s)

    @staticmethod
    def response(future: grpc.Future) -> pb.InferResponse:
        return pb.InferResponse.FromString(future.result())

    def assert_still_serving(self) -> None:
        resp = self.infer(make_request())
        assert resp.success, resp.message


@pytest.fixture
def connect() -> Iterator[Callable[[SchedulerProcess], Client]]:
    clients: list[Client] = []

    def make(process: SchedulerProcess) -> Client:
        clients.append(Client(process.address))
        return clients[-1]

    yield make
    for client in clients:
        client.channel.close()


@pytest.mark.parametrize("field", ["raw", "float"])
def test_serves_full_tensor_in_either_field(scheduler, connect, field):
    req = make_request(field=field, shape=(1, 3, 224, 224))
    resp = connect(scheduler).infer(req)
    assert (resp.success, resp.message, resp.deadline_ns) == (True, "completed", req.deadline_ns)


# (tier, deadline offset ms) in arrival order; priority serves by tier, deadline, then arrival.
ARRIVALS = [(3, 100), (1, 500), (2, 0), (1, 200), (1, 500), (2, 0)]


@pytest.mark.parametrize(
    "policy, expected",
    [("fifo", [0, 1, 2, 3, 4, 5]), ("priority", [3, 1, 4, 2, 5, 0])],
)
def test_policy_serves_in_order(start_scheduler, connect, policy, expected):
    client = connect(
        start_scheduler("--policy", policy, "--service-ms", "block=200", "--service-ms", "slow=30")
    )
    blocker = client.infer_future(make_request(tier=3, model="block"))
    time.sleep(0.05)  # the blocker holds the only GPU while the others queue behind it
    done_order: list[int] = []
    futures = []
    for i, (tier, offset_ms) in enumerate(ARRIVALS):
        req = make_request(tier=tier, model="slow", deadline_in_ns=FAR_NS + offset_ms * 10**6)
        futures.append(client.infer_future(req))
        futures[-1].add_done_callback(lambda _, i=i: done_order.append(i))
        time.sleep(0.005)
    assert all(client.response(f).success for f in [blocker, *futures])
    assert done_order == expected


def test_past_deadline_expires_without_service(start_scheduler, connect):
    client = connect(start_scheduler("--service-ms", "slow=1000"))
    req = make_request(model="slow", deadline_in_ns=-10**9)
    start = time.perf_counter()
    resp = client.infer(req)
    assert (resp.success, resp.message) == (False, "deadline expired")
    assert resp.deadline_ns == req.deadline_ns
    assert time.perf_counter() - start < 0.5


def test_deadline_expires_while_queued(start_scheduler, connect):
    client = connect(start_scheduler("--service-ms", "slow=500"))
    blocker = client.infer_future(make_request(model="slow"))
    time.sleep(0.05)
    start = time.perf_counter()
    resp = client.infer(make_request(model="slow", deadline_in_ns=100 * 10**6))
    waited_s = time.perf_counter() - start
    assert (resp.success, resp.message) == (False, "deadline expired")
    assert 0.08 < waited_s < 0.3  # answered at its deadline, not when the GPU came free
    assert client.response(blocker).success


def test_started_job_completes_past_its_deadline(start_scheduler, connect):
    client = connect(start_scheduler("--service-ms", "slow=300"))
    start = time.perf_counter()
    resp = client.infer(make_request(model="slow", deadline_in_ns=100 * 10**6))
    assert (resp.success, resp.message) == (True, "completed")
    assert time.perf_counter() - start > 0.3


def _with(**fields: object) -> bytes:
    req = make_request()
    for name, value in fields.items():
        if isinstance(value, list):
            del getattr(req, name)[:]
            getattr(req, name).extend(value)
        else:
            setattr(req, name, value)
    return req.SerializeToString()


BAD_INPUTS = {
    "truncated length prefix": (b"\x1a\x05ab", "not a valid InferRequest"),
    "bad wire type": (b"\xff\xff\xff\xff", "not a valid InferRequest"),
    "tier 0": (_with(tier=0), "tier must be one of 1, 2, 3, got 0"),
    "tier 4": (_with(tier=4), "tier must be one of 1, 2, 3, got 4"),
    "unknown model": (_with(model_name="bert"), "unknown model 'bert'"),
    "raw length": (_with(input_tensor_raw=b"\x00" * 15), "input_tensor_raw has 15 bytes"),
    "float count": (_with(input_tensor_raw=b"", input_tensor=[1.0] * 5), "input_tensor has 5"),
    "negative dim": (_with(input_shape=[-2, -2]), "negative dimensions"),
    "too many dims": (_with(input_shape=[1] * 1000), "1000 dimensions"),
    "zero deadline": (_with(deadline_ns=0), "deadline_ns must be a positive"),
    "negative deadline": (_with(deadline_ns=-5), "got -5"),
}


@pytest.mark.parametrize("data, detail", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_invalid_argument(scheduler, connect, data, detail):
    client = connect(scheduler)
    with pytest.raises(grpc.RpcError) as info:
        client.send(data)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in info.value.details()
    client.assert_still_serving()


def _mutations(valid: bytes, rng: random.Random) -> Iterator[bytes]:
    for _ in range(150):
        yield rng.randbytes(rng.randrange(0, 2000))
    for _ in range(150):
        flipped = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        yield bytes(flipped)
    for _ in range(50):
        yield valid[: rng.randrange(len(valid))]
    for _ in range(50):
        cut = rng.randrange(len(valid))
        yield valid[:cut] + rng.randbytes(rng.randrange(1, 64)) + valid[cut:]
    yield valid + rng.randbytes(8 * 1024 * 1024)
    yield b"\x32\xff\xff\xff\xff\x0f"  # field 6 claiming a 4 GiB payload


def test_fuzzed_bytes_never_break_it(start_scheduler, connect):
    process = start_scheduler("--service-ms", "resnet50=0", "--gpus", "4")
    client = connect(process)
    rng = random.Random(20240611)
    codes: dict[grpc.StatusCode, int] = {}
    sent = 0
    for data in _mutations(make_request(field="float").SerializeToString(), rng):
        sent += 1
        try:
            client.send(data)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
        codes[code] = codes.get(code, 0) + 1
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}, codes
    assert codes.get(grpc.StatusCode.INVALID_ARGUMENT, 0) > sent // 2

    with pytest.raises(grpc.RpcError) as info:
        client.send(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    client.assert_still_serving()

    stats = _stats(process.stop())
    assert stats["received"] == sent + 1
    assert stats["received"] == stats["completed"] + stats["expired"] + stats["rejected"]


def _stats(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"stats: ((?:\w+=\d+ ?)+)\n", result.stdout)
    assert match, result.stdout
    return {k: int(v) for k, v in (pair.split("=") for pair in match[1].split())}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly_with_stats(start_scheduler, connect, sig):
    process = start_scheduler("--service-ms", "slow=10000")
    assert process.port > 0
    client = connect(process)
    client.assert_still_serving()
    with pytest.raises(grpc.RpcError):
        client.send(_with(tier=9))
    stuck = client.infer_future(make_request(model="slow"))
    time.sleep(0.1)
    start = time.perf_counter()
    stats = _stats(process.stop(sig))
    assert time.perf_counter() - start < 5
    assert stats == dict(received=3, completed=1, expired=0, rejected=1, cancelled=1)
    assert stuck.exception() is not None


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastload.scheduler", *args],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=REPO_ROOT,
    )


BAD_FLAGS = [
    ("--gpus", "0"),
    ("--port", "70000"),
    ("--policy", "lifo"),
    ("--service-ms", "resnet50"),
    ("--service-ms", "vit=-1"),
    ("--service-ms", "=5"),
    ("--bogus",),
]


@pytest.mark.parametrize("args", BAD_FLAGS, ids=" ".join)
def test_bad_flags_exit_2_with_one_line(args):
    result = _run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert re.fullmatch(r"python -m fastload\.scheduler: error: [^\n]+\n", result.stderr)


def test_taken_port_exits_1(scheduler):
    result = _run_cli("--port", str(scheduler.port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{scheduler.port}" in result.stderr


def _urgent_attainment(client: Client, qps: float, seconds: float) -> float:
    """Open-loop load at `qps`: every 4th request tier-1 urgent (100 ms), the rest tier-3 (1 s).

    Attained = answered with success by its deadline, as the client sees it.
    """
    urgent: list[tuple[int, grpc.Future, Future[int]]] = []
    others: list[grpc.Future] = []  # kept only because a dropped gRPC future cancels its call
    start = time.perf_counter()
    for i in range(int(qps * seconds)):
        time.sleep(max(0.0, start + i / qps - time.perf_counter()))
        is_urgent = i % 4 == 0
        slo_ms = 100 if is_urgent else 1000
        req = make_request(tier=1 if is_urgent else 3, deadline_in_ns=slo_ms * 10**6)
        future = client.infer_future(req)
        if is_urgent:
            done_ns: Future[int] = Future()
            future.add_done_callback(lambda _, done_ns=done_ns: done_ns.set_result(time.time_ns()))
            urgent.append((req.deadline_ns, future, done_ns))
        else:
            others.append(future)
    met = [
        client.response(future).success and done_ns.result(timeout=10) <= deadline_ns
        for deadline_ns, future, done_ns in urgent
    ]
    return sum(met) / len(met)


def test_overload_priority_keeps_urgent_slo_fifo_does_not(start_scheduler, connect):
    # One GPU at 10 ms serves 100 QPS; 200 QPS offered, a quarter of it urgent.
    attainment = {
        policy: _urgent_attainment(
            connect(start_scheduler("--policy", policy, "--service-ms", "resnet50=10")), 200, 1.5
        )
        for policy in ("fifo", "priority")
    }
    assert attainment["priority"] >= 0.9, attainment
    assert attainment["fifo"] <= 0.5, attainment
