"""Command line of the reference scheduler: flags into a `Config`, then serve; no logic here.

Exit codes: 0 after SIGINT/SIGTERM, 1 when the address cannot be bound, 2 for bad flags.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import sys
from pathlib import Path
from typing import Callable, Sequence

from fastload.commands.argparsing import OneLineParser
from fastload.memory import keep_freed_buffers
from fastload.scheduler.policies import POLICIES
from fastload.scheduler.server import (
    DEFAULT_INPUT_SHAPE,
    DEFAULT_SERVICE_MS,
    Config,
    ListenError,
    ServerTls,
    serve,
)

PROG = "python -m fastload.scheduler"


def _model_ms(text: str) -> tuple[str, float]:
    model, sep, ms_text = text.partition("=")
    try:
        ms = float(ms_text)
    except ValueError:
        ms = math.nan
    if not sep or not model or not math.isfinite(ms) or ms < 0:
        raise argparse.ArgumentTypeError(
            f"expected MODEL=MS with MS >= 0, e.g. vit=15, got {text!r}"
        )
    return model, ms


def _model_shape(text: str) -> tuple[str, tuple[int, ...]]:
    model, sep, dims_text = text.partition("=")
    try:
        dims = tuple(int(dim) for dim in dims_text.split("x")) if dims_text else ()
    except ValueError:
        dims = (-2,)
    if not sep or not model or any(dim < -1 for dim in dims):
        raise argparse.ArgumentTypeError(
            f"expected MODEL=DIMS with dims >= -1 joined by x, e.g. vit=-1x3x224x224, "
            f"got {text!r}")
    return model, dims


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value: int | None = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected an integer in [{low}, {high}], got {text!r}"
            )
        return value

    return parse


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = OneLineParser(
        prog=PROG,
        description="Reference scheduler: queues requests by policy on simulated GPUs; serves "
        "scheduler.SchedulerService and KServe v2 (inference.GRPCInferenceService) on one port.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=_int_in(0, 65535), default=50051, help="0 picks a free port (default 50051)"
    )
    parser.add_argument(
        "--gpus", type=_int_in(1, 4096), default=1, help="simulated GPU workers (default 1)"
    )
    parser.add_argument(
        "--policy", choices=sorted(POLICIES), default="fifo", help="queue order (default fifo)"
    )
    parser.add_argument(
        "--service-ms",
        type=_model_ms,
        action="append",
        default=[],
        metavar="MODEL=MS",
        help="service time per request of a model; repeatable; also serves new models (default "
        + ", ".join(f"{model}={ms:g}" for model, ms in DEFAULT_SERVICE_MS.items())
        + ")",
    )
    parser.add_argument(
        "--input-shape", type=_model_shape, action="append", default=[], metavar="MODEL=DIMS",
        help="the input shape KServe ModelMetadata reports for a model, -1 for any size; "
        "repeatable (default " + "x".join(map(str, DEFAULT_INPUT_SHAPE)) + ")",
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve TLS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    parser.add_argument("--tls-client-ca", type=Path,
                        help="PEM CA: require client certificates it signed (mutual TLS)")
    parser.add_argument("--auth-token", help="require metadata `authorization: Bearer TOKEN`")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop (as on SIGTERM) when the process that started this one exits")
    parser.add_argument("--metrics-port", type=_int_in(0, 65535), metavar="PORT",
                        help="serve Prometheus metrics on http://HOST:PORT/metrics (0: a free "
                             "port, printed after the listening line): queue length per tier "
                             "and model, GPU busy time, requests by tier and outcome, queue "
                             "wait and service histograms")
    args = parser.parse_args(argv)
    service_ms = {**DEFAULT_SERVICE_MS, **dict(args.service_ms)}
    input_shapes = dict(args.input_shape)
    unknown = sorted(set(input_shapes) - set(service_ms))
    if unknown:
        parser.error(f"--input-shape names {', '.join(unknown)}, which is not served; add "
                     f"--service-ms {unknown[0]}=MS")
    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        if not (args.tls_cert and args.tls_key):
            parser.error("--tls-cert and --tls-key go together (and --tls-client-ca needs them)")
        tls = ServerTls(_read_pem(parser, args.tls_cert), _read_pem(parser, args.tls_key),
                        _read_pem(parser, args.tls_client_ca) if args.tls_client_ca else None)
    return Config(
        host=args.host,
        port=args.port,
        gpus=args.gpus,
        policy=args.policy,
        service_s={model: ms / 1000 for model, ms in service_ms.items()},
        input_shapes={model: input_shapes.get(model, DEFAULT_INPUT_SHAPE) for model in service_ms},
        tls=tls,
        auth_token=args.auth_token,
        exit_with_parent=args.exit_with_parent,
        metrics_port=args.metrics_port,
    )


def _read_pem(parser: argparse.ArgumentParser, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        parser.error(f"{path}: cannot read it ({exc.strerror})")
    if b"-----BEGIN" not in data:
        parser.error(f"{path} is not a PEM file")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    keep_freed_buffers()
    try:
        stats = asyncio.run(serve(config))
    except ListenError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(stats.line(), flush=True)
    return 0
