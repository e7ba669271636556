"""The reference scheduler's Prometheus metrics (--metrics-port), scraped over HTTP and parsed
with prometheus_client's own parser: they count what fastload's CSV recorded."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastload.scheduler.metrics import BusySeconds

from test_generator import read_rows, run_fastload

SERVICE_S = 0.004  # resnet50's service time here: 250 QPS of capacity on one simulated GPU
WORKLOAD = (
    '[models.resnet50]\nshape = [1, 16]\n'
    '[[classes]]\ntier = 1\nslo = "urgent"\nfraction = 0.3\nmodels = { resnet50 = 1.0 }\n'
    '[[classes]]\ntier = 3\nslo = "urgent"\nfraction = 0.7\nmodels = { resnet50 = 1.0 }\n'
)


def scrape(url: str) -> dict[str, list]:
    """Every sample of the page, by sample name: [(labels, value), ...]."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def by(samples: list, *keys: str) -> dict:
    return {tuple(labels[k] for k in keys): value for labels, value in samples}


def test_the_scheduler_counts_what_fastload_recorded(tmp_path: Path, start_scheduler) -> None:
    """One GPU at 300 QPS (1.2x capacity) under priority: tier 3 waits and some of it expires."""
    scheduler = start_scheduler("--gpus", "1", "--policy", "priority",
                                "--service-ms", f"resnet50={SERVICE_S * 1000:g}",
                                "--metrics-port", "0")
    (tmp_path / "w.toml").write_text(WORKLOAD)
    # Before any request, every series of the spec's tiers, the models and the GPU is there, at 0.
    idle = scrape(scheduler.metrics_url)
    assert by(idle["fastload_scheduler_requests_total"], "tier", "outcome") == {
        (tier, outcome): 0 for tier in "123" for outcome in ("answered", "expired", "cancelled")}
    assert set(by(idle["fastload_scheduler_queue_length"], "tier", "model")) == {
        (tier, model) for tier in "123" for model in ("resnet50", "vit")}
    assert by(idle["fastload_scheduler_in_service"], "gpu") == {("0",): 0}
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", scheduler.address,
                                  "--workload-file", str(tmp_path / "w.toml"),
                                  "--total-qps", "300", "--duration-ms", "3000", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    samples = scrape(scheduler.metrics_url)
    rows = read_rows(csv_path)
    recorded = Counter((r["tier"], "answered" if r["success"] == "True" else "expired")
                       for r in rows)
    counted = by(samples["fastload_scheduler_requests_total"], "tier", "outcome")
    assert {key: int(value) for key, value in counted.items() if value} == dict(recorded)
    assert recorded[("3", "expired")] > 0  # loaded enough that the queue mattered
    answered = sum(n for (_, outcome), n in recorded.items() if outcome == "answered")
    # Every request left the queue and every GPU is idle once the run is over.
    assert set(by(samples["fastload_scheduler_queue_length"], "tier", "model").values()) == {0}
    assert by(samples["fastload_scheduler_in_service"], "gpu") == {("0",): 0}
    busy = by(samples["fastload_scheduler_gpu_busy_seconds_total"], "gpu")[("0",)]
    assert busy == pytest.approx(answered * SERVICE_S)
    served = by(samples["fastload_scheduler_service_seconds_count"], "model")
    assert served == {("resnet50",): answered, ("vit",): 0}
    waits = by(samples["fastload_scheduler_queue_wait_seconds_count"], "tier")
    assert {tier: int(n) for (tier,), n in waits.items() if n} == {
        tier: n for (tier, outcome), n in recorded.items() if outcome == "answered"}


def test_a_taken_metrics_port_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "fastload.scheduler", "--port", "0",
                               "--metrics-port", str(port)],
                              capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_busy_seconds_count_a_service_in_progress_up_to_the_scrape():
    """A GPU's busy seconds grow while it serves, never faster than time passes, and a
    finished service counts its simulated length exactly."""
    busy = BusySeconds(2)

    def values() -> dict[str, float]:
        (family,) = busy.collect()
        return {sample.labels["gpu"]: sample.value for sample in family.samples}

    started = time.monotonic()
    busy.start(0, 1000.0)
    first = values()
    second = values()
    assert 0 <= first["0"] <= second["0"] <= time.monotonic() - started
    assert first["1"] == second["1"] == 0
    busy.end(0)
    assert values() == {"0": 1000.0, "1": 0.0}
