"""What a run is asked to do: every flag, parsed and validated once by the command line, in
frozen dataclasses that the rest of fastload only reads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from fastload.contract.arrival_times import TimedArrivals
from fastload.contract.load import LoadLimits
from fastload.contract.rates import Phase, RateSchedule
from fastload.contract.signals import PrioritySignal
from fastload.contract.thresholds import Threshold
from fastload.contract.workload import Workload

# Four simulated GPUs give ~550 QPS of capacity for the built-in mixes: at 500 QPS the reference
# scheduler runs near saturation, where the priority policy has something to do.
DEFAULT_EMBEDDED_POLICY = "priority"
DEFAULT_EMBEDDED_GPUS = 4
# KServe `priority` per tier (Triton: 1 highest, 0 the model's default).
DEFAULT_PRIORITIES = {1: 1, 2: 2, 3: 3}
# Scrape the server's metrics once a second: Prometheus's own default is 15 s, too coarse for a
# 5-second spike; AIPerf scrapes every 333 ms.
DEFAULT_SCRAPE_INTERVAL_MS = 1000
SERVER_METRICS_SUFFIX = ".server-metrics.csv"
# --output-format: the per-request results as CSV (the spec's) or Parquet; a Parquet run streams
# its rows to a journal (Arrow's IPC stream) while it runs and seals it into Parquet at the end.
CSV_FORMAT, PARQUET_FORMAT = "csv", "parquet"
# --transport: grpcio's channel, or fastload's own HTTP/2 connections (send.h2, cleartext only)
GRPCIO_TRANSPORT, H2_TRANSPORT = "grpcio", "h2"
PARQUET_SUFFIX = ".parquet"
JOURNAL_SUFFIX = ".arrows"


def server_metrics_path(metrics_csv: Path) -> Path:
    """Where a run's scraped server metrics go: beside its CSV, ``<stem>.server-metrics.csv``."""
    return metrics_csv.with_name(metrics_csv.stem + SERVER_METRICS_SUFFIX)


@dataclass(frozen=True)
class TlsConfig:
    """PEM bytes for a TLS channel; client cert and key together give mutual TLS."""

    ca_cert: bytes | None
    client_cert: bytes | None = None
    client_key: bytes | None = None


@dataclass(frozen=True)
class ServerModel:
    """Which model (and version; empty: the server's choice) a workload model is sent to."""

    name: str
    version: str = ""

    def __str__(self) -> str:
        return f"{self.name} version {self.version}" if self.version else self.name


@dataclass(frozen=True)
class KServeOptions:
    """The mapping from fastload's samples to KServe requests."""

    # Workload model -> server model; a workload model not named here keeps its name.
    models: Mapping[str, ServerModel]
    # Tier -> `priority` level (Triton: 1 highest, 0 the model's default); None: not sent.
    priorities: Mapping[int, int] | None
    # Send `timeout` = µs left until the sample's deadline when its call starts.
    deadline_timeout: bool

    def server_model(self, model: str) -> ServerModel:
        return self.models.get(model, ServerModel(model))


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, parsed and validated by the command line."""

    scheduler_url: str
    # The rate over time (constant unless phases were given); None when a trace is replayed.
    schedule: RateSchedule | None
    burstiness: float | None  # gamma shape for the timer; None: LoadGen's Poisson arrivals
    # A trace to replay; with burstiness, a Ray shard's part of the driver's gamma plan.
    trace: TimedArrivals | None
    trace_path: Path | None
    workload: Workload
    min_query_count: int
    output_dir: Path
    metrics_csv: Path
    seed: int
    tensor_field: int
    fresh_tensors: bool
    timeout_ms: int
    max_inflight: int
    per_class: bool
    embedded: bool
    tls: TlsConfig | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    kserve: KServeOptions | None = None  # --protocol kserve; None: the spec's SchedulerService
    embedded_policy: str = DEFAULT_EMBEDDED_POLICY  # the embedded scheduler's --policy, --gpus
    embedded_gpus: int = DEFAULT_EMBEDDED_GPUS
    progress: bool = True  # the live status line on stderr (off: --quiet)
    thresholds: tuple[Threshold, ...] = ()  # --fail-if: exit 6 when one holds
    load_limits: LoadLimits = LoadLimits()  # when the load certificate says client-limited
    processes: int = 1  # --processes: sender processes (1: this process sends)
    ray_address: str | None = None  # --ray: run as shards on this Ray cluster
    shards: int | None = None  # --shards; None: one per Ray node
    # --priority-signal: the tier each request carries to the server (contract.signals)
    priority_signal: PrioritySignal = PrioritySignal()
    # --server-metrics: Prometheus endpoints scraped during the run (--embedded adds its own)
    server_metrics: tuple[str, ...] = ()
    server_metrics_interval_ms: int = DEFAULT_SCRAPE_INTERVAL_MS
    output_format: str = CSV_FORMAT  # --output-format
    transport: str = GRPCIO_TRANSPORT  # --transport (the command line picks h2 unless --tls)

    @property
    def summary_json(self) -> Path:
        return self.metrics_csv.with_suffix(".json")

    @property
    def records_path(self) -> Path:
        """The per-request results: --metrics-csv, or a Parquet file beside it."""
        if self.output_format == PARQUET_FORMAT:
            return self.metrics_csv.with_suffix(PARQUET_SUFFIX)
        return self.metrics_csv

    @property
    def journal_path(self) -> Path:
        """Where a Parquet run's rows stream to until it ends (records.columnar)."""
        return self.metrics_csv.with_suffix(JOURNAL_SUFFIX)

    @property
    def scrapes(self) -> bool:
        """Whether the run scrapes a server's metrics (--embedded scrapes its own)."""
        return bool(self.server_metrics) or self.embedded

    @property
    def server_metrics_csv(self) -> Path:
        return server_metrics_path(self.metrics_csv)

    @property
    def _arrivals(self) -> RateSchedule | TimedArrivals:
        return self.trace if self.trace is not None else self.schedule

    @property
    def duration_ms(self) -> int:
        """The run's planned length (per-class LoadGen tests may run longer, see their plans)."""
        return self._arrivals.duration_ms

    @property
    def total_qps(self) -> float:
        """The mean rate over the run: the target the summary compares with."""
        return self._arrivals.mean_qps

    @property
    def phases(self) -> tuple[Phase, ...]:
        """The schedule's phases, which the summary reports one by one; none for a trace."""
        return self.schedule.phases if self.schedule is not None else ()
