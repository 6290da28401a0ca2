"""Periodic work of a process: each job runs, then sleeps its interval on the clock.

Jobs (the retention purge, the scheduler's tick, the error-stream outbox) are registered
by name; a failing run is logged and the job runs again at its next interval, so one bad
tick never stops background work. Tests call ``run_once(name)`` after moving a
``ManualClock`` rather than wait for a loop. A job never runs twice at once in a process:
its loop and ``run_once`` take the job's lock, so a ``run_once`` that finds a run in
progress waits for it and then runs, and what it returns was done after it was called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from reflow.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """One piece of periodic work: ``run`` returns how much it did (0: nothing to do)."""

    name: str
    interval: float  # seconds between the end of one run and the start of the next
    run: Callable[[], Awaitable[int]]


class Periodic:
    """A process's periodic jobs, started and stopped together."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._jobs: dict[str, Job] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wakes: dict[str, asyncio.Event] = {}
        self._running: dict[str, asyncio.Lock] = {}  # held by the job's run in progress

    def add(self, name: str, interval: float, run: Callable[[], Awaitable[int]]) -> None:
        """Register a job (before ``start``); a name is registered once."""
        if name in self._jobs:
            raise ValueError(f"periodic job {name!r} is registered twice")
        self._jobs[name] = Job(name, interval, run)
        self._running[name] = asyncio.Lock()

    @property
    def names(self) -> list[str]:
        """The registered jobs' names."""
        return list(self._jobs)

    async def run_once(self, name: str) -> int:
        """Run one job now (tests, the CLI), after the run in progress if any; what it
        returned."""
        return await self._run(self._jobs[name])

    async def _run(self, job: Job) -> int:
        async with self._running[job.name]:
            return await job.run()

    def wake(self, name: str) -> None:
        """Run a started job now rather than at the end of its interval (new work)."""
        event = self._wakes.get(name)
        if event is not None:
            event.set()

    def start(self) -> None:
        """Start every job's loop."""
        for job in self._jobs.values():
            self._wakes[job.name] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._loop(job), name=job.name))

    async def stop(self) -> None:
        """Stop every loop (a run in progress is cancelled; jobs commit in steps)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _loop(self, job: Job) -> None:
        wake = self._wakes[job.name]
        while True:
            wake.clear()
            try:
                done = await self._run(job)
                if done:
                    log.debug("%s: %d", job.name, done)
            except Exception:
                log.exception("periodic job %s failed; it runs again in %ss",
                              job.name, job.interval)
            sleep = asyncio.ensure_future(self.clock.sleep(job.interval))
            woken = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait((sleep, woken), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
                woken.cancel()
