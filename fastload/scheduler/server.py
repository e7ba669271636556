"""The gRPC front ends and the simulated GPUs: parse, enqueue by policy, answer with the outcome.

One port serves both protocols: `scheduler.SchedulerService` (here) and KServe v2's
`inference.GRPCInferenceService` (kserve.py), onto the same queue and GPUs.

grpc.aio with a generic handler and no deserializer: each request arrives as bytes, is parsed
once by upb, and waits as a future rather than a thread, so a long queue cannot exhaust threads.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, fields
from typing import Mapping, NoReturn

import grpc

from fastload._pb.scheduler_pb2 import InferResponse
from fastload.scheduler.kserve_service import kserve_handler
from fastload.scheduler.metrics import (
    ANSWERED,
    CANCELLED,
    EXPIRED,
    REJECTED,
    SchedulerMetrics,
)
from fastload.scheduler.policies import Job, JobQueue
from fastload.scheduler.request import NO_DEADLINE_NS, InvalidRequest, ValidRequest, parse_request

SERVICE_NAME = "scheduler.SchedulerService"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Lets in-flight jobs finish on SIGINT/SIGTERM without making shutdown wait on a long queue.
SHUTDOWN_GRACE_S = 0.5


# How often an embedded scheduler checks that the process that started it is still there.
PARENT_POLL_S = 0.5
# The models served, and their service times, unless --service-ms says otherwise.
DEFAULT_SERVICE_MS = {"resnet50": 5.0, "vit": 15.0}
# The input shape KServe's ModelMetadata reports for a model without --input-shape.
DEFAULT_INPUT_SHAPE = (-1, 3, 224, 224)


@dataclass(frozen=True)
class Config:
    """Everything `serve` needs, parsed and validated by the CLI."""

    host: str
    port: int
    gpus: int
    policy: str
    service_s: Mapping[str, float]
    # Each served model's input shape as KServe's ModelMetadata reports it (-1: any size).
    input_shapes: Mapping[str, tuple[int, ...]]
    tls: ServerTls | None = None
    # Callers must send `authorization: Bearer <auth_token>` when set.
    auth_token: str | None = None
    # Stop as on SIGTERM once the process that started this one is gone (a SIGKILLed fastload
    # would otherwise leave its embedded scheduler running for ever).
    exit_with_parent: bool = False
    # Serve Prometheus metrics on this port (0: any free one); None: none.
    metrics_port: int | None = None


@dataclass(frozen=True)
class ServerTls:
    """PEM bytes; with client_ca set, clients must present a certificate it signed (mTLS)."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)], root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


@dataclass
class Stats:
    """Request counts for the shutdown summary; cancelled = the call ended (client gave up or
    shutdown's grace ran out) before a GPU answered it."""

    received: int = 0
    completed: int = 0
    expired: int = 0
    rejected: int = 0
    cancelled: int = 0

    def line(self) -> str:
        return "stats: " + " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


class ListenError(RuntimeError):
    """The address could not be bound; the message names it."""


class Scheduler:
    """The SchedulerService: one queue, `gpus` workers draining it, and the counters."""

    def __init__(self, config: Config, metrics: SchedulerMetrics | None = None) -> None:
        self._service_s = config.service_s
        self._queue = JobQueue(config.policy)
        self._authorization = f"Bearer {config.auth_token}" if config.auth_token else None
        self.stats = Stats()
        self._metrics = metrics  # None: no --metrics-port, nothing counted for Prometheus

    def handler(self) -> grpc.GenericRpcHandler:
        """Infer as a raw-bytes method, so parsing happens once, in `parse_request`."""
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME, {"Infer": grpc.unary_unary_rpc_method_handler(self.infer)}
        )

    async def infer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self.admit(context)
        try:
            valid = parse_request(request, self._service_s)
        except InvalidRequest as exc:
            await self.reject(context, exc)
        served = await self.run(valid)
        return InferResponse(
            deadline_ns=valid.deadline_ns, success=served,
            message="completed" if served else "deadline expired",
        ).SerializeToString()

    async def admit(self, context: grpc.aio.ServicerContext) -> None:
        """Count an inference request; abort it UNAUTHENTICATED without the configured token."""
        self.stats.received += 1
        if self._authorization is not None and (
            dict(context.invocation_metadata() or ()).get("authorization") != self._authorization
        ):
            self._count_rejected()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong authorization metadata")

    async def reject(self, context: grpc.aio.ServicerContext, error: Exception) -> NoReturn:
        self._count_rejected()
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))

    def _count_rejected(self) -> None:
        self.stats.rejected += 1
        if self._metrics is not None:  # its tier is unknown: it was never read
            self._metrics.requests.labels("none", REJECTED).inc()

    async def run(self, valid: ValidRequest) -> bool:
        """Queue a request by policy; True once a GPU served it, False if it expired first."""
        loop = asyncio.get_running_loop()
        job = Job(valid.tier, valid.deadline_ns, self._service_s[valid.model],
                  loop.create_future(), model=valid.model, queued_ns=time.monotonic_ns())
        # Expire a queued job at its deadline, not when a GPU reaches it: under priority, low
        # tiers may never reach one, and each holds its 602 KB request until it is answered.
        if valid.deadline_ns != NO_DEADLINE_NS:
            job.expiry = loop.call_later((valid.deadline_ns - time.time_ns()) / 1e9,
                                         self._expire, job)
        if self._metrics is not None:
            self._metrics.queue_length.labels(job.tier, job.model).inc()
        self._queue.put(job)
        try:
            served = await job.outcome
        except asyncio.CancelledError:
            self._leave_queue(job)
            self._count(job, CANCELLED)
            self.stats.cancelled += 1
            raise
        if served:
            self._count(job, ANSWERED)
            self.stats.completed += 1
        else:
            self._count(job, EXPIRED)
            self.stats.expired += 1
        return served

    def _expire(self, job: Job) -> None:
        """Answer a job False (its deadline passed before a GPU started it)."""
        self._leave_queue(job)
        if not job.outcome.done():
            job.outcome.set_result(False)

    def _leave_queue(self, job: Job) -> None:
        if job.waiting:
            job.waiting = False
            if self._metrics is not None:
                self._metrics.queue_length.labels(job.tier, job.model).dec()

    def _count(self, job: Job, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.requests.labels(job.tier, outcome).inc()

    async def run_gpu(self, gpu: int) -> None:
        """One simulated GPU: take the next job; expire it if late, else hold for its service."""
        metrics = self._metrics
        while True:
            job = await self._queue.get()
            if job.outcome.done():  # expired or cancelled while it was queued
                continue
            if time.time_ns() > job.deadline_ns:  # due, though its timer has not fired yet
                self._expire(job)
                continue
            if job.expiry is not None:  # once started, a job runs to completion even if late
                job.expiry.cancel()
            self._leave_queue(job)
            if metrics is not None:
                metrics.queue_wait.labels(job.tier).observe(
                    (time.monotonic_ns() - job.queued_ns) / 1e9)
                metrics.start_service(gpu, job.service_s)
            await asyncio.sleep(job.service_s)
            if metrics is not None:
                metrics.end_service(gpu)
                metrics.service.labels(job.model).observe(job.service_s)
            if not job.outcome.done():
                job.outcome.set_result(True)


async def _stop_when_orphaned(stop: asyncio.Event, parent_pid: int) -> None:
    """Set ``stop`` once this process has been re-parented: its parent has died."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_POLL_S)
    stop.set()


async def serve(config: Config) -> Stats:
    """Serve until SIGINT/SIGTERM; print `listening on HOST:PORT` once bound, return the counts."""
    metrics = (SchedulerMetrics(config.gpus, config.service_s)
               if config.metrics_port is not None else None)
    scheduler = Scheduler(config, metrics)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # Without this a second scheduler on a taken port would bind silently beside the first.
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers((scheduler.handler(),
                                     kserve_handler(scheduler, config.input_shapes)))
    host = f"[{config.host}]" if ":" in config.host else config.host  # IPv6 literals need brackets
    target = f"{host}:{config.port}"
    try:
        port = (server.add_secure_port(target, config.tls.credentials()) if config.tls
                else server.add_insecure_port(target))
    except RuntimeError:
        raise ListenError(
            f"cannot listen on {target}: address in use or not available; try --port 0"
        ) from None
    await server.start()
    workers = [asyncio.create_task(scheduler.run_gpu(gpu)) for gpu in range(config.gpus)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if config.exit_with_parent:
        workers.append(asyncio.create_task(_stop_when_orphaned(stop, os.getppid())))
    metrics_port = None
    if metrics is not None:
        try:
            metrics_port = metrics.serve(config.host, config.metrics_port)
        except OSError as exc:
            await server.stop(None)
            raise ListenError(f"cannot serve metrics on {config.host}:{config.metrics_port}: "
                              f"{exc.strerror}; try --metrics-port 0") from None
    print(f"listening on {config.host}:{port}", flush=True)
    if metrics_port is not None:  # after the line spawn.py and scripts read first
        print(f"metrics on http://{host}:{metrics_port}/metrics", flush=True)
    await stop.wait()
    await server.stop(SHUTDOWN_GRACE_S)
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return scheduler.stats
