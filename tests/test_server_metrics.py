"""Scraping the server's Prometheus metrics during a run (issue 22): real endpoints on loopback
(the embedded reference scheduler's own, pages served from here, one that dies mid-run), real
runs of the CLI, and the file read back by its one reader."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
import psutil
import pytest
from test_certificate import SMALL

from fastload.contract.config import server_metrics_path as series_path
from fastload.contract.exits import EXIT_CLIENT_LIMITED
from fastload.results.figures import server_lines
from fastload.results.runs import read_run
from fastload.results.server_panels import DEFAULT_PANELS
from fastload.results.server_series import figures, increases
from fastload.scrape.page import Sample, ScrapeError, scrape
from fastload.scrape.series_file import SeriesWriter, read_series

from test_generator import read_rows, run_fastload

FIXTURES = Path(__file__).parent / "fixtures"
# A real Triton 2.38 page (its source is cited at the top of the file).
TRITON_PAGE = (FIXTURES / "triton_metrics.txt").read_text()
REQUESTS_TOTAL = "fastload_scheduler_requests_total"


class MetricsPage:
    """A /metrics page served from this process on a free loopback port, until ``stop``."""

    def __init__(self, text: str) -> None:
        body = text.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/metrics"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def triton_page() -> Iterator[MetricsPage]:
    page = MetricsPage(TRITON_PAGE)
    yield page
    page.stop()


def free_url() -> str:
    """A metrics URL where nothing listens."""
    page = MetricsPage("")
    page.stop()
    return page.url


def test_a_triton_page_is_parsed_with_every_sample_as_served(triton_page):
    samples = scrape(triton_page.url, timeout_s=5)
    by_key = {(s.metric, s.labels): s for s in samples}
    # The parser names counters as OpenMetrics does, with _total, whether Triton wrote it or not.
    queue = by_key[("nv_inference_queue_duration_us_total",
                    '{"model":"densenet_onnx","version":"1"}')]
    assert queue.kind == "counter" and queue.value == 145
    pending = [s for s in samples if s.metric == "nv_inference_pending_request_count"]
    assert len(pending) == 8 and {s.kind for s in pending} == {"gauge"}
    gpu = next(s for s in samples if s.metric == "nv_gpu_utilization")
    assert json.loads(gpu.labels) == {"gpu_uuid": "GPU-951eeeeb-d284-d263-688e-d98a5306389b"}
    # Every sample line of the page, none more.
    lines = [line for line in TRITON_PAGE.splitlines() if line and not line.startswith("#")]
    assert len(samples) == len(lines)


def test_a_page_that_is_not_prometheus_text_is_a_scrape_error():
    page = MetricsPage("<html>not metrics</html>\n")
    try:
        with pytest.raises(ScrapeError, match="not a Prometheus metrics page"):
            scrape(page.url, timeout_s=5)
    finally:
        page.stop()
    with pytest.raises(ScrapeError, match="refused"):
        scrape(free_url(), timeout_s=5)


def test_the_file_reads_back_as_written_and_a_torn_last_row_is_dropped(tmp_path):
    path = tmp_path / "run.server-metrics.csv"
    with open(path, "wb", buffering=0) as file:
        writer = SeriesWriter(file)
        for time_ms, value in ((-5.0, 0.0), (100.0, 10.0), (200.5, 25.0)):
            writer.write("http://a/metrics", time_ms, [
                Sample("q", "gauge", '{"tier":"1"}', value / 5),
                Sample("done_total", "counter", '{"tier":"1","x":"a,\\"b"}', value)])
        file.write(b'300.000,http://a/metrics,q,gau')  # killed mid-write
    series = {s.metric: s for s in read_series(path)}
    assert list(series["q"].times_ms) == [-5.0, 100.0, 200.5]
    assert list(series["done_total"].values) == [0.0, 10.0, 25.0]
    assert series["done_total"].labels == {"tier": "1", "x": 'a,"b'}
    assert series["done_total"].is_counter and not series["q"].is_counter
    assert figures(series["q"]) == {"min": 0.0, "mean": pytest.approx(35 / 15), "max": 5.0}
    assert figures(series["done_total"]) == {"rate_per_s": pytest.approx(25 / 0.2055)}
    assert [s.metric for s in read_series(path, {"q"})] == ["q"]


def test_a_counter_that_restarts_from_zero_counts_its_new_value():
    values = np.array([5.0, 9.0, 2.0, 6.0])
    assert list(increases(values)) == [4.0, 2.0, 4.0]


def wait_for(condition, what: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Wait until ``condition()`` holds; fails (with the run's stderr) if the run ends first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.05)


def start_small_run(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    """An --embedded run of SMALL at 50 QPS, started and left running; its CSV's path."""
    (tmp_path / "small.toml").write_text(SMALL)
    csv_path = tmp_path / "out" / "metrics.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastload", "--embedded", "--workload-file", "small.toml",
         "--total-qps", "50", "--min-query-count", "1", "--metrics-csv", str(csv_path),
         "--output-dir", str(tmp_path / "logs"), *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, csv_path


def test_an_embedded_run_scrapes_its_scheduler_from_before_go_to_after_the_drain(tmp_path):
    (tmp_path / "small.toml").write_text(SMALL)
    proc, csv_path = run_fastload(tmp_path, "--embedded", "--workload-file", "small.toml",
                                  "--total-qps", "100", "--duration-ms", "2000",
                                  "--server-metrics-interval-ms", "250", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    path = series_path(csv_path)
    assert path.name == "metrics.server-metrics.csv"
    answered = [s for s in read_series(path, {REQUESTS_TOTAL}) if s.labels["outcome"] == "answered"]
    times = answered[0].times_ms
    assert times[0] < 0 and times[-1] > 2000 and np.all(np.diff(times) > 0)
    # Every request fastload saw answered, the server counted as answered by the last scrape.
    assert sum(s.values[-1] for s in answered) == sum(r["status"] == "OK"
                                                      for r in read_rows(csv_path))
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    (endpoint,) = summary["server_metrics"]
    assert endpoint["failed"] == 0 and endpoint["scrapes"] == len(times)
    queue = [s for s in endpoint["series"]
             if s["metric"] == "fastload_scheduler_queue_length"]
    assert queue and all(s["min"] <= s["mean"] <= s["max"] for s in queue)
    assert f"server metrics: {endpoint['endpoint']}: {len(times)} scrapes, 0 failed" \
        in proc.stdout


def test_an_endpoint_down_at_the_start_ends_the_run_before_traffic(tmp_path):
    url = free_url()
    proc, csv_path = run_fastload(tmp_path, "--embedded", "--total-qps", "50",
                                  "--duration-ms", "1000", "--server-metrics", url)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"fastload: error: --server-metrics {url}: cannot scrape it (")
    assert not csv_path.exists() and not series_path(csv_path).exists()


@pytest.mark.parametrize("args, message", [
    (("--server-metrics", "localhost:9090/metrics"), "--server-metrics must be an http:// or "
                                                      "https:// URL"),
    (("--server-metrics-interval-ms", "0"), "--server-metrics-interval-ms must be"),
])
def test_bad_scrape_flags_are_one_line_errors(tmp_path, args, message):
    proc, _ = run_fastload(tmp_path, "--embedded", *args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert message in proc.stderr


def test_an_endpoint_that_dies_mid_run_is_counted_and_never_stops_the_load(tmp_path,
                                                                          triton_page):
    proc, csv_path = start_small_run(tmp_path, "--duration-ms", "3000",
                                     "--server-metrics", triton_page.url,
                                     "--server-metrics-interval-ms", "100")
    path = series_path(csv_path)

    def scraped_twice_since_go() -> bool:
        return path.exists() and path.stat().st_size > 0 and sum(
            1 for s in read_series(path, {"nv_gpu_utilization"}) for t in s.times_ms if t >= 0
        ) >= 2

    try:
        wait_for(scraped_twice_since_go, "two scrapes of the Triton page", proc)
        triton_page.stop()
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    # The run completes (8 only if this machine's client fell behind: not the scrape's doing).
    assert proc.returncode in (0, EXIT_CLIENT_LIMITED), stderr
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    triton = next(e for e in summary["server_metrics"] if e["endpoint"] == triton_page.url)
    assert triton["scrapes"] >= 3 and triton["failed"] >= 1  # at least the one after the drain
    assert triton["last_error"]
    assert f"{triton['failed']} failed (last: " in stdout
    assert len(read_rows(csv_path)) == summary["overall"]["count"]
    assert summary["overall"]["errors"] == 0


def test_a_killed_run_keeps_every_scrape_it_finished(tmp_path):
    """SIGKILL: the scraping process sees its pipe close, scrapes once more and ends; the file
    holds whole scrapes only (each is one write)."""
    proc, csv_path = start_small_run(tmp_path, "--duration-ms", "600000",
                                     "--server-metrics-interval-ms", "50")
    path = series_path(csv_path)

    def scraped_after_go(count: int) -> bool:
        return path.exists() and path.stat().st_size > 0 and sum(
            t >= 0 for s in read_series(path, {REQUESTS_TOTAL})[:1] for t in s.times_ms) >= count

    try:
        wait_for(lambda: scraped_after_go(5), "five scrapes after GO", proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.communicate()
        _, alive = psutil.wait_procs(children, timeout=60)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        proc.kill()
    series = read_series(path)
    assert len(series) > 20 and scraped_after_go(5)
    # Whole scrapes: every series has a sample at every scrape's time.
    assert len({tuple(s.times_ms) for s in series}) == 1


def png_size(path: Path) -> tuple[int, int]:
    """A PNG's width and height, from its IHDR chunk."""
    header = path.read_bytes()[16:24]
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


def test_the_report_draws_the_server_series_under_the_clients(tmp_path, triton_page):
    """An embedded run that also scrapes a Triton page: the report finds the reference
    scheduler's queue per tier and GPU busy fraction and Triton's three default series, and
    draws a panel for each under p99 and attainment; --server-series picks others."""
    (tmp_path / "small.toml").write_text(SMALL)
    proc, csv_path = run_fastload(tmp_path, "--embedded", "--workload-file", "small.toml",
                                  "--total-qps", "100", "--duration-ms", "2000",
                                  "--server-metrics", triton_page.url,
                                  "--server-metrics-interval-ms", "200")
    assert proc.returncode == 0, proc.stderr
    run = read_run(csv_path, "run")
    lines = server_lines(run, DEFAULT_PANELS)
    by_title = {panel.title: [line.label for line in lines[panel]] for panel in DEFAULT_PANELS}
    assert by_title["queue length per tier"] == ["tier 1", "tier 2", "tier 3"]
    assert by_title["GPU busy fraction (mean over GPUs)"] == ["mean of 4"]
    assert len(by_title["pending requests (Triton)"]) == 8  # one per model on the page
    assert by_title["GPU utilization (Triton)"] == [
        "gpu_uuid GPU-951eeeeb-d284-d263-688e-d98a5306389b"]
    queue_us = lines[DEFAULT_PANELS[2]]
    densenet = next(line for line in queue_us if line.label == "model densenet_onnx")
    assert np.all(densenet.values == 0)  # a constant page: its counters do not move
    busy = lines[DEFAULT_PANELS[1]][0]
    assert np.all((busy.values >= 0) & (busy.values <= 1)) and busy.values.max() > 0
    # On the run's clock: from just before GO to just after the drain.
    assert busy.times_s[0] < 0.2 and busy.times_s[-1] > 2.0

    def report(*args: str) -> tuple[int, int]:
        out = tmp_path / f"report{len(args)}.html"
        done = subprocess.run([sys.executable, "-m", "fastload.report", str(csv_path),
                               "-o", str(out), *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return png_size(out.with_name(f"{out.stem}_over_time.png"))

    width, all_five = report()
    _, one = report("--server-series", "fastload_scheduler_requests")
    _, none = report("--server-series", "no_such_metric")
    # Each panel drawn adds the same height: five defaults, one chosen, none found.
    per_panel = (one - none)
    assert per_panel > 100 and all_five - none == pytest.approx(5 * per_panel, abs=5)
