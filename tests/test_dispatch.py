"""The senders against a server that keeps every request it receives (grpcio's sync server):
bursts of simultaneous arrivals must reach the wire intact, each request with its own tier,
deadline and tensor, even though encoders reuse their bytes (grpc.aio copies them only when a
call's task first runs; the h2 transport copies only what the kernel does not take at once);
--processes N shares one stream over N channels into one CSV, and a dead sender ends the run."""
from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent import futures
from typing import Iterator

import grpc
import numpy as np
import psutil
import pytest

from fastload._pb.scheduler_pb2 import InferRequest, InferResponse

from test_faults import start_fastload, wait_for_output, wait_for_rows
from test_generator import in_issue_order, read_rows, run_fastload

BURSTS, BURST_SIZE = 6, 40  # each burst: more simultaneous samples than an encoder's pool


class RecordingServer:
    """scheduler.SchedulerService/Infer on 127.0.0.1 that answers success and keeps requests."""

    def __init__(self) -> None:
        self.requests: list[InferRequest] = []
        self.peers: list[str] = []  # each request's client address: one per channel
        self._lock = threading.Lock()
        handler = grpc.method_handlers_generic_handler("scheduler.SchedulerService", {
            "Infer": grpc.unary_unary_rpc_method_handler(
                self._infer, request_deserializer=InferRequest.FromString,
                response_serializer=InferResponse.SerializeToString)})
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self._server.start()

    def _infer(self, request: InferRequest, context: grpc.ServicerContext) -> InferResponse:
        with self._lock:
            self.requests.append(request)
            self.peers.append(context.peer())
        return InferResponse(success=True)

    def stop(self) -> None:
        self._server.stop(grace=None).wait()


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.stop()


@pytest.mark.parametrize("fresh, processes, transport", [
    (False, 1, "h2"), (True, 1, "h2"), (False, 3, "h2"),
    (False, 1, "grpcio"), (False, 3, "grpcio")])
def test_bursts_reach_the_wire_intact(tmp_path, recording_server, fresh, processes, transport):
    trace = tmp_path / "bursts.csv"
    trace.write_text("Timestamp,tier,slo,model\n" + "".join(
        f"{1_000 + 200 * burst},{1 + i % 3},urgent,resnet50\n"
        for burst in range(BURSTS) for i in range(BURST_SIZE)))
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", recording_server.address,
                                  "--arrival-trace", str(trace), "--seed", "5",
                                  "--processes", str(processes), "--transport", transport,
                                  # A burst at one instant is sent one request after another:
                                  # here the client's delay is the point, not a fault.
                                  "--max-lag-ms", "10000",
                                  *(["--fresh-tensors"] if fresh else []))
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(csv_path)
    assert len(rows) == BURSTS * BURST_SIZE
    assert {r["status"] for r in rows} == {"OK"}
    received = recording_server.requests
    assert len(received) == len(rows)
    # Every request carries the tier and deadline of exactly one sample ...
    assert Counter((r.tier, r.deadline_ns) for r in received) == \
        Counter((int(r["tier"]), int(r["deadline_ns"])) for r in rows)
    # ... and a tensor no other request carries.
    assert len({r.input_tensor_raw for r in received}) == len(received)


def test_sender_processes_share_one_stream_and_one_csv(tmp_path, recording_server):
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", recording_server.address,
                                  "--total-qps", "300", "--duration-ms", "3000", "--seed", "8",
                                  "--processes", "3")
    assert proc.returncode == 0, proc.stderr
    rows = in_issue_order(read_rows(csv_path))  # one row per sample, ids 0..n-1
    assert {r["status"] for r in rows} == {"OK"}
    received = recording_server.requests
    assert len(received) == len(rows) > 800
    assert Counter((r.tier, r.deadline_ns) for r in received) == \
        Counter((int(r["tier"]), int(r["deadline_ns"])) for r in rows)
    assert len({r.input_tensor_raw for r in received}) == len(received)
    # Three channels, one per sender process, and every one carried a fair part.
    by_peer = Counter(recording_server.peers)
    assert len(by_peer) == 3 and min(by_peer.values()) > len(rows) / 10, by_peer
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    assert summary["overall"]["count"] == len(rows)
    gaps_s = np.diff([int(r["issue_mono_ns"]) for r in rows]) / 1e9
    assert abs(gaps_s.std() / gaps_s.mean() - 1) < 0.1  # still LoadGen's Poisson stream


def test_a_dead_sender_process_ends_the_run_with_exit_4(tmp_path, recording_server):
    proc, csv_path = start_fastload(tmp_path, "--scheduler-url", recording_server.address,
                                    "--total-qps", "200", "--duration-ms", "60000",
                                    "--processes", "2")
    try:
        wait_for_output(proc, "fastload: seed")
        wait_for_rows(proc, csv_path, 101)
        senders = [child for child in psutil.Process(proc.pid).children()
                   if any(c.raddr and c.raddr.port == recording_server.port
                          for c in child.net_connections("tcp"))]
        assert len(senders) == 2
        senders[0].kill()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 4, err
    assert "sender process fastload-sender-" in err and "died" in err
    rows = read_rows(csv_path)
    assert len(rows) > 100 and {r["status"] for r in rows} == {"OK"}


def test_sender_processes_report_every_arrival_process_ended(tmp_path, recording_server):
    # Nine LoadGen processes: each one's ENDED record reaches whichever sender reads it, and
    # the main process must hear of all nine (else exit 4, "exited before its test ended").
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", recording_server.address,
                                  "--total-qps", "200", "--duration-ms", "2000", "--seed", "9",
                                  "--loadgen-per-class", "--processes", "2")
    assert proc.returncode == 0, proc.stderr
    rows = in_issue_order(read_rows(csv_path))
    assert len(rows) == len(recording_server.requests) > 200
    assert len({r["issuer"] for r in rows}) == 9
