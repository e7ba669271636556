"""The scraping process: every endpoint scraped once before traffic (one that is down ends the
run before it starts), then on a grid of the interval from GO until just after the drain.

A process of its own, not a thread: parsing a page is pure Python (hundreds of samples for a
Triton page), and in the run's process it would take the GIL from the sender's event loop and
the recorder. Each endpoint has a thread there, so a slow or dead one never delays the others.

Protocol, over one pipe:
  child -> parent  after the first scrape of every endpoint: [(url, error or None), ...];
  parent -> child  ("go", the run's start in monotonic ns), then ("stop",) after the drain (or
                   end of file: the run died, and the child ends after a last scrape);
  child -> parent  after the last scrapes: [EndpointReport, ...].
"""
from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Sequence

from fastload.contract.config import RunConfig
from fastload.contract.exits import UsageError
from fastload.scrape.page import Sample, ScrapeError, scrape
from fastload.scrape.series_file import SeriesWriter

# The first scrape of each endpoint, before traffic: long enough for a page of thousands of
# samples from a loaded server.
CHECK_TIMEOUT_S = 5.0
# Beyond that, for the child to start (a spawned interpreter importing prometheus_client).
START_MARGIN_S = 30.0
# A scrape during the run gives up after an interval, but never before this.
MIN_SCRAPE_TIMEOUT_S = 1.0
# Beyond the last scrape's timeout: for the process to write it and report.
STOP_MARGIN_S = 10.0
# The scraping process yields the CPU to the senders and the arrival processes: a scrape of the
# reference scheduler's page costs ~6 ms of CPU (4 ms of it prometheus_client's parser), and on a
# busy 2-core machine, at nice 0, every tenth of a second of that showed in the sender's send
# lag (p99 1.7x at 500 QPS). Its scrapes are stamped when they happen, so a late one is honest.
NICENESS = 19


@dataclass(frozen=True)
class EndpointReport:
    """How one endpoint's scraping went: scrapes written, scrapes that failed and why the last
    failed."""

    endpoint: str
    scrapes: int
    failed: int
    last_error: str | None


class ServerScraper:
    """The run's handle on the scraping process."""

    def __init__(self, urls: Sequence[str], interval_s: float, path: Path, context: Any) -> None:
        self.urls = tuple(urls)
        self.path = path
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_scrape, args=(child, self.urls, interval_s, path),
                                        name="fastload-scraper", daemon=True)
        self._process.start()
        child.close()

    def check(self) -> None:
        """Wait for the first scrape of every endpoint; raises UsageError naming the first that
        could not be scraped (nothing has been sent)."""
        try:
            outcome = (self._conn.recv() if self._conn.poll(CHECK_TIMEOUT_S + START_MARGIN_S)
                       else [(self.urls[0], "the scraping process did not start")])
        except EOFError:
            outcome = [(self.urls[0], "the scraping process died")]
        for url, error in outcome:
            if error is not None:
                raise UsageError(f"--server-metrics {url}: cannot scrape it ({error}); nothing "
                                 f"was sent")

    def go(self, start_mono_ns: int) -> None:
        self._conn.send(("go", start_mono_ns))

    def stop(self) -> list[EndpointReport] | None:
        """Scrape once more, then end; the endpoints' reports, None if the process died."""
        try:
            self._conn.send(("stop",))
            reports = (self._conn.recv() if self._conn.poll(CHECK_TIMEOUT_S + STOP_MARGIN_S)
                       else None)
        except (OSError, EOFError):
            reports = None
        self.close()
        return reports

    def close(self) -> None:
        self._conn.close()
        self._process.join(timeout=1.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def start_scraping(config: RunConfig, embedded_url: str | None) -> ServerScraper | None:
    """The run's scraper, its endpoints checked (``embedded_url``: the embedded scheduler's,
    scraped unasked); None when the run scrapes nothing. Raises UsageError as ``check``."""
    urls = tuple(dict.fromkeys((*config.server_metrics, *filter(None, [embedded_url]))))
    if not urls:
        return None
    scraper = ServerScraper(urls, config.server_metrics_interval_ms / 1000,
                            config.server_metrics_csv, multiprocessing.get_context("spawn"))
    try:
        scraper.check()
    except BaseException:
        scraper.close()
        raise
    return scraper


class _Endpoint:
    """One endpoint's scrapes, in the child."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.scrapes = self.failed = 0
        self.last_error: str | None = None

    def scrape(self) -> tuple[int, list[Sample]] | None:
        """The samples and the scrape's midpoint (monotonic ns), or None if it failed."""
        begin_ns = time.monotonic_ns()
        try:
            samples = scrape(self.url, self.timeout_s)
        except ScrapeError as exc:
            self.failed += 1
            self.last_error = str(exc)
            return None
        self.scrapes += 1
        return (begin_ns + time.monotonic_ns()) // 2, samples

    def every(self, interval_ns: int, start_ns: int, writer: SeriesWriter,
              stop: threading.Event) -> None:
        """Scrape at GO and every interval after it (skipping ticks a slow scrape overran),
        and once more when stopped."""
        tick = 0
        while not stop.wait(max(0.0, (start_ns + tick * interval_ns - time.monotonic_ns()) / 1e9)):
            self.write(self.scrape(), start_ns, writer)
            tick = max(tick + 1, math.ceil((time.monotonic_ns() - start_ns) / interval_ns))
        self.write(self.scrape(), start_ns, writer)

    def write(self, scraped: tuple[int, list[Sample]] | None, start_ns: int,
              writer: SeriesWriter) -> None:
        if scraped is not None:
            writer.write(self.url, (scraped[0] - start_ns) / 1e6, scraped[1])

    def report(self) -> EndpointReport:
        return EndpointReport(self.url, self.scrapes, self.failed, self.last_error)


def _scrape_timeout_s(interval_s: float) -> float:
    return max(min(interval_s, CHECK_TIMEOUT_S), MIN_SCRAPE_TIMEOUT_S)


def _scrape(conn: Connection, urls: Sequence[str], interval_s: float, path: Path) -> None:
    """The child: check, wait for GO, scrape until stopped, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run stops it after the drain
    os.nice(NICENESS)  # before any thread starts: they inherit it
    endpoints = [_Endpoint(url, CHECK_TIMEOUT_S) for url in urls]
    with ThreadPoolExecutor(len(endpoints)) as pool:
        first = list(pool.map(_Endpoint.scrape, endpoints))
    conn.send([(e.url, e.last_error if scraped is None else None)
               for e, scraped in zip(endpoints, first)])
    if any(scraped is None for scraped in first):
        return
    try:
        message = conn.recv()
    except EOFError:
        return
    if message[0] != "go":
        return
    start_ns = message[1]
    stop = threading.Event()
    with open(path, "wb", buffering=0) as file:
        writer = SeriesWriter(file)
        threads = []
        for endpoint, scraped in zip(endpoints, first):
            endpoint.write(scraped, start_ns, writer)
            endpoint.timeout_s = _scrape_timeout_s(interval_s)
            threads.append(threading.Thread(
                target=endpoint.every, args=(round(interval_s * 1e9), start_ns, writer, stop),
                name=f"scrape {endpoint.url}"))
            threads[-1].start()
        try:
            conn.recv()  # stop
        except EOFError:
            pass  # the run died: a last scrape, then end
        stop.set()
        for thread in threads:
            thread.join()
    try:
        conn.send([e.report() for e in endpoints])
    except OSError:
        pass
