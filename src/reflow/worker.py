"""The claim -> run -> heartbeat loop (in-process for ``serve``).

Runs started by this process are handed to the executor directly; executions queued by
other processes (the CLI) or abandoned by a dead one are claimed from the database. An
abandoned execution is resumed at most ``max_resumes`` times: one that keeps taking its
process down ends as failed instead of looping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from reflow import metrics
from reflow.domain.executions import ExecutionRecord, ExecutionStatus, error_json
from reflow.errors import LeaseLost, ReflowError
from reflow.executor import Executor, Finished, Job, JobBook
from reflow.ids import new_object_id, now_ms

log = logging.getLogger(__name__)

Prepare = Callable[[ExecutionRecord], Awaitable[Job]]

# The time between two claims: 5 ms, doubling up to 40 ms while claims find at most one
# execution. Every queued insert hints every worker (PostgreSQL NOTIFY); a claim per hint
# per worker made PostgreSQL spend more on claims than on the runs (bench --postgres,
# 4 workers). Spaced, a trickle of hints is one claim; a claim that finds a backlog
# brings the gap back to 5 ms.
_MIN_CLAIM_GAP = 0.005
_MAX_CLAIM_GAP = 0.04


def new_owner() -> str:
    """A lease owner name unique to this process: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{new_object_id()[-8:]}"


class Worker:
    """Runs executions with bounded concurrency and keeps their leases alive."""

    def __init__(
        self,
        book: JobBook,
        executor: Executor,
        prepare: Prepare,
        *,
        concurrency: int,
        poll_interval: float = 1.0,
        max_resumes: int = 2,
    ) -> None:
        self.book = book
        self.store = book.store
        self.executor = executor
        self.prepare = prepare
        self.owner = book.owner
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.max_resumes = max_resumes
        self.running: dict[str, tuple[asyncio.Future[Finished], Job]] = {}
        self._wake = asyncio.Event()
        # Queued executions may be waiting for a slot: a finished run wakes the claim loop.
        # Otherwise it does not (a claim query per finished run cost every run ~40 us).
        self._backlog = True
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self._next_cancel_poll = 0.0
        # Dropped by the heartbeat (counted then): their LeaseLost end is not counted again.
        self._dropped: set[str] = set()

    @property
    def full(self) -> bool:
        """True when as many executions run as the concurrency allows."""
        return len(self.running) >= self.concurrency

    def lease_until(self) -> int:
        """The expiry to give a lease taken now."""
        return self.book.lease_until()

    def spawn(self, job: Job) -> asyncio.Future[Finished]:
        """Run a job in the background; its lease is renewed while it runs."""
        execution_id = job.record.id
        future = self.executor.submit(job)
        self.running[execution_id] = (future, job)
        metrics.started(job.record)
        future.add_done_callback(lambda f: self._done(execution_id, f))
        return future

    def _done(self, execution_id: str, future: asyncio.Future[Finished]) -> None:
        self.running.pop(execution_id, None)
        self.book.forget(execution_id)
        dropped = execution_id in self._dropped
        self._dropped.discard(execution_id)
        if not future.cancelled() and (exc := future.exception()) is not None:
            if isinstance(exc, LeaseLost):
                # Another worker took it over after our lease lapsed: it is theirs now.
                log.warning("execution %s dropped here: %s", execution_id, exc.message)
                if not dropped:
                    metrics.lease_lost()
            else:
                # The lease runs out and the execution is claimed again from its last step.
                log.error("execution %s stopped on an error: %r", execution_id, exc)
        if self._backlog:
            self._wake.set()

    def wake(self) -> None:
        """Look for claimable executions now rather than at the next poll."""
        self._backlog = True
        self._wake.set()

    def cancel(self, execution_id: str) -> bool:
        """Pass a cancel to the execution if it runs here; False when it does not."""
        if execution_id not in self.running:
            return False
        self.executor.cancel(execution_id)
        return True

    async def start(self) -> None:
        """Start the executor, the claim loop and the heartbeat."""
        await self.executor.start()
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="worker claim loop"),
            asyncio.create_task(self._heartbeat_loop(), name="worker heartbeat"),
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let running executions finish for ``grace`` seconds, stop the
        rest (each resumes from its last committed step) and release their leases, so that
        another worker claims them at once rather than when the leases would expire."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        held = [i for i, (_, job) in self.running.items() if job.persisted]
        await self.executor.stop(grace)
        if held:
            try:
                released = await self.store.release_leases(self.owner, held)
            except Exception:
                log.exception("releasing leases at shutdown failed; they expire on their own")
            else:
                if released:
                    log.info("released the leases of %d unfinished executions", released)

    async def _claim_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_claim, gap = -_MAX_CLAIM_GAP, _MIN_CLAIM_GAP
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            if (wait := last_claim + gap - loop.time()) > 0:
                await asyncio.sleep(wait)  # hints that come meanwhile share one claim
            self._wake.clear()
            last_claim = loop.time()
            try:
                found = await self._claim()
                gap = _MIN_CLAIM_GAP if found > 1 else min(2 * gap, _MAX_CLAIM_GAP)
                await self._pass_cancels()
            except Exception:  # keep the loop alive; the next poll retries
                log.exception("claiming executions failed")

    async def _pass_cancels(self) -> None:
        # A cancel made by another process (the CLI) is a flag in the database: looked for
        # once per poll interval, not on every wake (a busy worker wakes all the time).
        now = time.monotonic()
        if now < self._next_cancel_poll:
            return
        self._next_cancel_poll = now + self.poll_interval
        ids = [i for i, (_, job) in self.running.items() if job.persisted]
        if ids:
            for execution_id in await self.store.cancel_requests(ids):
                self.executor.cancel(execution_id)

    async def _claim(self) -> int:
        """Claim and start executions while slots are free; how many the last claim found."""
        found = 0
        free = self.concurrency - len(self.running)
        while free > 0 and not self._stopping:
            now = self.book.clock.now_ms()
            claimed = await self.store.claim_executions(
                self.owner, now, self.lease_until(), free
            )
            found = len(claimed)
            if claimed:
                metrics.claimed(claimed, now)
            for record in claimed:
                if record.id in self.running:
                    continue  # already running here (its lease was renewed by the claim)
                if record.resumes > self.max_resumes:
                    await self._poisoned(record)
                    continue
                try:
                    job = await self.prepare(record)
                except Exception as exc:
                    await self._unrunnable(record, exc)
                    continue
                self.spawn(job)
            if len(claimed) < free:
                self._backlog = False  # all claimed; the poll finds what others queue
                return found
            free = self.concurrency - len(self.running)
        return found

    async def _poisoned(self, record: ExecutionRecord) -> None:
        await self._end_failed(record, (
            f"the process running this execution stopped {record.resumes} times while it "
            f"ran (a crash or out of memory?); it is not resumed again"))

    async def _unrunnable(self, record: ExecutionRecord, exc: Exception) -> None:
        # E.g. its version no longer compiles: fail it, or it would be claimed forever.
        log.error("execution %s cannot run: %r", record.id, exc)
        message = exc.message if isinstance(exc, ReflowError) else f"{type(exc).__name__}: {exc}"
        await self._end_failed(record, f"cannot run: {message}")

    async def _end_failed(self, record: ExecutionRecord, message: str) -> None:
        record.status = ExecutionStatus.FAILED
        record.stopped_at = now_ms()
        record.lease_owner = record.lease_expires = None
        record.error = orjson.dumps(error_json(message, None))
        try:
            await self.store.save_execution(record, [], owner=self.owner)
            metrics.finished(record)
            self.book.on_failed()
        except LeaseLost:
            pass  # another worker claimed it meanwhile: it decides
        except Exception:
            log.exception("cannot record that execution %s failed", record.id)

    async def _heartbeat_loop(self) -> None:
        interval = self.book.lease_ms / 3000
        while not self._stopping:
            await asyncio.sleep(interval)
            until = self.lease_until()
            ids = []
            for execution_id, (_, job) in self.running.items():
                # The record carries its lease into every commit, the first one included
                # (a run answered at its end is inserted late): keep every copy current.
                job.record.lease_expires = until
                if job.persisted:
                    ids.append(execution_id)
            if not ids:
                continue
            try:
                lost = await self.store.renew_leases(self.owner, ids, until)
            except Exception:
                log.exception("renewing leases failed")
                continue
            for execution_id in lost:
                self._drop(execution_id)

    def _drop(self, execution_id: str) -> None:
        """Our lease of a running execution is gone (we stalled past it and another worker
        claimed it): write nothing more of it and stop it before its next block."""
        if execution_id not in self.running:
            return
        log.warning("lost the lease of execution %s: another worker runs it now", execution_id)
        self._dropped.add(execution_id)
        metrics.lease_lost()
        self.book.lose(execution_id)
        self.executor.cancel(execution_id)
