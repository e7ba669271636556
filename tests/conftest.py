"""Shared fixtures: the reference scheduler as a real subprocess on 127.0.0.1, always stopped."""
from __future__ import annotations

from typing import Callable, Iterator

import pytest

from fastload.scheduler.spawn import SchedulerProcess


@pytest.fixture
def start_scheduler() -> Iterator[Callable[..., SchedulerProcess]]:
    """Factory: `start_scheduler("--policy", "priority")` returns a running SchedulerProcess
    (`.address`, `.port`, `.pid`, `.stop(sig)`); every one started is stopped at teardown."""
    started: list[SchedulerProcess] = []

    def start(*args: str) -> SchedulerProcess:
        started.append(SchedulerProcess(*args))
        return started[-1]

    yield start
    for process in started:
        process.close()


@pytest.fixture
def address(start_scheduler: Callable[..., SchedulerProcess]) -> str:
    """A scheduler with enough simulated capacity that every request succeeds well inside its
    SLO; its host:port."""
    return start_scheduler("--gpus", "64", "--service-ms", "resnet50=1",
                           "--service-ms", "vit=1").address


@pytest.fixture
def scheduler(
    request: pytest.FixtureRequest, start_scheduler: Callable[..., SchedulerProcess]
) -> SchedulerProcess:
    """A running scheduler with default flags; extra flags via indirect parametrization:
    `@pytest.mark.parametrize("scheduler", [("--policy", "priority")], indirect=True)`."""
    return start_scheduler(*getattr(request, "param", ()))
