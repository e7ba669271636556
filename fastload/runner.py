"""One run, start to finish: scheduler check, LoadGen processes, dispatch, outputs."""
from __future__ import annotations

import multiprocessing
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc

from fastload._encode import RequestEncoder
from fastload.arrivals import Issuer, plan_arrivals
from fastload.dispatch import Dispatcher
from fastload.embedded import EmbeddedScheduler
from fastload.metrics import Recorder, format_summary, summarize, write_csv, write_json
from fastload.workload import Workload

# Exit codes (documented in the README).
EXIT_OK = 0
EXIT_REQUEST_ERRORS = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

# Room for a tensor of any reasonable shape plus headers.
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
)
REACH_TIMEOUT_S = 3.0
LOADGEN_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, parsed and validated by the CLI."""

    scheduler_url: str
    total_qps: float
    duration_ms: int
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

    @property
    def summary_json(self) -> Path:
        return self.metrics_csv.with_suffix(".json")


class SchedulerUnreachable(RuntimeError):
    pass


def run(config: RunConfig) -> int:
    """Run the test and write the CSV, the JSON summary and LoadGen's logs; return the exit code."""
    with ExitStack() as stack:
        target = config.scheduler_url
        if config.embedded:
            scheduler = stack.enter_context(EmbeddedScheduler())
            target = scheduler.address
            print(f"fastload: embedded reference scheduler on {target}", flush=True)
        channel = stack.enter_context(grpc.insecure_channel(target, options=CHANNEL_OPTIONS))
        _check_reachable(channel, target)
        for directory in (config.metrics_csv.parent, config.output_dir):
            directory.mkdir(parents=True, exist_ok=True)

        print(f"fastload: seed {config.seed}, {config.workload.name} at {config.total_qps:g} QPS "
              f"for {config.duration_ms} ms -> {target}", flush=True)
        recorder = Recorder()
        issuers = _start_issuers(config)
        dispatcher = Dispatcher(channel, _encoders(config), recorder,
                                timeout_s=config.timeout_ms / 1000, max_inflight=config.max_inflight)
        try:
            for issuer in issuers:
                issuer.go()
            dispatcher.serve(issuers)
        finally:
            dispatcher.close()
            for issuer in issuers:
                issuer.stop()

    valid_flags = [issuer.valid for issuer in issuers]
    loadgen_valid = None if None in valid_flags else all(valid_flags)
    summary = summarize(recorder.records, config.workload.active_classes(config.total_qps),
                        config.total_qps, config.workload.name, config.seed, loadgen_valid)
    write_csv(recorder.records, config.metrics_csv)
    write_json(summary, config.summary_json)
    print(format_summary(summary), flush=True)
    if config.embedded and scheduler.stats_line:
        print(f"reference scheduler: {scheduler.stats_line}", flush=True)
    return EXIT_REQUEST_ERRORS if summary.overall.errors else EXIT_OK


def _check_reachable(channel: grpc.Channel, target: str) -> None:
    try:
        grpc.channel_ready_future(channel).result(timeout=REACH_TIMEOUT_S)
    except grpc.FutureTimeoutError:
        raise SchedulerUnreachable(
            f"cannot reach the scheduler at {target} within {REACH_TIMEOUT_S:g} s; start the "
            f"reference one with `python -m fastload.scheduler` or pass --embedded"
        ) from None


def _start_issuers(config: RunConfig) -> list[Issuer]:
    plans = plan_arrivals(config.workload, config.total_qps, config.duration_ms,
                          config.min_query_count, config.seed, str(config.output_dir),
                          config.per_class)
    context = multiprocessing.get_context("spawn")
    issuers = [Issuer(plan, context) for plan in plans]
    for issuer in issuers:
        issuer.wait_ready(LOADGEN_START_TIMEOUT_S)
    return issuers


def _encoders(config: RunConfig) -> dict[str, RequestEncoder]:
    """One encoder per distinct shape, shared by the models that use it."""
    by_shape: dict[tuple[int, ...], RequestEncoder] = {}
    for index, shape in enumerate(sorted(set(config.workload.model_shapes.values()))):
        by_shape[shape] = RequestEncoder(shape, tensor_field=config.tensor_field,
                                         fresh=config.fresh_tensors, seed=config.seed + index)
    return {model: by_shape[shape] for model, shape in config.workload.model_shapes.items()}
