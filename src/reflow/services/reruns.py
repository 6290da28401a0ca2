"""Bulk rerun jobs: rerun every execution a filter selects, at a bounded rate, with a
result per execution (docs/api.md "Bulk rerun").

A job's list is resolved once, when it is created: its items are inserted with the job
in one transaction. A runner (the periodic job ``rerun jobs`` of every started process)
leases one job at a time, like a worker leases an execution, and reruns its pending
items in batches through ``RunService.rerun_many`` (the semantics of ``rerun``, with the
sources read a chunk at a time), each with an idempotency key derived from (job,
execution): the key is stored in the transaction that inserts the new execution, so a
runner that dies between a rerun and recording it finds that execution by its key on
resume (the pending items' query reads it) and records it, instead of rerunning the
source a second time.

New runs come first: a batch starts only while the queue holds less than a batch, and,
in a process that runs executions, each chunk only while at least seven eighths of its worker's
slots are free. A batch is a tenth of REFLOW_RERUN_RATE, started in chunks of 8 spaced
evenly to keep to that rate, so new runs' requests are served between chunks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from reflow.clock import Clock
from reflow.domain.records import Team
from reflow.domain.reruns import (
    KEY_PREFIX,
    MAX_ITEMS,
    ItemResult,
    JobStatus,
    PendingItem,
    RerunFilter,
    RerunItem,
    RerunJob,
    RerunSource,
    job_key,
    parse_filter,
    parse_options,
)
from reflow.errors import InvalidRequest, NotFound, ReflowError, StoreError
from reflow.ids import new_execution_id
from reflow.services.runs import RerunOptions, RunService
from reflow.services.users import UserService
from reflow.services.workflows import WorkflowService
from reflow.store.base import Store

log = logging.getLogger(__name__)

# The name of the runner in ``Reflow.periodic``.
PERIODIC_NAME = "rerun jobs"
# Results per page of GET /reruns/{jobId}, by default and at most.
DEFAULT_RESULTS = 100
MAX_RESULTS = 1000
# Jobs per page of GET /reruns.
MAX_JOBS = 100
# The count that names how many match when a filter selects too many.
_COUNT_CAP = 1_000_000
# How long a runner waits for room (new runs first) before it ends its tick.
_ROOM_WAIT_SECONDS = 1.0
_ROOM_POLL_SECONDS = 0.01
# How often a batch looks for free worker slots between chunks (an in-memory test).
_SLOT_POLL_SECONDS = 0.002
# How late a chunk may start and still keep to the rate (catching up, not bursting).
_PACE_SLACK_SECONDS = 0.01
# How late the event loop may wake the runner before its pace drops (other work waits).
_LAG_SECONDS = 0.003
# Reruns read and started together within a batch (their inserts share a group commit);
# small enough that a chunk's synchronous reads hold new runs' requests back little.
_CHUNK = 8
# Chunks whose reruns are being started at once (each waits for its group commit).
_CHUNKS_IN_FLIGHT = 8
# Ended jobs deleted per tick once past the retention window.
_PURGE_BATCH = 100


@dataclass(frozen=True, slots=True)
class JobPage:
    """A job and a page of its results (from ``offset``), with the next page's offset."""

    job: RerunJob
    results: list[RerunItem]
    offset: int
    next_offset: int | None


class RerunJobService:
    """Creates, shows, lists and cancels bulk rerun jobs, and runs them (``tick``)."""

    def __init__(
        self, store: Store, workflows: WorkflowService, users: UserService, runs: RunService,
        clock: Clock, *, owner: str, rate: float, lease_seconds: float,
        retention: float, busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.workflows = workflows
        self.users = users
        self.runs = runs
        self.clock = clock
        self.owner = owner
        # REFLOW_RERUN_RATE: reruns per second this process starts, at most; a tick takes a
        # tenth of a second's worth.
        self.rate = rate
        self.batch = max(1, math.ceil(rate / 10))
        self.lease_ms = round(lease_seconds * 1000)
        self.retention_ms = round(retention * 1000)
        # True while this process's worker has no room to spare for reruns.
        self.busy = busy
        # Whether this process ever leased a job (only then has it one to give back).
        self._leased = False
        # Wakes the runner (new work); set by Reflow to its periodic job's wake.
        self.wake: Callable[[], None] = lambda: None
        self._ready_at = 0.0  # monotonic time the next chunk may start (the rate)
        # The rate now: the configured one while the event loop keeps time, less while it
        # lags (new runs' requests are waiting): reruns take the room new runs leave.
        self._pace = rate

    # -- the API's operations --------------------------------------------------------------

    async def create(
        self, team: Team, raw_filter: dict[str, object], start_from: object = None,
        version: object = None,
    ) -> RerunJob:
        """Resolve the filter's executions and store them as a queued job (422 when the
        filter is invalid or selects more than 10,000; 404 for an unknown workflow or
        user); the runner is woken."""
        options = parse_options(start_from, version)
        selection = await self.selection(team, raw_filter)
        sources = await self.store.rerun_sources(team.id, selection, MAX_ITEMS + 1)
        if len(sources) > MAX_ITEMS:
            count = await self.store.count_rerun_sources(team.id, selection, _COUNT_CAP)
            shown = f"{count:,}" if count < _COUNT_CAP else f"more than {_COUNT_CAP - 1:,}"
            raise InvalidRequest(
                f"filter: {shown} executions match; a job reruns at most {MAX_ITEMS:,}: "
                "narrow the window (since, until) or add workflowId, userId, error or blockId")
        now = self.clock.now_ms()
        job = RerunJob(id=new_execution_id(now), team_id=team.id, status=JobStatus.QUEUED,
                       filter=selection, options=options, total=len(sources), created_at=now)
        if not sources:
            job.status, job.finished_at = JobStatus.DONE, now
        await self.store.create_rerun_job(job, [s.id for s in sources])
        if sources:
            self.wake()
        log.info("rerun job %s of team %s: %d executions", job.id, team.id, job.total)
        return job

    async def selection(self, team: Team, raw_filter: dict[str, object]) -> RerunFilter:
        """The request's filter, checked, with its workflow and user looked up."""
        if not isinstance(raw_filter, dict):
            raise InvalidRequest("filter: must be an object")
        asked = parse_filter(raw_filter, self.clock.now_ms())
        workflow_id = user_id = None
        if asked.workflow is not None:
            workflow_id = (await self.workflows.resolve_parent(team, asked.workflow)).id
        if asked.user is not None:
            user_id = (await self.users.get(team, asked.user)).id
        return RerunFilter(since=asked.since, until=asked.until, status=asked.status,
                           workflow_id=workflow_id, user_id=user_id, error=asked.error,
                           block_id=asked.block_id)

    async def preview(
        self, team: Team, raw_filter: dict[str, object], limit: int = MAX_ITEMS
    ) -> tuple[list[RerunSource], int]:
        """What a job with this filter would rerun (at most ``limit``, oldest first), and
        how many match (counted up to a million): ``--dry-run``."""
        selection = await self.selection(team, raw_filter)
        sources = await self.store.rerun_sources(team.id, selection, limit)
        count = (len(sources) if len(sources) < limit
                 else await self.store.count_rerun_sources(team.id, selection, _COUNT_CAP))
        return sources, count

    async def get(
        self, team: Team, job_id: str, offset: int = 0, limit: int = DEFAULT_RESULTS
    ) -> JobPage:
        """The team's job and a page of its results (NotFound for another team's)."""
        if not 1 <= limit <= MAX_RESULTS:
            raise InvalidRequest(f"limit: must be between 1 and {MAX_RESULTS}, got {limit}")
        if offset < 0:
            raise InvalidRequest(f"offset: must not be negative, got {offset}")
        job = await self._job(team, job_id)
        results = await self.store.rerun_job_results(team.id, job.id, offset, limit)
        following = offset + limit
        return JobPage(job, results, offset, following if following < job.total else None)

    async def jobs(self, team: Team, before: str | None = None, limit: int = 20
                   ) -> list[RerunJob]:
        """The team's jobs, newest first (older than job ``before``, given one)."""
        if not 1 <= limit <= MAX_JOBS:
            raise InvalidRequest(f"limit: must be between 1 and {MAX_JOBS}, got {limit}")
        return await self.store.list_rerun_jobs(team.id, before, limit)

    async def cancel(self, team: Team, job_id: str) -> RerunJob:
        """Cancel what has not started: pending items become ``cancelled`` (a batch being
        rerun right now still completes). Cancelling an ended job changes nothing."""
        job = await self.store.cancel_rerun_job(team.id, job_id, self.clock.now_ms())
        if job is None:
            raise NotFound(f"rerun job {job_id!r} not found")
        return job

    async def _job(self, team: Team, job_id: str) -> RerunJob:
        job = await self.store.get_rerun_job(team.id, job_id)
        if job is None:
            raise NotFound(f"rerun job {job_id!r} not found")
        return job

    # -- the runner ------------------------------------------------------------------------

    async def tick(self) -> int:
        """One batch of the job this process holds (or may take): how many items it
        recorded. Wakes itself while the job has more, so batches follow at the rate.
        One tick at a time in a process (Periodic)."""
        now = self.clock.now_ms()
        job = await self.store.claim_rerun_job(self.owner, now, now + self.lease_ms)
        self._leased = self._leased or job is not None
        if job is None:
            await self.store.purge_rerun_jobs(now - self.retention_ms, _PURGE_BATCH)
            return 0
        if not await self._room():
            self.wake()  # held back for new runs: look again at once after this tick
            return 0
        items = await self.store.pending_rerun_items(job, KEY_PREFIX, self.batch)
        results = await self._rerun(job, items)
        if not results:
            # Nothing recordable now (a transient store error): retry at the interval.
            return 0
        after = await self.store.finish_rerun_items(job.id, results, self.clock.now_ms())
        if after is not None and after.status is JobStatus.RUNNING:
            self.wake()
        elif after is not None:
            log.info("rerun job %s %s: %d rerun, %d refused, %d cancelled", after.id,
                     after.status.value, after.done, after.failed, after.cancelled)
        return len(results)

    async def release(self) -> None:
        """Give back this process's job lease (a graceful stop): another runner takes it
        at once. A process that never leased one writes nothing (its database may be
        one it could not use, such as a schema behind the code)."""
        if self._leased:
            await self.store.release_rerun_jobs(self.owner)

    async def _room(self) -> bool:
        """Wait (briefly) until new runs have room: the queue holds at most a batch and
        this process's worker has seven eighths of its slots free."""
        deadline = time.monotonic() + _ROOM_WAIT_SECONDS
        while True:
            if not self.busy() and await self.store.queue_depth() <= self.batch:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_ROOM_POLL_SECONDS)

    async def _rerun(self, job: RerunJob, items: list[PendingItem]) -> list[ItemResult]:
        """Rerun the items in chunks (``RunService.rerun_many``: a few queries and one
        group commit each), started at the rate and overlapping (a chunk need not wait for
        the commit of the one before: on PostgreSQL that wait is most of its time); those
        already rerun by this job before a restart are recorded as they are, and only the
        others are rerun, with no key lookup of their own: the pending items' query found
        none of their keys stored."""
        team = await self.store.get_team(job.team_id)
        if team is None:
            return [ItemResult(i.execution_id, error="the team was deleted") for i in items]
        options = RerunOptions(job.options.start_from, job.options.version)
        results = [ItemResult(i.execution_id, i.made) for i in items if i.made is not None]
        todo = [(i.execution_id, job_key(job.id, i.execution_id))
                for i in items if i.made is None]
        room = asyncio.Semaphore(_CHUNKS_IN_FLIGHT)
        chunks: list[asyncio.Task[list[ItemResult]]] = []
        for start in range(0, len(todo), _CHUNK):
            chunk = todo[start:start + _CHUNK]
            await room.acquire()
            if not await self._turn(len(chunk)):
                room.release()
                break  # the rest wait for the next tick
            chunks.append(asyncio.create_task(
                self._rerun_chunk(job, team, chunk, options, room)))
        for outcome in await asyncio.gather(*chunks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome  # once every chunk has ended: what they made is recorded later
            results.extend(outcome)
        return results

    async def _rerun_chunk(
        self, job: RerunJob, team: Team, chunk: list[tuple[str, str]], options: RerunOptions,
        room: asyncio.Semaphore,
    ) -> list[ItemResult]:
        """Rerun a chunk (its place in ``room`` given back once its reruns are started);
        what to record for each item (nothing for one the database failed: it stays
        pending)."""
        try:
            outcomes = await self.runs.rerun_many(team, chunk, options)
        except StoreError as exc:
            # The database, not the executions: they stay pending for the next tick.
            log.warning("rerun job %s: %d executions stay pending: %s", job.id, len(chunk),
                        exc)
            return []
        finally:
            room.release()
        results = []
        for (execution_id, _), outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, StoreError):
                log.warning("rerun job %s: %s stays pending: %s", job.id, execution_id,
                            outcome)
            elif isinstance(outcome, ReflowError):
                results.append(ItemResult(execution_id, error=outcome.message))
            else:
                results.append(ItemResult(execution_id, outcome.execution_id))
        return results

    async def _turn(self, count: int) -> bool:
        """Wait until the rate allows ``count`` more reruns (real time: a rate, not a
        schedule) and this process's worker has seven eighths of its slots free: chunks follow each
        other evenly, and new runs' requests are served between them. False when the
        worker stays that busy for a second.

        New runs first: an event loop that wakes the runner late is busy with other work,
        so the pace drops by a fifth each time (to a twentieth of the rate at least) and
        climbs back by a fiftieth of the rate with each chunk on time."""
        deadline = time.monotonic() + _ROOM_WAIT_SECONDS
        while True:
            delay = max(0.0, self._ready_at - time.monotonic())
            woken = time.monotonic() + delay
            await asyncio.sleep(delay)
            if time.monotonic() - woken > _LAG_SECONDS:
                self._pace = max(self.rate / 20, self._pace * 0.8)
            else:
                self._pace = min(self.rate, self._pace + self.rate / 50)
            if not self.busy():
                break
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_SLOT_POLL_SECONDS)
        # A chunk a little late (the timer) does not lower the rate.
        self._ready_at = max(self._ready_at, time.monotonic() - _PACE_SLACK_SECONDS) + (
            count / self._pace)
        return True
