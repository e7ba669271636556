"""fastload --protocol kserve against a real third-party KServe v2 server: MLServer 1.7 with a
tiny runtime (tests/mlserver/runtime.py), started as a subprocess on 127.0.0.1.

MLServer lives in a venv of its own, made by tests/mlserver/install.sh (CI runs it); without it
these tests are skipped, unless $FASTLOAD_MLSERVER names the executable, then they must run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from fastload._pb import kserve_pb2 as pb
from fastload.contract.config import server_metrics_path
from fastload.scrape.series_file import read_series

from test_generator import read_rows, run_fastload

REPO = Path(__file__).resolve().parents[1]
MODEL, INPUT_NAME = "echo16", "pixel_values"
START_TIMEOUT_S = 60.0
SMALL_WORKLOAD = (
    'name = "small"\n'
    "[models.resnet50]\nshape = [1, 16]\n"
    '[[classes]]\ntier = 1\nslo = "urgent"\nfraction = 0.5\n'
    '[[classes]]\ntier = 3\nslo = "relaxed"\nfraction = 0.5\n'
    "models = { resnet50 = 1.0 }\n"
)


def mlserver_executable() -> str:
    named = os.environ.get("FASTLOAD_MLSERVER")
    if named:
        assert os.access(named, os.X_OK), f"$FASTLOAD_MLSERVER={named} is not executable"
        return named
    local = REPO / ".venv-mlserver" / "bin" / "mlserver"
    if local.exists():
        return str(local)
    pytest.skip("MLServer not installed: run tests/mlserver/install.sh")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MLServer:
    """`mlserver start` on a models folder holding one EchoModel, ready once constructed; its
    Prometheus metrics at ``metrics_url`` (its own server, on a port of its own)."""

    def __init__(self, executable: str, folder: Path, service_ms: float = 0.0) -> None:
        self.port = free_port()
        metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.seen_log = folder / "seen.jsonl"
        self.seen_log.touch()
        models = folder / "models"
        (models / MODEL).mkdir(parents=True)
        shutil.copy(REPO / "tests" / "mlserver" / "runtime.py", models / "runtime.py")
        (models / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "grpc_port": self.port, "http_port": 0, "debug": False,
            # parallel_workers 0: MLServer 1.7.1's workers die at start beside uvloop 0.23
            # (asyncio.get_event_loop() in mlserver/parallel/worker.py).
            "parallel_workers": 0, "metrics_endpoint": "/metrics", "metrics_port": metrics_port,
            "load_models_at_startup": True}))
        (models / MODEL / "model-settings.json").write_text(json.dumps({
            "name": MODEL, "implementation": "runtime.EchoModel", "versions": ["1"],
            "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 16]}],
            "outputs": [{"name": "mean", "datatype": "FP32", "shape": [-1, 1]}],
            "parameters": {"version": "1"}}))
        self.log = open(folder / "mlserver.log", "w")
        self.proc = subprocess.Popen(
            [executable, "start", str(models)], cwd=models, stdout=self.log,
            stderr=subprocess.STDOUT, env={**os.environ, "ECHO_SEEN_LOG": str(self.seen_log),
                                           "ECHO_SERVICE_MS": str(service_ms)},
            start_new_session=True)
        self.address = f"127.0.0.1:{self.port}"
        try:
            self._wait_ready(folder / "mlserver.log")
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, log: Path) -> None:
        channel = grpc.insecure_channel(self.address, options=[
            ("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 100)])
        ready = channel.unary_unary("/inference.GRPCInferenceService/ModelReady",
                                    request_serializer=pb.ModelReadyRequest.SerializeToString,
                                    response_deserializer=pb.ModelReadyResponse.FromString)
        deadline = time.monotonic() + START_TIMEOUT_S
        with channel:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mlserver exited {self.proc.returncode}: "
                                       f"{log.read_text()[-2000:]}")
                try:
                    if ready(pb.ModelReadyRequest(name=MODEL), timeout=1).ready:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"mlserver not ready in {START_TIMEOUT_S:g} s: "
                           f"{log.read_text()[-2000:]}")

    def seen(self) -> list[dict]:
        return [json.loads(line) for line in self.seen_log.read_text().splitlines()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServer]:
    server = MLServer(mlserver_executable(), tmp_path_factory.mktemp("mlserver"))
    yield server
    server.stop()
    assert server.proc.returncode == 0


@pytest.fixture
def small_workload(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL_WORKLOAD)
    return path


def test_every_sample_answered_with_its_timeout(tmp_path: Path, mlserver: MLServer,
                                                small_workload: Path) -> None:
    before = len(mlserver.seen())
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", mlserver.address,
                                  "--protocol", "kserve", "--model-map", f"resnet50={MODEL}:1",
                                  "--workload-file", str(small_workload), "--total-qps", "100",
                                  "--duration-ms", "3000", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(csv_path)
    assert len(rows) > 200
    assert {(r["status"], r["success"]) for r in rows} == {("OK", "True")}
    seen = mlserver.seen()[before:]
    assert len(seen) == len(rows)
    assert {tuple(map(str, s["input"])) for s in seen} == {(INPUT_NAME, "FP32", "[1, 16]")}
    # MLServer's proto knows InferParameter fields 1-3 only: the uint64 priority arrives as
    # None; the int64 timeout as sent, at most the loosest SLO (2 s) in µs.
    assert all(s["parameters"]["priority"] is None for s in seen)
    timeouts_us = [s["parameters"]["timeout"] for s in seen]
    assert all(isinstance(t, int) and 0 < t <= 2_000_000 for t in timeouts_us)
    assert sum(t <= 100_000 for t in timeouts_us) == sum(r["slo"] == "urgent" for r in rows)
    assert len({tuple(s["values"]) for s in seen}) == len(seen)  # unique tensors


def test_models_that_do_not_fit_stop_before_traffic(tmp_path: Path, mlserver: MLServer) -> None:
    before = len(mlserver.seen())
    proc, csv_path = run_fastload(tmp_path / "shape", "--scheduler-url", mlserver.address,
                                  "--protocol", "kserve", "--model-map", f"resnet50={MODEL}",
                                  "--model-map", f"vit={MODEL}", timeout_s=60)
    assert proc.returncode == 2, proc.stderr
    assert (f"model {MODEL} input '{INPUT_NAME}' has shape [-1, 16]; the workload sends "
            f"resnet50 as [1, 3, 224, 224]") in proc.stderr
    assert not csv_path.exists()
    proc, csv_path = run_fastload(tmp_path / "missing", "--scheduler-url", mlserver.address,
                                  "--protocol", "kserve", "--model-map", "resnet50=nope",
                                  timeout_s=60)
    assert proc.returncode == 3, proc.stderr
    assert "ModelReady for model nope failed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not csv_path.exists()
    assert len(mlserver.seen()) == before


def test_a_server_that_drops_priority_is_found_to_ignore_it(tmp_path: Path) -> None:
    """MLServer drops KServe's uint64 `priority`: with 8 ms per answer (125 QPS of capacity) at
    160 QPS, sending each tier's priority or the same one for all changes nothing. Both classes
    are urgent: a server that honoured priority would keep tier 1 (80 QPS) within its 100 ms,
    while the FIFO queue, growing 35 requests a second, misses it for both within a second. (A
    2 s SLO would cross the growing queue's wait at a time that varies run to run by seconds:
    its attainment differs between two runs of one seed by 10 points or more.)"""
    (tmp_path / "server").mkdir()
    server = MLServer(mlserver_executable(), tmp_path / "server", service_ms=8)
    try:
        (tmp_path / "small.toml").write_text(SMALL_WORKLOAD.replace('"relaxed"', '"urgent"'))
        proc = subprocess.run(
            [sys.executable, "-m", "fastload.sweep", "--qps", "160", "--workload", "small.toml",
             "--scheduler-url", server.address, "--protocol", "kserve", "--model-map",
             f"resnet50={MODEL}:1", "--priority-signal", "as-is,equal", "--duration-ms", "8000",
             "--min-query-count", "1", "--seed", "6", "--quiet", "--output-dir", "out"],
            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    finally:
        server.stop()
    assert proc.returncode in (0, 1), proc.stderr
    effect = json.loads((tmp_path / "out" / "sweep.json").read_text())["priority_effect"]["small"]
    assert effect["verdict"] == "ignored", effect["why"]
    assert ("sweep: priority ignored (small): no class's SLO attainment changes by "
            "10 points") in proc.stdout
    assert all(s["parameters"]["priority"] is None for s in server.seen())


def test_its_metrics_count_every_request_the_csv_says_was_answered(
        tmp_path: Path, mlserver: MLServer, small_workload: Path) -> None:
    """MLServer's own metrics server, scraped through the run: its success counter grew by
    exactly the rows answered OK (the module's server may have counted earlier tests' requests
    before GO; a labelled counter appears at its first increment, from 0)."""
    proc, csv_path = run_fastload(
        tmp_path, "--protocol", "kserve", "--scheduler-url", mlserver.address,
        "--workload-file", str(small_workload), "--model-map", f"resnet50={MODEL}:1",
        "--total-qps", "50", "--duration-ms", "2000", "--seed", "9",
        "--server-metrics", mlserver.metrics_url, "--server-metrics-interval-ms", "250")
    assert proc.returncode == 0, proc.stderr
    path = server_metrics_path(csv_path)
    success = [s for s in read_series(path, {"model_infer_request_success_total"})
               if s.labels == {"model": MODEL, "version": "1"}]
    assert len(success) == 1, [s.describe() for s in read_series(path)][:20]
    first_scrape_ms = min(s.times_ms[0] for s in read_series(path))
    before = success[0].values[0] if success[0].times_ms[0] == first_scrape_ms else 0.0
    answered = sum(r["status"] == "OK" for r in read_rows(csv_path))
    assert answered > 0 and success[0].values[-1] - before == answered
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    (endpoint,) = summary["server_metrics"]
    assert endpoint["endpoint"] == mlserver.metrics_url and endpoint["failed"] == 0
