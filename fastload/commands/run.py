"""`python -m fastload`: flags parsed and validated into a RunConfig, then the run, on this machine
or as Ray shards; errors before traffic are one line and their exit code."""
from __future__ import annotations

import argparse
import importlib.util
import math
import random
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Sequence

from fastload.arrivals.trace import TraceError, load_trace
from fastload.commands.argparsing import OneLineParser
from fastload.contract.config import (
    CSV_FORMAT,
    DEFAULT_EMBEDDED_GPUS,
    DEFAULT_EMBEDDED_POLICY,
    DEFAULT_PRIORITIES,
    DEFAULT_SCRAPE_INTERVAL_MS,
    GRPCIO_TRANSPORT,
    H2_TRANSPORT,
    JOURNAL_SUFFIX,
    PARQUET_FORMAT,
    PARQUET_SUFFIX,
    KServeOptions,
    RunConfig,
    ServerModel,
    TlsConfig,
)
from fastload.contract.exits import START_ERRORS, UsageError, exit_code_for
from fastload.contract.load import (
    DEFAULT_LAG_SHARE_OF_SLO,
    DEFAULT_MAX_BUSY,
    DEFAULT_RATE_SIGMAS,
    LoadLimits,
)
from fastload.contract.rates import RateSchedule, ScheduleError, parse_schedule
from fastload.contract.signals import AS_IS, PRIORITY_SIGNALS, PrioritySignal
from fastload.contract.thresholds import ThresholdError, parse_threshold
from fastload.contract.workload import (
    WORKLOAD_FRACTIONS,
    Workload,
    builtin_workload,
    load_workload_file,
)
from fastload.run.local import run_local
from fastload.scheduler.policies import POLICIES

TENSOR_FIELDS = {"raw": 6, "float": 4}
DEFAULT_TOTAL_QPS = 30.0
DEFAULT_DURATION_MS = 60000
MAX_PROCESSES = 256
MAX_SHARDS = 1024
MIN_SCRAPE_INTERVAL_MS = 10
_METADATA_KEY = re.compile(r"^[a-z0-9_.-]+$")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="fastload",
        description="MLPerf LoadGen (Server scenario, Poisson arrivals) traffic for a "
                    "priority-aware inference scheduler over gRPC.",
    )
    p.add_argument("--scheduler-url", default="localhost:50051",
                   help="scheduler gRPC endpoint, host:port or unix:PATH (default %(default)s)")
    p.add_argument("--total-qps", type=float,
                   help=f"total rate over all classes (default {DEFAULT_TOTAL_QPS:g})")
    p.add_argument("--duration-ms", type=int,
                   help=f"LoadGen min duration (default {DEFAULT_DURATION_MS})")
    p.add_argument("--workload", default="balanced", choices=sorted(WORKLOAD_FRACTIONS),
                   help="built-in class mix (default %(default)s)")
    p.add_argument("--workload-file", type=Path,
                   help="TOML or JSON file defining classes, mix and model shapes; "
                        "overrides --workload")
    p.add_argument("--min-query-count", type=int, default=100,
                   help="LoadGen min query count (default %(default)s)")
    p.add_argument("--output-dir", type=Path, default=Path("./loadgen_logs"),
                   help="root of LoadGen's own logs (default %(default)s)")
    p.add_argument("--metrics-csv", type=Path, default=Path("./metrics.csv"),
                   help="per-request CSV; the summary JSON goes beside it (default %(default)s)")
    p.add_argument("--output-format", choices=(CSV_FORMAT, PARQUET_FORMAT),
                   help="per-request results as CSV (the spec's) or Parquet, written to "
                        "--metrics-csv's <stem>.parquet (default: parquet when --metrics-csv "
                        "ends in .parquet, else csv)")
    p.add_argument("--seed", type=int,
                   help="seed for LoadGen's schedule, class/model draws and tensors "
                        "(default: random, printed)")
    p.add_argument("--tensor-field", choices=sorted(TENSOR_FIELDS),
                   help="raw: bytes field 6 (default); float: packed repeated float field 4, "
                        "for schedulers built on the unmodified spec proto")
    p.add_argument("--fresh-tensors", action="store_true",
                   help="regenerate every tensor value for every request (slower)")
    p.add_argument("--timeout-ms", type=int, default=5000,
                   help="per-request gRPC deadline (default %(default)s)")
    p.add_argument("--max-inflight", type=int, default=1024,
                   help="requests in flight at most; samples over it complete at once as "
                        "CLIENT_OVERLOAD (default %(default)s; split evenly over --processes)")
    p.add_argument("--transport", choices=(GRPCIO_TRANSPORT, H2_TRANSPORT),
                   help="h2: fastload's own HTTP/2 connections, each request handed to the "
                        "kernel without a copy, about half grpcio's client CPU per request "
                        "(cleartext only); grpcio: grpc.aio's channel (default: h2, grpcio "
                        "with --tls)")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="sender processes, each with its own connection and encoders, for "
                        "rates one process's GIL cannot carry; 1: this process sends "
                        "(default %(default)s)")
    p.add_argument("--loadgen-per-class", action="store_true",
                   help="one LoadGen test per class, each in its own process (the spec's topology)")
    p.add_argument("--embedded", action="store_true",
                   help="start the reference scheduler on a free loopback port and target it")
    p.add_argument("--embedded-policy", choices=sorted(POLICIES),
                   help=f"the embedded scheduler's queue order (default "
                        f"{DEFAULT_EMBEDDED_POLICY})")
    p.add_argument("--embedded-gpus", type=int,
                   help=f"the embedded scheduler's simulated GPUs (default "
                        f"{DEFAULT_EMBEDDED_GPUS})")
    p.add_argument("--quiet", action="store_true",
                   help="no live status line on stderr")
    p.add_argument("--fail-if", action="append", default=[], metavar="ROW.FIELD<OP>NUMBER",
                   help="exit 6 if the condition holds for the summary, e.g. "
                        "'tier1_urgent.attainment<99' or 'all.p99>250' (ms); repeatable")
    p.add_argument("--priority-signal", choices=PRIORITY_SIGNALS, default=AS_IS,
                   help="the tier each request carries to the server: as-is (its own, "
                        "default), equal (the middle tier for all) or shuffled (drawn with the "
                        "workload's mix, whatever the class): the control that shows what "
                        "priority buys; arrivals, classes, models and tensors stay the seed's")
    p.add_argument("--protocol", choices=("scheduler", "kserve"), default="scheduler",
                   help="scheduler: the spec's SchedulerService/Infer (default); kserve: KServe "
                        "v2 ModelInfer (Triton, KServe, MLServer, OpenVINO Model Server)")
    kserve = p.add_argument_group("KServe v2 (--protocol kserve)")
    kserve.add_argument("--model-map", action="append", default=[],
                        metavar="MODEL=SERVER_MODEL[:VERSION]",
                        help="send a workload model to another server model (and version), "
                             "e.g. resnet50=resnet50_onnx:1; repeatable (default: same name, "
                             "the server's version)")
    kserve.add_argument("--tier-priority", metavar="TIER=LEVEL,...|off",
                        help="request parameter `priority` per tier (Triton: 1 highest, 0 the "
                             "model's default); off sends none (default 1=1,2=2,3=3)")
    kserve.add_argument("--deadline-timeout", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="send request parameter `timeout`: µs left until the sample's "
                             "deadline when its call starts (default on)")
    shapes = p.add_argument_group("arrival shapes (default: Poisson at --total-qps)")
    shapes.add_argument("--qps-schedule", metavar="SPEC",
                        help="phases DURATION@QPS or DURATION@A..B (a ramp), comma-separated, "
                             "durations in ms, s or m, e.g. 20s@200,5s@800,20s@200; replaces "
                             "--total-qps and --duration-ms")
    shapes.add_argument("--burstiness", type=float, metavar="K",
                        help="gamma inter-arrival times of shape K (CV 1/sqrt(K); 1 is Poisson, "
                             "below 1 burstier), issued by fastload's timer instead of LoadGen")
    shapes.add_argument("--arrival-trace", type=Path, metavar="FILE",
                        help="replay arrival times from a CSV or JSON-lines file with a "
                             "timestamp column (ms, or ISO-8601) and optional tier, slo, model")
    shapes.add_argument("--trace-speed", type=float, metavar="X",
                        help="replay the trace X times faster (default 1)")
    tls = p.add_argument_group("secure channels")
    tls.add_argument("--tls", action="store_true", help="connect over TLS")
    tls.add_argument("--ca-cert", type=Path,
                     help="PEM roots to verify the scheduler with (default: system roots)")
    tls.add_argument("--client-cert", type=Path, help="PEM client certificate, for mutual TLS")
    tls.add_argument("--client-key", type=Path, help="PEM client key, for mutual TLS")
    tls.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                     help="gRPC metadata on every call, e.g. authorization='Bearer T'; repeatable")
    limits = p.add_argument_group(
        "the load certificate: past these limits the client, not the server, was the "
        "bottleneck")
    limits.add_argument("--max-lag-ms", type=float, metavar="MS",
                        help=f"the most issue lateness, send lag or sender event-loop lag (p99) "
                             f"the client may add (default {100 * DEFAULT_LAG_SHARE_OF_SLO:g} %% "
                             f"of the workload's tightest SLO: 5 ms for 100 ms)")
    limits.add_argument("--max-sender-busy", type=float, metavar="PCT",
                        default=100 * DEFAULT_MAX_BUSY,
                        help="the most CPU a sender process may use, in %% of one core "
                             "(default %(default)g)")
    limits.add_argument("--rate-sigmas", type=float, metavar="K", default=DEFAULT_RATE_SIGMAS,
                        help="how far the issued counts may stray from the plan, in standard "
                             "deviations of Poisson count noise (default %(default)g)")
    server = p.add_argument_group("the server's side: its Prometheus metrics, scraped from a "
                                  "process of fastload's own, beside the CSV")
    server.add_argument("--server-metrics", action="append", default=[], metavar="URL",
                        help="scrape this Prometheus endpoint (http://host:port/metrics) from "
                             "just before GO to just after the drain into <csv stem>"
                             ".server-metrics.csv; repeatable; --embedded scrapes its "
                             "scheduler without it")
    server.add_argument("--server-metrics-interval-ms", type=int, metavar="MS",
                        default=DEFAULT_SCRAPE_INTERVAL_MS,
                        help="time between scrapes (default %(default)s)")
    ray = p.add_argument_group("several machines (needs Ray: pip install 'fastload[ray]')")
    ray.add_argument("--ray", metavar="ADDRESS",
                     help="run as --shards shards on a Ray cluster, merged into one CSV and "
                          "summary: auto (the cluster `ray start` made), local (a throwaway Ray "
                          "on this machine) or HOST:PORT")
    ray.add_argument("--shards", type=int, metavar="K",
                     help="shards for --ray, spread over its nodes, each at 1/K of the rate "
                          "(default: one per node)")
    return p


def parse_config(argv: Sequence[str] | None = None) -> RunConfig:
    """Parse flags into a RunConfig; raises UsageError or WorkloadError with one-line messages."""
    args = build_parser().parse_args(argv)
    _require_positive("--total-qps", args.total_qps)
    _require(args.duration_ms is None or args.duration_ms > 0,
             f"--duration-ms must be > 0, got {args.duration_ms}")
    _require(args.min_query_count >= 0,
             f"--min-query-count must be >= 0, got {args.min_query_count}")
    _require(args.timeout_ms > 0, f"--timeout-ms must be > 0, got {args.timeout_ms}")
    _require(args.max_inflight > 0, f"--max-inflight must be > 0, got {args.max_inflight}")
    _require(1 <= args.processes <= MAX_PROCESSES,
             f"--processes must be in [1, {MAX_PROCESSES}], got {args.processes}")
    _require(args.seed is None or args.seed >= 0, f"--seed must be >= 0, got {args.seed}")
    for flag, value in (("--max-lag-ms", args.max_lag_ms),
                        ("--max-sender-busy", args.max_sender_busy),
                        ("--rate-sigmas", args.rate_sigmas)):
        _require_positive(flag, value)
    if not args.embedded:
        _check_url(args.scheduler_url)
    for url in args.server_metrics:
        _check_metrics_url(url)
    _require(args.server_metrics_interval_ms >= MIN_SCRAPE_INTERVAL_MS,
             f"--server-metrics-interval-ms must be >= {MIN_SCRAPE_INTERVAL_MS}, got "
             f"{args.server_metrics_interval_ms}")
    workload: Workload = (load_workload_file(args.workload_file) if args.workload_file
                          else builtin_workload(args.workload))
    schedule, trace = _arrival_shape(args, workload)
    _require(args.metrics_csv.suffix.lower() != ".json",
             f"--metrics-csv must not end in .json (the summary goes to a .json beside it), "
             f"got {args.metrics_csv}")
    output_format = _output_format(args.output_format, args.metrics_csv)
    tls_config = _tls_config(args)
    _require(tls_config is None or args.transport != H2_TRANSPORT,
             "--transport h2 speaks cleartext HTTP/2 only; TLS runs over grpcio (drop "
             "--transport h2)")
    transport = args.transport or (GRPCIO_TRANSPORT if tls_config else H2_TRANSPORT)
    metadata = tuple(_metadata_pair(item) for item in args.metadata)
    kserve = _kserve_options(args, workload)
    _require(args.priority_signal == AS_IS or kserve is None or kserve.priorities is not None,
             f"--priority-signal {args.priority_signal} changes the priority sent, but "
             f"--tier-priority off sends none")
    _require(args.embedded or (args.embedded_policy is None and args.embedded_gpus is None),
             "--embedded-policy and --embedded-gpus need --embedded")
    _require(args.embedded_gpus is None or 1 <= args.embedded_gpus <= 4096,
             f"--embedded-gpus must be in [1, 4096], got {args.embedded_gpus}")
    _require(args.shards is None or args.ray is not None, "--shards needs --ray")
    _require(args.shards is None or 1 <= args.shards <= MAX_SHARDS,
             f"--shards must be in [1, {MAX_SHARDS}], got {args.shards}")
    # Found, not imported: Ray is imported only once a sharded run starts.
    _require(args.ray is None or importlib.util.find_spec("ray") is not None,
             "--ray needs Ray, which is not installed: pip install 'fastload[ray]'")
    try:
        thresholds = tuple(parse_threshold(text, [c.label for c in workload.classes])
                           for text in args.fail_if)
    except ThresholdError as exc:
        raise UsageError(str(exc)) from None
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    return RunConfig(
        scheduler_url=args.scheduler_url, schedule=schedule, burstiness=args.burstiness,
        trace=trace, trace_path=args.arrival_trace, workload=workload,
        min_query_count=args.min_query_count, output_dir=args.output_dir,
        metrics_csv=args.metrics_csv, seed=seed,
        tensor_field=TENSOR_FIELDS[args.tensor_field or "raw"],
        fresh_tensors=args.fresh_tensors, timeout_ms=args.timeout_ms,
        max_inflight=args.max_inflight, per_class=args.loadgen_per_class, embedded=args.embedded,
        tls=tls_config, metadata=metadata, kserve=kserve,
        embedded_policy=args.embedded_policy or DEFAULT_EMBEDDED_POLICY,
        embedded_gpus=args.embedded_gpus or DEFAULT_EMBEDDED_GPUS,
        progress=not args.quiet, thresholds=thresholds, processes=args.processes,
        ray_address=args.ray, shards=args.shards,
        load_limits=LoadLimits(args.max_lag_ms, args.max_sender_busy / 100, args.rate_sigmas),
        priority_signal=PrioritySignal.of(args.priority_signal, workload),
        server_metrics=tuple(dict.fromkeys(args.server_metrics)),
        server_metrics_interval_ms=args.server_metrics_interval_ms,
        transport=transport,
        output_format=output_format,
    )


def _kserve_options(args: argparse.Namespace, workload: Workload) -> KServeOptions | None:
    """The KServe mapping from its flags; those flags only go with --protocol kserve."""
    if args.protocol != "kserve":
        given = [flag for flag, value in (("--model-map", args.model_map),
                                          ("--tier-priority", args.tier_priority),
                                          ("--deadline-timeout", args.deadline_timeout))
                 if value not in (None, [])]
        _require(not given, f"{given[0] if given else ''} needs --protocol kserve")
        return None
    _require(args.tensor_field is None,
             "--tensor-field is for --protocol scheduler; KServe tensors go in "
             "raw_input_contents")
    models = {}
    for item in args.model_map:
        model, sep, server = item.partition("=")
        name, colon, version = server.rpartition(":") if ":" in server else (server, "", "")
        _require(bool(sep) and bool(model) and bool(name) and (not colon or bool(version)),
                 f"--model-map must be MODEL=SERVER_MODEL or MODEL=SERVER_MODEL:VERSION, "
                 f"got {item!r}")
        _require(model in workload.model_shapes,
                 f"--model-map {item!r}: the workload has no model {model!r} (it has "
                 f"{', '.join(sorted(workload.model_shapes))})")
        models[model] = ServerModel(name, version)
    return KServeOptions(models, _tier_priorities(args.tier_priority, workload, DEFAULT_PRIORITIES),
                         args.deadline_timeout is not False)


def _tier_priorities(spec: str | None, workload: Workload,
                     default: dict[int, int]) -> dict[int, int] | None:
    """--tier-priority as tier -> level; every tier of the workload needs one."""
    if spec is None:
        return dict(default)
    if spec.strip().lower() == "off":
        return None
    priorities = {}
    for item in spec.split(","):
        tier, sep, level = item.partition("=")
        try:
            pair = (int(tier), int(level))
        except ValueError:
            pair = (-1, -1)
        _require(bool(sep) and pair[0] >= 0 and 0 <= pair[1] < 2**63,
                 f"--tier-priority must be off or TIER=LEVEL,... with levels >= 0, e.g. "
                 f"1=1,2=2,3=3, got {spec!r}")
        priorities[pair[0]] = pair[1]
    missing = sorted({c.tier for c in workload.classes} - set(priorities))
    if missing:
        raise UsageError(f"--tier-priority {spec!r} gives no level for tier {missing[0]}")
    return priorities


def _arrival_shape(args: argparse.Namespace, workload: Workload):
    """The run's rate schedule (constant unless phases are given) and trace, from the flags."""
    given = [flag for flag, value in (("--total-qps", args.total_qps),
                                      ("--duration-ms", args.duration_ms)) if value is not None]
    _require_positive("--burstiness", args.burstiness)
    _require(args.trace_speed is None or args.arrival_trace is not None,
             "--trace-speed needs --arrival-trace")
    timer = args.burstiness is not None or args.arrival_trace is not None
    _require(not (timer and args.loadgen_per_class),
             "--loadgen-per-class needs LoadGen's Poisson arrivals; it cannot be combined with "
             "--burstiness or --arrival-trace")
    if args.arrival_trace is not None:
        others = [*given, *(["--qps-schedule"] if args.qps_schedule else []),
                  *(["--burstiness"] if args.burstiness is not None else []),
                  *(["[[phases]] in the workload file"] if workload.schedule else [])]
        _require(not others, f"--arrival-trace sets the arrival times; drop {', '.join(others)}")
        _require_positive("--trace-speed", args.trace_speed)
        speed = 1.0 if args.trace_speed is None else args.trace_speed
        try:
            trace = load_trace(args.arrival_trace, workload.classes, speed)
        except TraceError as exc:
            raise UsageError(str(exc)) from None
        return None, trace
    if args.qps_schedule is not None or workload.schedule is not None:
        source = ("--qps-schedule" if args.qps_schedule is not None
                  else "the workload's [[phases]]")
        _require(not given, f"{source} sets the rate and the length of the run; drop "
                            f"{', '.join(given)}")
        _require(args.qps_schedule is None or workload.schedule is None,
                 "give the phases either with --qps-schedule or in the workload file, not both")
        if workload.schedule is not None:
            return workload.schedule, None
        try:
            return parse_schedule(args.qps_schedule), None
        except ScheduleError as exc:
            raise UsageError(f"--qps-schedule {args.qps_schedule!r}: {exc}") from None
    qps = DEFAULT_TOTAL_QPS if args.total_qps is None else args.total_qps
    duration_ms = DEFAULT_DURATION_MS if args.duration_ms is None else args.duration_ms
    return RateSchedule.constant(qps, duration_ms), None


def _output_format(asked: str | None, metrics_csv: Path) -> str:
    """--output-format, or the one --metrics-csv's suffix names."""
    suffix = metrics_csv.suffix.lower()
    _require(suffix != JOURNAL_SUFFIX,
             f"--metrics-csv must not end in {JOURNAL_SUFFIX} (a Parquet run's journal goes "
             f"there), got {metrics_csv}")
    if asked is None:
        return PARQUET_FORMAT if suffix == PARQUET_SUFFIX else CSV_FORMAT
    _require(asked == PARQUET_FORMAT or suffix != PARQUET_SUFFIX,
             f"--output-format csv cannot write a CSV to {metrics_csv} (a .parquet name)")
    return asked


def _tls_config(args: argparse.Namespace) -> TlsConfig | None:
    files = {"--ca-cert": args.ca_cert, "--client-cert": args.client_cert,
             "--client-key": args.client_key}
    given = [flag for flag, path in files.items() if path is not None]
    if not args.tls:
        _require(not given, f"{given[0] if given else ''} needs --tls")
        return None
    _require(not args.embedded, "--tls cannot be combined with --embedded")
    _require((args.client_cert is None) == (args.client_key is None),
             "--client-cert and --client-key go together (mutual TLS)")
    pem = {flag: _read_pem(path, flag) for flag, path in files.items() if path is not None}
    return TlsConfig(pem.get("--ca-cert"), pem.get("--client-cert"), pem.get("--client-key"))


def _read_pem(path: Path, flag: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot read it ({exc.strerror})") from None
    _require(b"-----BEGIN" in data, f"{flag} {path} is not a PEM file")
    return data


def _metadata_pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    key = key.strip().lower()
    _require(bool(sep) and _METADATA_KEY.match(key) is not None and not key.startswith("grpc-"),
             f"--metadata must be KEY=VALUE with a key of a-z 0-9 - _ . (not grpc-*), got {item!r}")
    _require(value.isascii() and value.isprintable(),
             f"--metadata {key} value must be printable ASCII")
    return key, value


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


def _require_positive(flag: str, value: float | None) -> None:
    """A float flag, when given, must be finite and > 0."""
    _require(value is None or (math.isfinite(value) and value > 0),
             f"{flag} must be a positive number, got {value}")


def _check_url(url: str) -> None:
    if url.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")):
        return
    match = _HOST_PORT.match(url)
    _require(match is not None and 0 < int(match.group(2)) < 65536,
             f"--scheduler-url must be host:port (e.g. localhost:50051) or unix:PATH, got {url!r}")


def _check_metrics_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    _require(parts.scheme in ("http", "https") and bool(parts.hostname),
             f"--server-metrics must be an http:// or https:// URL, e.g. "
             f"http://localhost:8002/metrics, got {url!r}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(argv)
        if config.ray_address is not None:
            # Imported only here: Ray is an optional extra, and importing the driver imports it.
            from fastload.run.shards.driver import run_sharded
            return run_sharded(config)
        return run_local(config)
    except tuple(START_ERRORS) as exc:
        print(f"fastload: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
