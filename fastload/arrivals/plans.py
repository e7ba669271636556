"""Which arrival processes a run starts: LoadGen for Poisson shapes, the timer for gamma arrivals
and traces. Imported by the parent only; each child loads just its own source's module."""
from __future__ import annotations

from typing import Sequence

from fastload.arrivals.loadgen import plan_arrivals, run_loadgen
from fastload.arrivals.pipe import ChildEntry, Plan
from fastload.arrivals.timer import TimerPlan, run_timer
from fastload.contract.config import RunConfig
from fastload.contract.signals import tier_mix


def arrival_plans(config: RunConfig) -> tuple[list[Plan], ChildEntry]:
    """The arrival processes' plans and the entry point every one of them runs."""
    if config.burstiness is not None:  # with a trace: a shard's part of a gamma plan
        classes = config.workload.active_classes(config.schedule.peak_qps)
        return [TimerPlan("gamma", classes, config.seed, config.schedule,
                          config.burstiness, trace=config.trace,
                          tier_mix=tier_mix(classes))], run_timer
    if config.trace is not None:
        return [TimerPlan("trace", config.workload.classes, config.seed, trace=config.trace,
                          tier_mix=tier_mix(config.workload.classes))], run_timer
    return plan_arrivals(config.workload, config.schedule, config.min_query_count, config.seed,
                         str(config.output_dir), config.per_class), run_loadgen


def uses_loadgen(entry: ChildEntry) -> bool:
    """Whether the arrivals come from LoadGen tests (which give verdicts)."""
    return entry is run_loadgen


def describe_arrivals(config: RunConfig, plans: Sequence[Plan]) -> str:
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
