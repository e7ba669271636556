"""One run on this machine, start to finish: outputs prepared, target checked, arrival processes
and senders started, records streamed, the run concluded."""
from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
import time
from contextlib import ExitStack
from functools import partial
from typing import Callable, Sequence

import numpy as np

from fastload.arrivals.pipe import Arrivals, Issuer
from fastload.arrivals.plans import arrival_plans
from fastload.contract.config import H2_TRANSPORT, RunConfig
from fastload.contract.exits import EXIT_LOADGEN_FAILED, EXIT_OUTPUT_FAILED
from fastload.memory import keep_freed_buffers, without_gc_pauses
from fastload.records.recorder import Recorder
from fastload.results.arrival_fit import gap_fit
from fastload.results.certificate import certify
from fastload.run.conclude import (
    Failure,
    conclude,
    opening_line,
    run_stats,
    seal_records,
    stop_scraping,
)
from fastload.run.embedded import embedded_scheduler
from fastload.run.outputs import RunOutputs
from fastload.run.progress import Progress
from fastload.scrape.scraper import start_scraping
from fastload.send.base import Sender, Transport
from fastload.send.channel import check_reachable, open_channel
from fastload.send.dispatch import Dispatcher
from fastload.send.grpcio import open_grpcio_calls
from fastload.send.h2.channel import h2_event_loop, open_h2_channel
from fastload.send.processes import SenderProcesses
from fastload.targets.base import Target
from fastload.targets.kserve import KServeTarget
from fastload.targets.scheduler import SchedulerTarget

ARRIVALS_START_TIMEOUT_S = 60.0
# Beyond the per-request timeout, how long to wait for gRPC to report calls in flight.
DRAIN_MARGIN_S = 5.0


def run_local(config: RunConfig,
              before_go: Callable[[Callable[[int], None]], None] | None = None) -> int:
    """Run the test, streaming the CSV; write the JSON summary and LoadGen's logs; return the
    exit code. Raises WorkloadError or OutputError (nothing created), TargetUnavailable or
    TargetMismatch (nothing sent, nothing left on disk).

    ``before_go`` (a Ray shard's start gate) is called once the target is checked and the
    arrival processes are ready, just before GO, and may block; it gets the function that stops
    the run as that signal number would (off the main thread no signal handlers are set)."""
    keep_freed_buffers()
    plans, entry = arrival_plans(config)
    outputs = RunOutputs.prepare(config)
    stop = threading.Event()
    stop_signals: list[int] = []

    def request_stop(signum: int, _frame) -> None:
        stop_signals.append(signum)
        stop.set()

    # Only the main thread may set handlers; a shard runs on a Ray actor's thread.
    previous = ({s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
                if threading.current_thread() is threading.main_thread() else {})
    notes: list[str] = []
    try:
        with ExitStack() as stack:
            try:
                address = config.scheduler_url
                if config.embedded:
                    scheduler = stack.enter_context(embedded_scheduler(config))
                    address = scheduler.address
                # A blocking channel for the checks before traffic; the load has its own.
                with open_channel(config.tls, address) as channel:
                    check_reachable(channel, address, config.tls is not None)
                    target = make_target(config)
                    target.prepare(channel, config.metadata)
                scraper = start_scraping(config, scheduler.metrics_url if config.embedded
                                         else None)
                if scraper is not None:
                    stack.callback(scraper.close)
            except BaseException:
                outputs.discard()
                raise

            print(opening_line(config, plans, address), flush=True)
            if config.per_class and plans[0].duration_ms != config.duration_ms:
                print(f"fastload: every per-class LoadGen test runs {plans[0].duration_ms} ms, "
                      f"long enough for each class to reach its share of --min-query-count",
                      flush=True)
            stats = run_stats(config, plans)
            # A timer's plans say when each arrival is due; LoadGen's say nothing (None).
            planned_s = [plan.planned_offsets_s() for plan in plans]
            arrivals = Arrivals(plans, entry, multiprocessing.get_context("spawn"))
            arrivals.wait_ready(ARRIVALS_START_TIMEOUT_S)
            sender = open_sender(config, address, target, arrivals)
            if before_go is not None:
                before_go(lambda signum: request_stop(signum, None))
            rows = outputs.open_rows()  # before GO: opening a Parquet journal warms pyarrow up
            # GO first, then the recorder: samples wait in the pipe until serve() reads them.
            start_mono_ns = time.monotonic_ns()
            arrivals.go(start_mono_ns)
            if scraper is not None:
                scraper.go(start_mono_ns)
            stats.fit = gap_fit(config, start_mono_ns)
            for plan, offsets_s in zip(plans, planned_s):
                if offsets_s is not None:  # as the timer turns them into times
                    stats.expect(plan.label,
                                 start_mono_ns + np.round(offsets_s * 1e9).astype(np.int64))
            # Every plan runs for its duration_ms (per-class tests may run longer than asked).
            progress = Progress(max(plan.duration_ms for plan in plans) / 1000, start_mono_ns,
                                lambda: (sender.in_flight(), recorder.unflushed()),
                                config.load_limits.lag_limit_ms(config.workload))
            recorder = Recorder(rows, _both(stats.add, progress.add),
                                config.schedule, start_mono_ns)
            if config.progress:
                progress.start()
            try:
                with without_gc_pauses():
                    finished = sender.serve(arrivals, recorder, stop)
                if not finished:
                    print(f"fastload: {signal.Signals(stop_signals[0]).name}: stopped issuing; "
                          f"waiting up to {config.timeout_ms} ms for requests in flight",
                          file=sys.stderr, flush=True)
                    arrivals.stop(timeout_s=0)
                sender.drain(config.timeout_ms / 1000 + DRAIN_MARGIN_S)
            finally:
                arrivals.stop()
                sender.close()
                arrivals.close()
                recorder.finish()
                progress.stop()
            # After the drain, before the embedded scheduler stops: its last counts.
            scraped = stop_scraping(scraper)
            if config.embedded:
                notes.append(f"reference scheduler: "
                             f"{scheduler.stop(signal.SIGINT).stdout.strip()}")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    signum = stop_signals[0] if stop_signals else None
    issuers = arrivals.issuers
    verdicts = [issuer.plan.verdict(issuer.ended) for issuer in issuers]
    processes = [*sender.loads(), *(issuer.load for issuer in issuers if issuer.load)]
    load = certify(config, stats, start_mono_ns, processes, planned_s, signum is not None)
    failures = [*_failures(config, sender, issuers, recorder, signum is not None),
                *seal_records(outputs, config, plans, load)]
    return conclude(config, stats, [v for v in verdicts if v is not None], start_mono_ns, signum,
                    failures, load, notes, scraped=scraped)


def _failures(config: RunConfig, sender: Sender, issuers: Sequence[Issuer], recorder: Recorder,
              interrupted: bool) -> list[Failure]:
    """What went wrong besides requests, most telling first."""
    failures = [Failure(EXIT_LOADGEN_FAILED,
                        f"sender process {name} died before the test ended; the outputs hold "
                        f"every sample the others recorded") for name in sender.died[:1]]
    lost = [issuer.plan.label for issuer in issuers if not issuer.ended and not interrupted]
    failures += [Failure(EXIT_LOADGEN_FAILED,
                         f"arrival process {label} exited before its test ended; the outputs "
                         f"hold what it issued") for label in lost[:1]]
    if recorder.write_error is not None:
        failures.append(Failure(EXIT_OUTPUT_FAILED,
                                f"{config.records_path} is incomplete: writing it failed "
                                f"({recorder.write_error.strerror}); the summary counts every "
                                f"sample"))
    return failures


def _both(first: Callable[[Sequence], None], second: Callable[[Sequence], None]
          ) -> Callable[[Sequence], None]:
    """One consumer that hands each batch of written records to two."""
    def consume(records: Sequence) -> None:
        first(records)
        second(records)
    return consume


def open_sender(config: RunConfig, address: str, target: Target, arrivals: Arrivals) -> Sender:
    """The sender: this process's event loop, or --processes N sender processes."""
    timeout_s = config.timeout_ms / 1000
    if config.transport == H2_TRANSPORT:
        transport = Transport(partial(open_h2_channel, address, timeout_s, config.metadata),
                              h2_event_loop)
    else:
        transport = Transport(partial(open_grpcio_calls, config.tls, address, timeout_s,
                                      config.metadata))
    if config.processes > 1:
        return SenderProcesses(config.processes, arrivals, transport, target, timeout_s,
                               config.max_inflight, timeout_s + DRAIN_MARGIN_S,
                               config.priority_signal, multiprocessing.get_context("spawn"))
    return Dispatcher(transport, target, timeout_s, config.max_inflight,
                      signal=config.priority_signal)


def make_target(config: RunConfig) -> Target:
    """The protocol the run speaks, with the run's seed and tensor settings."""
    shapes = config.workload.model_shapes
    if config.kserve is not None:
        return KServeTarget(config.kserve, shapes, config.seed, config.fresh_tensors)
    return SchedulerTarget(shapes, config.seed, config.tensor_field, config.fresh_tensors)
