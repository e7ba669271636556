"""Command line: parse and validate flags into a RunConfig, then hand over to the runner."""
from __future__ import annotations

import argparse
import math
import random
import re
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from fastload.workload import WORKLOAD_FRACTIONS, Workload, WorkloadError, builtin_workload, \
    load_workload_file

TENSOR_FIELDS = {"raw": 6, "float": 4}
_METADATA_KEY = re.compile(r"^[a-z0-9_.-]+$")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


class UsageError(ValueError):
    """A flag value that cannot be used; printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="fastload",
        description="MLPerf LoadGen (Server scenario, Poisson arrivals) traffic for a "
                    "priority-aware inference scheduler over gRPC.",
    )
    p.add_argument("--scheduler-url", default="localhost:50051",
                   help="scheduler gRPC endpoint, host:port or unix:PATH (default %(default)s)")
    p.add_argument("--total-qps", type=float, default=30.0,
                   help="total rate over all classes (default %(default)s)")
    p.add_argument("--duration-ms", type=int, default=60000,
                   help="LoadGen min duration (default %(default)s)")
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
    p.add_argument("--seed", type=int,
                   help="seed for LoadGen's schedule, class/model draws and tensors "
                        "(default: random, printed)")
    p.add_argument("--tensor-field", choices=sorted(TENSOR_FIELDS), default="raw",
                   help="raw: bytes field 6 (default); float: packed repeated float field 4, "
                        "for schedulers built on the unmodified spec proto")
    p.add_argument("--fresh-tensors", action="store_true",
                   help="regenerate every tensor value for every request (slower)")
    p.add_argument("--timeout-ms", type=int, default=5000,
                   help="per-request gRPC deadline (default %(default)s)")
    p.add_argument("--max-inflight", type=int, default=1024,
                   help="requests in flight at most; samples over it complete at once as "
                        "CLIENT_OVERLOAD (default %(default)s)")
    p.add_argument("--loadgen-per-class", action="store_true",
                   help="one LoadGen test per class, each in its own process (the spec's topology)")
    p.add_argument("--embedded", action="store_true",
                   help="start the reference scheduler on a free loopback port and target it")
    tls = p.add_argument_group("secure channels")
    tls.add_argument("--tls", action="store_true", help="connect over TLS")
    tls.add_argument("--ca-cert", type=Path,
                     help="PEM roots to verify the scheduler with (default: system roots)")
    tls.add_argument("--client-cert", type=Path, help="PEM client certificate, for mutual TLS")
    tls.add_argument("--client-key", type=Path, help="PEM client key, for mutual TLS")
    tls.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                     help="gRPC metadata on every call, e.g. authorization='Bearer T'; repeatable")
    return p


def parse_config(argv: Sequence[str] | None = None):
    """Parse flags into a RunConfig; raises UsageError or WorkloadError with one-line messages."""
    from fastload.runner import RunConfig

    args = build_parser().parse_args(argv)
    _require(math.isfinite(args.total_qps) and args.total_qps > 0,
             f"--total-qps must be a positive number, got {args.total_qps:g}")
    _require(args.duration_ms > 0, f"--duration-ms must be > 0, got {args.duration_ms}")
    _require(args.min_query_count >= 0,
             f"--min-query-count must be >= 0, got {args.min_query_count}")
    _require(args.timeout_ms > 0, f"--timeout-ms must be > 0, got {args.timeout_ms}")
    _require(args.max_inflight > 0, f"--max-inflight must be > 0, got {args.max_inflight}")
    _require(args.seed is None or args.seed >= 0, f"--seed must be >= 0, got {args.seed}")
    if not args.embedded:
        _check_url(args.scheduler_url)
    workload: Workload = (load_workload_file(args.workload_file) if args.workload_file
                          else builtin_workload(args.workload))
    _require(args.metrics_csv.suffix.lower() != ".json",
             f"--metrics-csv must not end in .json (the summary goes to a .json beside it), "
             f"got {args.metrics_csv}")
    tls_config = _tls_config(args)
    metadata = tuple(_metadata_pair(item) for item in args.metadata)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    return RunConfig(
        scheduler_url=args.scheduler_url, total_qps=args.total_qps, duration_ms=args.duration_ms,
        workload=workload, min_query_count=args.min_query_count, output_dir=args.output_dir,
        metrics_csv=args.metrics_csv, seed=seed, tensor_field=TENSOR_FIELDS[args.tensor_field],
        fresh_tensors=args.fresh_tensors, timeout_ms=args.timeout_ms,
        max_inflight=args.max_inflight, per_class=args.loadgen_per_class, embedded=args.embedded,
        tls=tls_config, metadata=metadata,
    )


def _tls_config(args: argparse.Namespace):
    from fastload.runner import TlsConfig

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


def _check_url(url: str) -> None:
    if url.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")):
        return
    match = _HOST_PORT.match(url)
    _require(match is not None and 0 < int(match.group(2)) < 65536,
             f"--scheduler-url must be host:port (e.g. localhost:50051) or unix:PATH, got {url!r}")


def main(argv: Sequence[str] | None = None) -> int:
    from fastload import runner
    from fastload.outputs import OutputError

    try:
        return runner.run(parse_config(argv))
    except (UsageError, WorkloadError, OutputError) as exc:
        print(f"fastload: error: {exc}", file=sys.stderr)
        return runner.EXIT_USAGE
    except runner.SchedulerUnreachable as exc:
        print(f"fastload: error: {exc}", file=sys.stderr)
        return runner.EXIT_UNREACHABLE
