"""`--ray`: place the shards, start them together, stream their rows back, merge, report.

Start-up is all or nothing: every shard must be placed, connected to the target and have its
arrival processes ready before any starts, and a shard that fails there fails the run as a run
of one machine would (exit 2 or 3, nothing sent, the driver's files removed). Then one GO, at
one instant of the driver's clock translated to each shard's. From then on a shard that dies is
reported by name and the run goes on: its rows up to the driver's last read stay in the
outputs, and the exit code is 7.
"""
from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
from contextlib import ExitStack
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError

from fastload.arrivals.plans import arrival_plans, uses_loadgen
from fastload.contract.config import RunConfig
from fastload.contract.exits import (
    EXIT_LOADGEN_FAILED,
    EXIT_OUTPUT_FAILED,
    EXIT_SHARD_DIED,
    EXIT_SIGNALLED_BASE,
    START_ERRORS,
    TargetUnavailable,
)
from fastload.contract.verdicts import LoadGenVerdict
from fastload.results.arrival_fit import gap_fit
from fastload.results.certificate import CLIENT_LIMITED, certify
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
from fastload.run.shards.actor import Placement, ShardActor, ShardResult
from fastload.run.shards.clock import ClockOffset, measure_offset, read_clocks
from fastload.run.shards.merge import ShardMerge
from fastload.run.shards.partition import shard_configs
from fastload.scrape.scraper import start_scraping
from fastload.send.channel import REACH_TIMEOUT_S

# How often the driver reads every shard's new rows.
POLL_S = 0.5
# Placement, worker start-up, the target checks and the arrival processes, per shard.
START_TIMEOUT_S = 120.0
# From the driver's GO decision to the start: time for the go calls to reach every shard.
GO_MARGIN_NS = 250_000_000
# After a stop request, beyond --timeout-ms: how long the shards get to drain and write.
STOP_MARGIN_S = 15.0
# One read of a shard that has ended, or its result: it must come by then.
FINAL_READ_TIMEOUT_S = 30.0
# Each shard claims one CPU of its node: SPREAD then puts no two on one node while others have
# room, and a cluster with too few CPUs says so instead of piling shards onto one machine.
SHARD_OPTIONS = {"num_cpus": 1, "max_concurrency": 4, "scheduling_strategy": "SPREAD"}


class Shard:
    """The driver's handle on one shard: where it runs, its clocks, its rows, how it ended."""

    def __init__(self, index: int, actor: Any, placement: Placement, clock: ClockOffset,
                 config: RunConfig) -> None:
        self.index = index
        self.actor = actor
        self.placement = placement
        self.clock = clock
        self.config = config
        self.run_ref: Any = None
        self.offset = 0  # bytes of the shard's CSV merged so far
        self.rows = 0
        self._read_ref: Any = None
        self.result: ShardResult | None = None
        self.died: str | None = None

    @property
    def name(self) -> str:
        return f"shard {self.index} (node {self.placement.node_ip}, pid {self.placement.pid})"

    @property
    def finished(self) -> bool:
        return self.result is not None or self.died is not None

    def poll(self, merge: ShardMerge) -> None:
        """Merge what the last read brought and start the next; once the run has ended, read
        the rest and keep its result. Never blocks while the run goes on."""
        try:
            if self._read_ref is not None and ray.wait([self._read_ref], timeout=0)[0]:
                self._merge(ray.get(self._read_ref), merge)
                self._read_ref = None
            if not ray.wait([self.run_ref], timeout=0)[0]:
                if self._read_ref is None:
                    self._read_ref = self.actor.read.remote(self.offset)
                return
            result = ray.get(self.run_ref)
            if self._read_ref is not None:
                self._merge(ray.get(self._read_ref, timeout=FINAL_READ_TIMEOUT_S), merge)
                self._read_ref = None
            while self._merge(ray.get(self.actor.read.remote(self.offset),
                                      timeout=FINAL_READ_TIMEOUT_S), merge):
                pass
            self.result = result
        except RayError as exc:
            self.die(_reason(exc))

    def _merge(self, reply: tuple[bytes, int], merge: ShardMerge) -> int:
        data, self.offset = reply
        count = merge.add(self.index, data, self.clock.mono_ns) if data else 0
        self.rows += count
        return count

    def die(self, reason: str) -> None:
        self.died = reason
        print(f"fastload: {self.name} died: {reason}; the outputs keep the {self.rows:,} rows "
              f"it sent", file=sys.stderr, flush=True)

    def verdicts(self, loadgen: bool) -> list[LoadGenVerdict]:
        """Its LoadGen tests' verdicts, named shard{k}/TEST; one unknown one if it died."""
        summary = self.result.summary if self.result is not None else None
        if summary is None:
            return [LoadGenVerdict(f"shard{self.index}", None)] if loadgen else []
        return [LoadGenVerdict(f"shard{self.index}/{v['test']}", v["valid"], tuple(v["reasons"]))
                for v in summary["loadgen_verdicts"]]

    def client_limited(self) -> str | None:
        """Why its own load certificate found it client-limited; None if it did not."""
        load = (self.result.summary or {}).get("load") if self.result is not None else None
        return load["reason"] if load and load["verdict"] == CLIENT_LIMITED else None

    def report(self) -> dict[str, Any]:
        """Its entry in the summary JSON's ``shards``."""
        return {
            "shard": self.index, "node_id": self.placement.node_id,
            "node_ip": self.placement.node_ip, "hostname": self.placement.hostname,
            "pid": self.placement.pid, "seed": self.config.seed,
            "clock_offset_ns": self.clock.wall_ns, "monotonic_offset_ns": self.clock.mono_ns,
            "round_trip_ns": self.clock.round_trip_ns, "rows": self.rows,
            "exit_code": self.result.exit_code if self.result is not None else None,
            "died": self.died, "output_dir": str(self.config.output_dir),
            "load": (self.result.summary or {}).get("load") if self.result is not None else None,
        }


class StopSignals:
    """SIGINT/SIGTERM in the driver ask every shard to stop as a run of its own would."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.event = threading.Event()
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT,
                                                                       signal.SIGTERM)}

    def _handle(self, signum: int, _frame) -> None:
        self.signum = signum
        self.event.set()

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def run_sharded(config: RunConfig) -> int:
    """The sharded run; returns its exit code. Raises as run_local does before traffic (a
    shard's error named by shard), and TargetUnavailable when Ray cannot be reached."""
    outputs = RunOutputs.prepare(config)
    try:
        _connect(config.ray_address)
    except BaseException:
        outputs.discard()
        raise
    try:
        return _run(config, outputs)
    finally:
        ray.shutdown()


def _connect(address: str) -> None:
    host, colon, port = address.rpartition(":")
    if colon and port.isdigit() and "://" not in address:
        # Ray retries an address where nothing listens for minutes: ask once, quickly, first.
        try:
            socket.create_connection((host.strip("[]"), int(port)), REACH_TIMEOUT_S).close()
        except OSError as exc:
            raise TargetUnavailable(f"--ray {address}: no Ray cluster answers there within "
                                    f"{REACH_TIMEOUT_S:g} s ({exc.strerror or exc}); start one "
                                    f"with `ray start --head`, or use --ray local") from None
    try:
        # Shards print their own tables into their Ray worker logs, not here.
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, RayError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TargetUnavailable(f"--ray {address}: cannot connect to Ray ({reason}); start a "
                                f"cluster with `ray start --head`, or use --ray local") from None


def _run(config: RunConfig, outputs: RunOutputs) -> int:
    plans, entry = arrival_plans(config)
    stop = StopSignals()
    notes: list[str] = []
    with ExitStack() as stack:
        stack.callback(stop.restore)
        try:
            count = config.shards or sum(1 for node in ray.nodes() if node["Alive"])
            address = config.scheduler_url
            if config.embedded:
                # A cluster's nodes reach the driver at its Ray address; a local Ray is this
                # machine alone, where loopback will do.
                host = ("127.0.0.1" if config.ray_address == "local"
                        else ray.util.get_node_ip_address())
                scheduler = stack.enter_context(embedded_scheduler(config, host=host))
                address = scheduler.address
            # The driver scrapes the server for all shards, on its own clock.
            scraper = start_scraping(config, scheduler.metrics_url if config.embedded else None)
            if scraper is not None:
                stack.callback(scraper.close)
            runs = shard_configs(config, count, address)
            split = ("" if count == 1 else
                     f"s, each its own LoadGen at 1/{count} of the rate" if uses_loadgen(entry)
                     else "s, dealt one plan's arrivals in turn")
            print(opening_line(config, plans, address, f", as {count} Ray shard{split}"),
                  flush=True)
            shards = _place(runs, stop)
            _start(shards, stop)
        except BaseException:
            outputs.discard()
            raise
        if stop.signum is not None:  # before GO: nothing sent, nothing to keep
            outputs.discard()
            return EXIT_SIGNALLED_BASE + stop.signum

        stats = run_stats(config, plans)
        go_wall_ns, go_mono_ns = read_clocks()
        stats.fit = gap_fit(config, go_mono_ns + GO_MARGIN_NS)
        for shard in shards:
            shard.actor.go.remote(go_wall_ns + GO_MARGIN_NS + shard.clock.wall_ns)
        if scraper is not None:
            scraper.go(go_mono_ns + GO_MARGIN_NS)
        merge = ShardMerge(outputs, stats, config.workload.classes, count)
        _stream(shards, merge, stop, config.timeout_ms / 1000 + STOP_MARGIN_S)
        merge.close()
        scraped = stop_scraping(scraper)
        for shard in shards:
            ended = (f"died: {shard.died}" if shard.died is not None
                     else f"exit {shard.result.exit_code}")
            notes.append(f"  {shard.name}: {shard.rows:,} rows, {ended}")
        if config.embedded:
            notes.append(f"reference scheduler: {scheduler.stop(signal.SIGINT).stdout.strip()}")

    verdicts = [v for shard in shards for v in shard.verdicts(uses_loadgen(entry))]
    # Each shard certified its own processes; the merged rows give the rates and send lag,
    # against the driver's plans (a timer's one plan before it was dealt out).
    load = certify(config, stats, go_mono_ns + GO_MARGIN_NS, (),
                   [plan.planned_offsets_s() for plan in plans], stop.signum is not None,
                   [f"{shard.name}: {reason}" for shard in shards
                    if (reason := shard.client_limited()) is not None])
    failures = [*_failures(shards, merge, config), *seal_records(outputs, config, plans, load)]
    return conclude(config, stats, verdicts, go_mono_ns + GO_MARGIN_NS, stop.signum,
                    failures, load, notes,
                    {"shards": [shard.report() for shard in shards]}, scraped)


def _place(runs: list[RunConfig], stop: StopSignals) -> list[Shard]:
    """One actor per shard, spread over the nodes; where each runs and its clock offsets."""
    remote = ray.remote(ShardActor).options(**SHARD_OPTIONS)
    actors = [remote.remote() for _ in runs]
    where = [actor.placement.remote() for actor in actors]
    pending = _wait_all(where, START_TIMEOUT_S, stop)
    if pending:
        _kill(actors)
        if stop.signum is not None:
            return []
        cpus = ray.cluster_resources().get("CPU", 0)
        raise TargetUnavailable(
            f"shard {where.index(pending[0])} was not placed within {START_TIMEOUT_S:g} s: each "
            f"shard takes 1 CPU and the Ray cluster has {cpus:g}; use fewer --shards")
    shards = []
    for index, (actor, run, placement) in enumerate(zip(actors, runs, ray.get(where))):
        clock = measure_offset(lambda: ray.get(actor.clocks.remote()))
        shard = Shard(index, actor, placement, clock, run)
        print(f"fastload: shard {index} on node {placement.node_ip} ({placement.hostname}, "
              f"Ray node {placement.node_id[:8]}), pid {placement.pid}, seed {run.seed}: clock "
              f"offset {clock.wall_ns / 1e6:+.3f} ms (round trip {clock.round_trip_ns / 1e6:.3f} "
              f"ms)", flush=True)
        shards.append(shard)
    return shards


def _start(shards: list[Shard], stop: StopSignals) -> None:
    """Start every shard's run and wait until all of them are at their start gates."""
    for shard in shards:
        shard.run_ref = shard.actor.run.remote(shard.config)
    ready = [shard.actor.wait_ready.remote(START_TIMEOUT_S) for shard in shards]
    pending = _wait_all(ready, START_TIMEOUT_S + FINAL_READ_TIMEOUT_S, stop)
    if stop.signum is not None:
        _kill([shard.actor for shard in shards])
        return
    for shard, ready_ref in zip(shards, ready):
        if ready_ref in pending or not ray.get(ready_ref):
            error = (TargetUnavailable(f"{shard.name} was not ready within {START_TIMEOUT_S:g} s")
                     if ready_ref in pending else _start_error(shard))
            _kill([shard.actor for shard in shards])
            raise error


def _start_error(shard: Shard) -> Exception:
    """Why a shard's run ended before its start gate, as the run's own error named by shard:
    the same exit code as a run of one machine."""
    try:
        result = ray.get(shard.run_ref, timeout=FINAL_READ_TIMEOUT_S)
    except RayError as exc:
        cause = exc.cause if isinstance(exc, RayTaskError) else None
        if isinstance(cause, tuple(START_ERRORS)):
            return type(cause)(f"{shard.name}: {cause}")
        return TargetUnavailable(f"{shard.name} did not start: {_reason(exc)}")
    return TargetUnavailable(f"{shard.name} ended before it started (exit {result.exit_code})")


def _stream(shards: list[Shard], merge: ShardMerge, stop: StopSignals, stop_grace_s: float
            ) -> None:
    """Merge every shard's new rows every POLL_S until all have ended; pass a stop on."""
    stop_deadline = None
    while not all(shard.finished for shard in shards):
        stop.event.wait(POLL_S)
        live = [shard for shard in shards if not shard.finished]
        if stop.signum is not None and stop_deadline is None:
            print(f"fastload: {signal.Signals(stop.signum).name}: stopping the shards; waiting "
                  f"up to {stop_grace_s:g} s for them to drain", file=sys.stderr, flush=True)
            for shard in live:
                shard.actor.stop.remote(stop.signum)
            stop_deadline = time.monotonic() + stop_grace_s
        for shard in live:
            shard.poll(merge)
        if stop_deadline is not None and time.monotonic() > stop_deadline:
            for shard in shards:
                if not shard.finished:
                    _kill([shard.actor])
                    shard.die(f"it did not stop within {stop_grace_s:g} s of being asked")


def _failures(shards: list[Shard], merge: ShardMerge, config: RunConfig) -> list[Failure]:
    """What went wrong besides requests, ranked as a run of one machine ranks them, with a dead
    shard (7, said when it died) first."""
    if any(shard.died is not None for shard in shards):
        return [Failure(EXIT_SHARD_DIED)]
    codes = {shard.index: shard.result.exit_code for shard in shards}
    lost = [k for k, code in codes.items() if code == EXIT_LOADGEN_FAILED]
    if lost:
        return [Failure(EXIT_LOADGEN_FAILED,
                        f"shard {lost[0]} lost one of its own processes (arrivals or senders) "
                        f"before its test ended; the outputs hold what it recorded")]
    unwritten = [k for k, code in codes.items() if code == EXIT_OUTPUT_FAILED]
    if merge.write_error is not None or unwritten:
        where = (f"{merge.path} ({merge.write_error.strerror})"
                 if merge.write_error is not None else f"shard {unwritten[0]}'s CSV")
        return [Failure(EXIT_OUTPUT_FAILED,
                        f"{config.records_path} is incomplete: writing {where} failed")]
    return []


def _wait_all(refs: list, timeout_s: float, stop: StopSignals) -> list:
    """Wait for every ref (or a stop signal, or the timeout); the refs still pending."""
    deadline = time.monotonic() + timeout_s
    pending = list(refs)
    while pending and stop.signum is None and time.monotonic() < deadline:
        _, pending = ray.wait(pending, num_returns=len(pending),
                              timeout=min(POLL_S, max(0.0, deadline - time.monotonic())))
    return pending


def _kill(actors: list) -> None:
    for actor in actors:
        ray.kill(actor, no_restart=True)


def _reason(exc: RayError) -> str:
    """A Ray error in one line: the shard's own exception where there is one."""
    if isinstance(exc, GetTimeoutError):
        return f"no answer from it within {FINAL_READ_TIMEOUT_S:g} s"
    if isinstance(exc, RayTaskError) and exc.cause is not None:
        exc = exc.cause
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0].rstrip('.') if text else 'no reason'}"
