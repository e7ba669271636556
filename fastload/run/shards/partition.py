"""Each shard's run: its share of the arrivals, its seed, its own output folder.

Poisson shapes split by independent seeds: K independent Poisson processes at λ(t)/K superpose to
one at λ(t), so every shard runs its own LoadGen at 1/K of the rate (thinned by the schedule,
scaled by 1/K). Gamma and trace arrivals do not survive such a split (K independent gamma
processes do not superpose to a gamma process, and a trace is one sequence), so the driver makes
the one plan and deals its arrivals out in turn: shard k replays arrivals k, k + K, k + 2K, ...
at their planned times from the common GO.
"""
from __future__ import annotations

import math
import random
from dataclasses import replace

from fastload.arrivals.plans import arrival_plans
from fastload.contract.arrival_times import TimedArrivals
from fastload.contract.config import CSV_FORMAT, RunConfig
from fastload.contract.exits import UsageError

SHARD_CSV = "metrics.csv"


def shard_seed(seed: int, index: int) -> int:
    """A shard's run seed, derived from the run's: every shard's LoadGen seeds and draws differ."""
    return random.Random(f"{seed}:shard:{index}").randrange(2**32)


def split_arrivals(arrivals: TimedArrivals, count: int) -> list[TimedArrivals]:
    """Deal planned arrivals out in turn; every shard gets at least one."""
    if count > len(arrivals.offsets_s):
        raise UsageError(f"--shards {count} is more than the {len(arrivals.offsets_s)} arrivals "
                         f"the run plans; use at most that many shards")
    return [TimedArrivals(arrivals.offsets_s[k::count], arrivals.class_indices[k::count],
                          arrivals.model_indices[k::count]) for k in range(count)]


def shard_configs(config: RunConfig, count: int, address: str) -> list[RunConfig]:
    """The ``count`` shards' runs against ``address``; LoadGen's logs, the shard's CSV (always a
    CSV: its rows stream to the driver, which writes the run's format) and JSON go
    to ``--output-dir``/shard{k} on the shard's own machine (absolute: workers have their own
    working folders)."""
    if config.burstiness is not None or config.trace is not None:  # the timer's one plan
        parts: list[TimedArrivals | None] = list(
            split_arrivals(arrival_plans(config)[0][0].arrivals(), count))
    else:
        parts = [None] * count
    schedule = config.schedule.scaled(1 / count) if config.schedule is not None else None
    output_dir = config.output_dir.absolute()
    return [
        replace(config, scheduler_url=address, embedded=False, schedule=schedule, trace=part,
                seed=shard_seed(config.seed, k),
                min_query_count=math.ceil(config.min_query_count / count),
                output_dir=output_dir / f"shard{k}",
                metrics_csv=output_dir / f"shard{k}" / SHARD_CSV, output_format=CSV_FORMAT,
                progress=False, thresholds=(), ray_address=None, shards=None,
                server_metrics=())
        for k, part in enumerate(parts)
    ]
