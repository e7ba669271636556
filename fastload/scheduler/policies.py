"""Queueing policies: the order in which waiting jobs reach a free simulated GPU.

`fifo` serves by arrival; `priority` serves tier 1 before 2 before 3, then earliest deadline,
then arrival. Both sit behind `JobQueue`, which lets GPU workers wait for work without polling.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Protocol


@dataclass(eq=False, slots=True)
class Job:
    """A validated request waiting for a GPU; `outcome` becomes True (served) or False (expired).

    `expiry` answers it False at its deadline if no GPU has started it by then.
    """

    tier: int
    deadline_ns: int
    service_s: float
    outcome: asyncio.Future[bool]
    expiry: asyncio.TimerHandle | None = None  # None: no deadline (KServe without timeout)
    model: str = ""
    queued_ns: int = 0  # CLOCK_MONOTONIC when it joined the queue
    waiting: bool = True  # until a GPU takes it, it expires or its call ends


class _Order(Protocol):
    def push(self, job: Job) -> None: ...
    def pop(self) -> Job: ...


class FifoOrder:
    """First come, first served: the baseline that ignores tier and deadline."""

    def __init__(self) -> None:
        self._jobs: deque[Job] = deque()

    def push(self, job: Job) -> None:
        self._jobs.append(job)

    def pop(self) -> Job:
        return self._jobs.popleft()


class PriorityOrder:
    """Tier first (1 highest), then earliest deadline; the arrival counter breaks ties."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, Job]] = []
        self._arrival = itertools.count()

    def push(self, job: Job) -> None:
        heapq.heappush(self._heap, (job.tier, job.deadline_ns, next(self._arrival), job))

    def pop(self) -> Job:
        return heapq.heappop(self._heap)[-1]


POLICIES: dict[str, type[_Order]] = {"fifo": FifoOrder, "priority": PriorityOrder}


class JobQueue:
    """Jobs in policy order; the semaphore counts them so idle workers sleep in `get`."""

    def __init__(self, policy: str) -> None:
        self._order = POLICIES[policy]()
        self._count = asyncio.Semaphore(0)

    def put(self, job: Job) -> None:
        self._order.push(job)
        self._count.release()

    async def get(self) -> Job:
        await self._count.acquire()
        return self._order.pop()
