"""One run, start to finish: outputs and scheduler checked, arrival processes, dispatch,
outputs written."""
from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
import time
from contextlib import ExitStack
from functools import partial
from typing import Callable, Sequence

import grpc
import grpc.aio

from fastload.arrivals.loadgen import plan_arrivals, run_loadgen
from fastload.arrivals.pipe import Arrivals
from fastload.arrivals.timer import TimerPlan, run_timer
from fastload.contract.config import RunConfig, TlsConfig
from fastload.contract.exits import (
    EXIT_LOADGEN_FAILED,
    EXIT_OK,
    EXIT_OUTPUT_FAILED,
    EXIT_REQUEST_ERRORS,
    EXIT_THRESHOLD,
    TargetUnavailable,
)
from fastload.contract.workload import Workload
from fastload.dispatch import Dispatcher
from fastload.memory import keep_freed_buffers, without_gc_pauses
from fastload.metrics import Recorder
from fastload.outputs import RunOutputs
from fastload.progress import Progress
from fastload.scheduler.server import DEFAULT_SERVICE_MS
from fastload.scheduler.spawn import SchedulerProcess
from fastload.senders import SenderProcesses
from fastload.summary import RunStats, format_summary, summarize, write_json
from fastload.targets.base import Target
from fastload.targets.kserve import KServeTarget
from fastload.targets.scheduler import SchedulerTarget
from fastload.thresholds import report_held

# Room for a tensor of any reasonable shape plus headers.
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
)
REACH_TIMEOUT_S = 3.0
ARRIVALS_START_TIMEOUT_S = 60.0
# Beyond the per-request timeout, how long to wait for gRPC to report calls in flight.
DRAIN_MARGIN_S = 5.0


def run(config: RunConfig,
        before_go: Callable[[Callable[[int], None]], None] | None = None) -> int:
    """Run the test, streaming the CSV; write the JSON summary and LoadGen's logs; return the
    exit code. Raises WorkloadError or OutputError (nothing created), TargetUnavailable or
    TargetMismatch (nothing sent, nothing left on disk).

    ``before_go`` (a Ray shard's start gate) is called once the target is checked and the
    arrival processes are ready, just before GO, and may block; it gets the function that stops
    the run as that signal number would (off the main thread no signal handlers are set)."""
    keep_freed_buffers()
    plans, entry = arrival_plans(config)
    outputs = RunOutputs.prepare(config.metrics_csv, config.summary_json, config.output_dir)
    stop = threading.Event()
    stop_signals: list[int] = []

    def request_stop(signum: int, _frame) -> None:
        stop_signals.append(signum)
        stop.set()

    # Only the main thread may set handlers; a shard runs on a Ray actor's thread.
    previous = ({s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
                if threading.current_thread() is threading.main_thread() else {})
    try:
        with ExitStack() as stack:
            try:
                address = config.scheduler_url
                if config.embedded:
                    scheduler = stack.enter_context(embedded_scheduler(config))
                    address = scheduler.address
                # A blocking channel for the checks before traffic; the load has its own.
                with open_channel(config.tls, address) as channel:
                    _check_reachable(channel, address, config.tls is not None)
                    target = _target(config)
                    target.prepare(channel, config.metadata)
            except BaseException:
                outputs.discard()
                raise

            print(f"fastload: seed {config.seed}, {config.workload.name}, "
                  f"{describe_arrivals(config, plans)} -> {address}"
                  f"{' (KServe v2)' if config.kserve else ''}", flush=True)
            if config.per_class and plans[0].duration_ms != config.duration_ms:
                print(f"fastload: every per-class LoadGen test runs {plans[0].duration_ms} ms, "
                      f"long enough for each class to reach its share of --min-query-count",
                      flush=True)
            phases = config.phases
            stats = RunStats(tuple(c for plan in plans for c in plan.classes), len(phases))
            arrivals = Arrivals(plans, entry, multiprocessing.get_context("spawn"))
            arrivals.wait_ready(ARRIVALS_START_TIMEOUT_S)
            dispatcher = _dispatcher(config, address, target, arrivals)
            if before_go is not None:
                before_go(lambda signum: request_stop(signum, None))
            # GO first, then the recorder: samples wait in the pipe until serve() reads them.
            start_mono_ns = time.monotonic_ns()
            arrivals.go(start_mono_ns)
            # Every plan runs for its duration_ms (per-class tests may run longer than asked).
            progress = Progress(max(plan.duration_ms for plan in plans) / 1000, start_mono_ns,
                                lambda: (dispatcher.in_flight(), recorder.unflushed()))
            recorder = Recorder(outputs.open_csv(), _both(stats.add, progress.add),
                                config.schedule, start_mono_ns)
            if config.progress:
                progress.start()
            try:
                with without_gc_pauses():
                    finished = dispatcher.serve(arrivals, recorder, stop)
                if not finished:
                    print(f"fastload: {signal.Signals(stop_signals[0]).name}: stopped issuing; "
                          f"waiting up to {config.timeout_ms} ms for requests in flight",
                          file=sys.stderr, flush=True)
                    arrivals.stop(timeout_s=0)
                dispatcher.drain(config.timeout_ms / 1000 + DRAIN_MARGIN_S)
            finally:
                arrivals.stop()
                dispatcher.close()
                arrivals.close()
                recorder.finish()
                progress.stop()
            if config.embedded:
                scheduler_stats = scheduler.stop(signal.SIGINT).stdout.strip()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    interrupted = bool(stop_signals)
    issuers = arrivals.issuers
    lost = [issuer.plan.label for issuer in issuers if not issuer.ended and not interrupted]
    verdicts = [issuer.plan.verdict(issuer.ended) for issuer in issuers]
    summary = summarize(stats, config.total_qps, config.workload.name, config.seed,
                        [v for v in verdicts if v is not None], interrupted, phases,
                        start_mono_ns)
    write_json(summary, config.summary_json)
    print(format_summary(summary), flush=True)
    if config.embedded:
        print(f"reference scheduler: {scheduler_stats}", flush=True)
    held = report_held(config.thresholds, summary)
    if interrupted:
        return 128 + stop_signals[0]
    if dispatcher.died:
        print(f"fastload: error: sender process {dispatcher.died[0]} died before the test "
              f"ended; the outputs hold every sample the others recorded", file=sys.stderr)
        return EXIT_LOADGEN_FAILED
    if lost:
        print(f"fastload: error: arrival process {lost[0]} exited before its test ended; "
              f"the outputs hold what it issued", file=sys.stderr)
        return EXIT_LOADGEN_FAILED
    if recorder.write_error is not None:
        print(f"fastload: error: {config.metrics_csv} is incomplete: writing it failed "
              f"({recorder.write_error.strerror}); the summary counts every sample",
              file=sys.stderr)
        return EXIT_OUTPUT_FAILED
    if held:
        return EXIT_THRESHOLD
    return EXIT_REQUEST_ERRORS if summary.overall.errors else EXIT_OK


def _both(first: Callable[[Sequence], None], second: Callable[[Sequence], None]
          ) -> Callable[[Sequence], None]:
    """One consumer that hands each batch of written records to two."""
    def consume(records: Sequence) -> None:
        first(records)
        second(records)
    return consume


def _dispatcher(config: RunConfig, address: str, target: Target,
                arrivals: Arrivals) -> Dispatcher | SenderProcesses:
    """The senders: this process's event loop, or --processes N sender processes."""
    channel = partial(open_channel, config.tls, address, aio=True)
    timeout_s = config.timeout_ms / 1000
    if config.processes > 1:
        return SenderProcesses(config.processes, arrivals, channel, target, timeout_s,
                               config.max_inflight, timeout_s + DRAIN_MARGIN_S,
                               config.metadata, multiprocessing.get_context("spawn"))
    return Dispatcher(channel, target, timeout_s, config.max_inflight, config.metadata)


def open_channel(tls: TlsConfig | None, address: str, aio: bool = False
                 ) -> grpc.Channel | grpc.aio.Channel:
    """A channel to the target: blocking, or ``aio`` for the load (made on its event loop)."""
    channels = grpc.aio if aio else grpc
    if tls is None:
        return channels.insecure_channel(address, options=CHANNEL_OPTIONS)
    credentials = grpc.ssl_channel_credentials(tls.ca_cert, tls.client_key, tls.client_cert)
    return channels.secure_channel(address, credentials, options=CHANNEL_OPTIONS)


def _check_reachable(channel: grpc.Channel, address: str, tls: bool) -> None:
    try:
        grpc.channel_ready_future(channel).result(timeout=REACH_TIMEOUT_S)
    except grpc.FutureTimeoutError:
        hint = ("; if it is up, the TLS handshake failed: check --ca-cert and the server's "
                "certificate" if tls else
                "; start the reference one with `python -m fastload.scheduler` or pass --embedded")
        raise TargetUnavailable(
            f"cannot reach the scheduler at {address} within {REACH_TIMEOUT_S:g} s{hint}"
        ) from None


def arrival_plans(config: RunConfig) -> tuple[list, Callable]:
    """The arrival processes' plans and their entry point: LoadGen for Poisson shapes, the
    timer for gamma arrivals and traces."""
    if config.burstiness is not None:  # with a trace: a shard's part of a gamma plan
        classes = config.workload.active_classes(config.schedule.peak_qps)
        return [TimerPlan("gamma", classes, config.seed, config.schedule,
                          config.burstiness, trace=config.trace)], run_timer
    if config.trace is not None:
        return [TimerPlan("trace", config.workload.classes, config.seed,
                          trace=config.trace)], run_timer
    return plan_arrivals(config.workload, config.schedule, config.min_query_count, config.seed,
                         str(config.output_dir), config.per_class), run_loadgen


def describe_arrivals(config: RunConfig, plans: list) -> str:
    """The arrivals in a few words, for the line a run starts with."""
    if config.trace is not None and config.burstiness is None:
        return (f"replaying {config.trace_path} ({len(config.trace.offsets_s)} arrivals over "
                f"{config.duration_ms} ms)")
    shape = (f"gamma arrivals (shape {config.burstiness:g}, CV {config.burstiness ** -0.5:.2f})"
             if config.burstiness is not None else "Poisson arrivals")
    if config.schedule.is_constant:
        return f"{shape} at {config.total_qps:g} QPS for {plans[0].duration_ms} ms"
    return (f"{shape} on schedule {config.schedule.describe()} ({config.duration_ms} ms, "
            f"mean {config.total_qps:.4g} QPS, peak {config.schedule.peak_qps:g})")


def _target(config: RunConfig) -> Target:
    shapes = config.workload.model_shapes
    if config.kserve is not None:
        return KServeTarget(config.kserve, shapes, config.seed, config.fresh_tensors)
    return SchedulerTarget(shapes, config.seed, config.tensor_field, config.fresh_tensors)


def embedded_scheduler(config: RunConfig, host: str = "127.0.0.1") -> SchedulerProcess:
    """The reference scheduler --embedded starts, bound to ``host``, said on stdout."""
    policy = ("--policy", config.embedded_policy, "--gpus", str(config.embedded_gpus))
    scheduler = SchedulerProcess(*policy, *_embedded_input_shapes(config.workload), host=host)
    print(f"fastload: embedded reference scheduler on {scheduler.address} "
          f"({' '.join(policy)})", flush=True)
    return scheduler


def _embedded_input_shapes(workload: Workload) -> list[str]:
    """--input-shape flags that make the reference's KServe metadata fit the workload's
    shapes (first dimension -1, the batch), for the models it serves by default."""
    return [f"--input-shape={model}=" + "x".join(map(str, (-1, *shape[1:])))
            for model, shape in workload.model_shapes.items()
            if model in DEFAULT_SERVICE_MS and shape]
