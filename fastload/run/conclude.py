"""How a run is told, on one machine (``run.local``) or as Ray shards (``run.shards.driver``):
the line it starts with, the statistics its records feed, and its ending — the summary, its JSON,
the table, the --fail-if conditions and the exit code, ranked the same way for both."""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import pyarrow as pa

from fastload import __version__
from fastload.arrivals.pipe import Plan
from fastload.arrivals.plans import describe_arrivals
from fastload.contract.config import RunConfig
from fastload.contract.exits import (
    EXIT_CLIENT_LIMITED,
    EXIT_OK,
    EXIT_OUTPUT_FAILED,
    EXIT_REQUEST_ERRORS,
    EXIT_SIGNALLED_BASE,
    EXIT_THRESHOLD,
)
from fastload.contract.signals import AS_IS
from fastload.contract.verdicts import LoadGenVerdict
from fastload.records.columnar import seal
from fastload.results.certificate import LoadCertificate, what_to_do
from fastload.results.server_series import Scraped
from fastload.results.stats import RunStats
from fastload.results.summary import format_summary, json_ready, summarize, write_json
from fastload.results.thresholds import report_held
from fastload.run.outputs import RunOutputs
from fastload.scrape.scraper import ServerScraper


@dataclass(frozen=True)
class Failure:
    """A reason for a finished run to exit with ``exit_code`` rather than by its requests'
    outcome; ``message`` is said on stderr (empty: it was said when it happened)."""

    exit_code: int
    message: str = ""


def opening_line(config: RunConfig, plans: Sequence[Plan], address: str, how: str = "") -> str:
    """The line a run starts with: seed, workload, arrivals, target (``how``: a sharded run's
    split)."""
    signal = config.priority_signal.kind
    return (f"fastload: seed {config.seed}, {config.workload.name}, "
            f"{describe_arrivals(config, plans)} -> {address} over {config.transport}"
            f"{' (KServe v2)' if config.kserve else ''}{how}"
            f"{'' if signal == AS_IS else f', priority signal {signal}'}")


def run_stats(config: RunConfig, plans: Sequence[Plan]) -> RunStats:
    """The statistics a run's records feed: every planned class, and the schedule's phases."""
    return RunStats(tuple(c for plan in plans for c in plan.classes), len(config.phases))


def stop_scraping(scraper: ServerScraper | None) -> Scraped | None:
    """A last scrape (after the drain: every answer is in), then what was scraped; None when
    the run scraped nothing."""
    return Scraped(scraper.path, scraper.stop()) if scraper is not None else None


def seal_records(outputs: RunOutputs, config: RunConfig, plans: Sequence[Plan],
                 load: LoadCertificate) -> list[Failure]:
    """A Parquet run's journal sealed into its Parquet file, the run's metadata in the footer;
    a seal that fails keeps the journal, every row in it, and says so (exit 5)."""
    if outputs.parquet is None:
        return []
    metadata = {"version": __version__, "seed": config.seed,
                "workload": config.workload.name, "arrivals": describe_arrivals(config, plans),
                "transport": config.transport, "load_certificate": json_ready(asdict(load))}
    try:
        seal(outputs.records, outputs.parquet, metadata)
    except (OSError, pa.ArrowException) as exc:
        return [Failure(EXIT_OUTPUT_FAILED,
                        f"cannot write {outputs.parquet} ({exc}); every row is in "
                        f"{outputs.records}, which python -m fastload.report reads, and "
                        f"python -m fastload.report --seal turns into Parquet")]
    return []


def conclude(config: RunConfig, stats: RunStats, verdicts: Sequence[LoadGenVerdict],
             start_mono_ns: int, signum: int | None, failures: Sequence[Failure],
             load: LoadCertificate, notes: Sequence[str] = (),
             extra_json: Mapping[str, Any] | None = None, scraped: Scraped | None = None) -> int:
    """Write the summary JSON, print the load certificate, the table, ``notes``, how the
    server's metrics were scraped and the conditions that held; return the exit code: a
    signal's, else the first of ``failures`` (ranked by the caller), else 8 if the client was
    the bottleneck, else 6 if a --fail-if held, else 1 if requests failed, else 0. Failed
    scrapes are reported, never an exit code: they say nothing of the load."""
    summary = summarize(stats, config.total_qps, config.workload.name, config.seed, verdicts,
                        signum is not None, config.phases, start_mono_ns, load,
                        config.priority_signal.kind)
    server = {"server_metrics": scraped.summary()} if scraped is not None else {}
    write_json(summary, config.summary_json,
               {"transport": config.transport, **(extra_json or {}), **server})
    print(format_summary(summary), flush=True)
    for note in [*notes, *(scraped.lines() if scraped is not None else [])]:
        print(note, flush=True)
    held = report_held(config.thresholds, summary)
    if signum is not None:
        return EXIT_SIGNALLED_BASE + signum
    if failures:
        if failures[0].message:
            print(f"fastload: error: {failures[0].message}", file=sys.stderr)
        return failures[0].exit_code
    if load.client_limited:
        print(f"fastload: error: {what_to_do(load)}", file=sys.stderr)
        return EXIT_CLIENT_LIMITED
    if held:
        return EXIT_THRESHOLD
    return EXIT_REQUEST_ERRORS if summary.overall.errors else EXIT_OK
