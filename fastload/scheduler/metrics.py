"""The reference scheduler's Prometheus metrics (``--metrics-port``): the server's side of a run,
for a scraper to line up with fastload's per-class results on one time axis.

Names follow Prometheus conventions (base units, ``_total`` counters, ``_seconds``):
- ``fastload_scheduler_queue_length{tier,model}``: requests waiting for a GPU now;
- ``fastload_scheduler_in_service{gpu}``: 1 while that simulated GPU serves a request;
- ``fastload_scheduler_gpu_busy_seconds_total{gpu}``: its time serving, counted up to the
  scrape (``BusySeconds``), so that ``rate(...)`` is its busy fraction, never above 1;
- ``fastload_scheduler_requests_total{tier,outcome}``: answered, expired (deadline passed while
  queued), rejected (invalid or unauthorised) or cancelled (the call ended first);
- ``fastload_scheduler_queue_wait_seconds{tier}`` and ``fastload_scheduler_service_seconds{model}``
  histograms.
Every update happens on the scheduler's event loop; prometheus_client serves them from a thread
of its own, in a registry of this scheduler's alone.
"""
from __future__ import annotations

import time
from typing import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily

PREFIX = "fastload_scheduler"
# Queue waits from 1 ms to beyond the loosest SLO (2 s); services from 0.5 ms to 0.5 s.
WAIT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
SERVICE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
ANSWERED, EXPIRED, REJECTED, CANCELLED = "answered", "expired", "rejected", "cancelled"
TIERS = ("1", "2", "3")  # the spec's; a request of another tier adds its series when it comes


class BusySeconds:
    """Each simulated GPU's service time so far, counted at the moment of the scrape: the
    services it finished plus the part of the one it serves. A counter raised by a whole
    service when it ends jumps instead, and when the event loop ran late and several ended
    together, its rate over a 250 ms scrape read 1.4 (seen in a spike at 800 QPS on 2 cores).
    Service times are the simulated ones, so the total is answered x service time exactly."""

    def __init__(self, gpus: int) -> None:
        self._served_s = [0.0] * gpus
        self._serving: list[tuple[float, float] | None] = [None] * gpus  # (start, service s)

    def start(self, gpu: int, service_s: float) -> None:
        self._serving[gpu] = (time.monotonic(), service_s)

    def end(self, gpu: int) -> None:
        serving = self._serving[gpu]
        if serving is not None:
            self._served_s[gpu] += serving[1]
            self._serving[gpu] = None

    def collect(self) -> Iterator[CounterMetricFamily]:
        now = time.monotonic()
        family = CounterMetricFamily(f"{PREFIX}_gpu_busy_seconds",
                                     "Time the simulated GPU served", labels=("gpu",))
        for gpu, (served_s, serving) in enumerate(zip(self._served_s, self._serving)):
            part_s = min(now - serving[0], serving[1]) if serving is not None else 0.0
            family.add_metric((str(gpu),), served_s + part_s)
        yield family


class SchedulerMetrics:
    """The counters, gauges and histograms of one scheduler, and their HTTP endpoint."""

    def __init__(self, gpus: int = 0, models: Iterable[str] = ()) -> None:
        """Every series of these GPUs, models and the spec's tiers exists from the start, at 0,
        so that a scrape before the first request already holds them."""
        disable_created_metrics()  # a _created sample beside every series tells a scrape nothing
        self.registry = CollectorRegistry()
        self.queue_length = Gauge(f"{PREFIX}_queue_length", "Requests waiting for a GPU",
                                  ("tier", "model"), registry=self.registry)
        self.in_service = Gauge(f"{PREFIX}_in_service", "1 while the simulated GPU serves",
                                ("gpu",), registry=self.registry)
        self.busy = BusySeconds(gpus)
        self.registry.register(self.busy)
        self.requests = Counter(f"{PREFIX}_requests", "Requests by tier and outcome",
                                ("tier", "outcome"), registry=self.registry)
        self.queue_wait = Histogram(f"{PREFIX}_queue_wait_seconds",
                                    "From arrival to a GPU starting it", ("tier",),
                                    buckets=WAIT_BUCKETS_S, registry=self.registry)
        self.service = Histogram(f"{PREFIX}_service_seconds", "Time on a simulated GPU",
                                 ("model",), buckets=SERVICE_BUCKETS_S, registry=self.registry)
        models = tuple(models)
        for gpu in range(gpus):
            self.in_service.labels(gpu).set(0)
        for tier in TIERS:
            self.queue_wait.labels(tier)
            for model in models:
                self.queue_length.labels(tier, model)
            for outcome in (ANSWERED, EXPIRED, CANCELLED):
                self.requests.labels(tier, outcome)
        for model in models:
            self.service.labels(model)

    def start_service(self, gpu: int, service_s: float) -> None:
        self.in_service.labels(gpu).set(1)
        self.busy.start(gpu, service_s)

    def end_service(self, gpu: int) -> None:
        self.in_service.labels(gpu).set(0)
        self.busy.end(gpu)

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on host:port from a daemon thread; returns the port bound."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server.server_port
