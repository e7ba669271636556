"""The h2 transport (fastload.send.h2) against a server built on the ``h2`` library that
misbehaves to order: tiny windows, a stream limit, GOAWAY, RST_STREAM, trailers-only errors,
silence; every byte sent compared with what the server received."""
from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from functools import partial
from typing import Iterator

import grpc
import pytest
from h2_server import H2Server, Misbehaviour

from fastload._pb.scheduler_pb2 import InferRequest, InferResponse
from fastload.send.h2.channel import open_h2_channel
from fastload.targets._encode_scheduler import RequestEncoder

from test_generator import loadgen_query_count, read_rows, run_fastload

METHOD = "/scheduler.SchedulerService/Infer"
SMALL = (1, 3, 32, 32)  # 12 KB tensors
LARGE = (1, 3, 224, 224)  # 602 KB tensors, as the workloads send
WAIT_S = 60.0  # a bound on waiting for calls, not a measurement


@pytest.fixture
def serve() -> Iterator:
    servers: list[H2Server] = []

    def start(**rules) -> H2Server:
        servers.append(H2Server(Misbehaviour(**rules)))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def framed(request: bytes) -> bytes:
    return b"\x00" + len(request).to_bytes(4, "big") + request


def run_calls(address: str, waves: list[int], shape=SMALL, timeout_s: float = 10.0,
              metadata: tuple[tuple[str, str], ...] = ()) -> tuple[list, list[bytes]]:
    """Start each wave's calls back to back from one encoder (as the dispatcher does, so its
    bytes are rewritten while calls wait), waiting for a wave's calls before the next; the
    calls' ends and each request's bytes as they were when sent."""
    encoder = RequestEncoder(shape, seed=7)
    ends: list = []
    sent: list[bytes] = []

    async def main() -> None:
        channel = await open_h2_channel(address, timeout_s, metadata, METHOD)
        for size in waves:
            left = asyncio.Event()
            pending = [size]

            def ended(index: int, code, message, response) -> None:
                ends[index] = (code, message, response)
                pending[0] -= 1
                if pending[0] == 0:
                    left.set()

            for _ in range(size):
                payload = encoder.encode(1 + len(sent) % 3, time.time_ns() + 10**9, "resnet50")
                sent.append(memoryview(payload).tobytes())  # the encoder reuses payload
                ends.append(None)
                channel.start(payload, partial(ended, len(ends) - 1))
            await asyncio.wait_for(left.wait(), WAIT_S)
        await channel.close()

    asyncio.run(main())
    return ends, sent


def assert_all_ok(ends: list) -> None:
    for code, message, response in ends:
        assert code is grpc.StatusCode.OK, message
        assert InferResponse.FromString(response).success


def test_requests_reach_the_server_byte_exact_through_tiny_windows(serve):
    server = serve(initial_window=1_000)
    ends, sent = run_calls(server.address, [20, 3], shape=SMALL)
    ends2, sent2 = run_calls(server.address, [2], shape=LARGE)
    assert_all_ok(ends + ends2)
    assert server.seen.requests == [framed(request) for request in sent + sent2]
    assert server.seen.errors == []


def test_a_stream_limit_of_one_holds_calls_back_in_order(serve):
    server = serve(max_streams=1)
    ends, sent = run_calls(server.address, [12, 5])
    assert_all_ok(ends)
    assert server.seen.requests == [framed(request) for request in sent]
    assert server.seen.errors == []  # h2 refuses a second concurrent stream as an error


def test_goaway_moves_later_calls_to_a_new_connection(serve):
    server = serve(goaway_after=5)
    ends, sent = run_calls(server.address, [5, 5, 5])
    assert_all_ok(ends)
    assert server.seen.connections == 3
    assert server.seen.requests == [framed(request) for request in sent]


def test_calls_the_server_went_away_before_end_unavailable(serve):
    server = serve(goaway_after=3)
    ends, _ = run_calls(server.address, [10, 4])
    codes = [code for code, _, _ in ends]
    # GOAWAY names stream 5, the third: the seven after it were never processed.
    assert codes[:3] == [grpc.StatusCode.OK] * 3
    assert codes[3:10] == [grpc.StatusCode.UNAVAILABLE] * 7
    assert all("GOAWAY" in message for _, message, _ in ends[3:10])
    assert codes[10:] == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.UNAVAILABLE]


def test_resets_and_trailers_only_errors_end_their_calls_only(serve):
    server = serve(max_streams=1, reset_every=3, error_every=4)
    ends, sent = run_calls(server.address, [12])
    by_arrival = [ends[sent.index(message[5:])] for message in server.seen.requests]
    for n, (code, message, response) in enumerate(by_arrival, start=1):
        if n % 3 == 0:
            assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, message
        elif n % 4 == 0:
            assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, "bad tensor %")
        else:
            assert code is grpc.StatusCode.OK and InferResponse.FromString(response).success


def test_a_call_past_its_deadline_ends_and_resets_its_stream(serve):
    server = serve(silent_every=2)
    started = time.monotonic()
    ends, _ = run_calls(server.address, [4], timeout_s=0.3)
    assert time.monotonic() - started < WAIT_S
    codes = sorted(code.name for code, _, _ in ends)
    assert codes == ["DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED", "OK", "OK"]
    deadline = time.monotonic() + WAIT_S
    while len(server.seen.resets) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.seen.resets == [8, 8]  # CANCEL, as grpcio sends it


def test_headers_carry_the_deadline_content_type_and_metadata(serve):
    server = serve()
    run_calls(server.address, [1], timeout_s=2.5,
              metadata=(("authorization", "Bearer s3cret"), ("x-run", "a.b")))
    [headers] = server.seen.headers
    assert headers[":method"] == "POST" and headers[":path"] == METHOD
    assert headers[":scheme"] == "http" and headers[":authority"] == server.address
    assert headers["content-type"] == "application/grpc" and headers["te"] == "trailers"
    assert headers["grpc-timeout"] == "2500m"
    assert headers["authorization"] == "Bearer s3cret" and headers["x-run"] == "a.b"
    assert headers["user-agent"].startswith("fastload/")


def test_an_unreachable_server_ends_calls_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        ends, _ = run_calls(address, [3])
    for code, message, _ in ends:
        assert code is grpc.StatusCode.UNAVAILABLE
        assert f"cannot reach {address}" in message


def test_requests_decode_as_the_encoder_built_them(serve):
    server = serve()
    run_calls(server.address, [4], shape=LARGE)
    tiers = [InferRequest.FromString(message[5:]).tier for message in server.seen.requests]
    assert tiers == [1, 2, 3, 1]


def test_a_run_over_h2_records_every_sample_through_goaways_and_errors(tmp_path, serve):
    server = serve(goaway_after=40, error_every=7, max_streams=4, initial_window=20_000)
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", server.address, "--transport",
                                  "h2", "--total-qps", "150", "--duration-ms", "2000",
                                  "--seed", "3")
    assert proc.returncode == 1, proc.stderr  # some requests failed, as ordered
    assert "over h2" in proc.stdout
    rows = read_rows(csv_path)
    assert len(rows) == loadgen_query_count(tmp_path / "logs")
    statuses = Counter(row["status"] for row in rows)
    received = len(server.seen.requests)
    assert statuses["INVALID_ARGUMENT"] == received // 7
    assert statuses["OK"] == received - received // 7
    # Calls sent while a GOAWAY was on its way were never processed: UNAVAILABLE, nothing else.
    assert set(statuses) <= {"OK", "INVALID_ARGUMENT", "UNAVAILABLE"}
    assert statuses["OK"] + statuses["INVALID_ARGUMENT"] + statuses["UNAVAILABLE"] == len(rows)
    assert server.seen.connections >= len(rows) // 40 and server.seen.errors == []


def test_metadata_longer_than_a_frame_goes_in_continuations(serve):
    server = serve()
    token = "t" * 40_000  # more than the 16 KiB frames the server takes
    ends, _ = run_calls(server.address, [3], metadata=(("authorization", token),))
    assert_all_ok(ends)
    assert [headers["authorization"] for headers in server.seen.headers] == [token] * 3


def test_a_malformed_frame_ends_the_connection_with_its_error_and_calls_go_on(serve):
    server = serve(garbage_after=3)  # then SETTINGS of 5 bytes: a FRAME_SIZE_ERROR
    ends, sent = run_calls(server.address, [3, 3])
    assert_all_ok(ends)
    assert server.seen.requests == [framed(request) for request in sent]
    assert server.seen.connections == 2 and 0x6 in server.seen.goaways
