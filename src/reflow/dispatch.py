"""Where a new execution goes once it is built: the one seam between starting and running.

``RunService`` (for the API and the CLI alike) builds an execution and hands it to a
``Dispatch``. ``LocalDispatch`` runs it in this process's worker (``reflow serve``, and a
CLI that may run executions itself); ``QueuedDispatch`` commits it as queued for a worker
process to claim (``serve --no-worker``, a CLI beside a running server) and, asked to wait,
waits for the worker's commit: woken by a ``finished`` hint from the database, with a
bounded poll behind it, since a hint may be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

from reflow.domain.executions import ExecutionRecord, ExecutionStatus
from reflow.engine.compiled import CompiledWorkflow
from reflow.executor import Job
from reflow.ids import now_ms
from reflow.store.base import Store
from reflow.worker import Worker


@dataclass(frozen=True, slots=True)
class Started:
    """A run as answered: its execution, and its result when it finished in time."""

    execution_id: str
    finished: ExecutionRecord | None = None
    # The JSON to answer with as the output: the respond body as computed when this
    # process ran it (the stored copy is redacted and capped), else the stored one.
    output_json: bytes | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    """A new execution (status ``queued``, no lease yet) and what running it needs."""

    record: ExecutionRecord
    workflow: CompiledWorkflow
    trigger: Any  # the trigger as the engine sees it (opened)
    env: Any = None
    idempotency_key: str | None = None
    # Its credential bindings, when this process runs it (a worker that claims it from the
    # queue binds them itself: RunService.prepare).
    credentials: Any = None
    # The installation's configured fields and their secret values (RunService.configured).
    config: Any = None
    config_secrets: tuple[str, ...] = ()


class Dispatch(Protocol):
    """Runs or queues new executions, and waits for any execution to end."""

    async def submit(self, submission: Submission, wait: float | None) -> Started:
        """Start (or queue) the execution; with ``wait``, wait that long for its end.

        Without ``wait`` it returns once the execution is committed.
        """

    async def wait(self, team_id: str, execution_id: str, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for an execution (started anywhere) to end."""

    def cancel(self, execution_id: str) -> None:
        """Pass a cancel on at once if the execution runs here (others poll the flag)."""


# How often a waiter looks at the database when no hint came (a lost NOTIFY, or SQLite).
POLL_SECONDS = 0.05
_MAX_POLL_SECONDS = 1.0


class Waiters:
    """Futures of executions this process waits for, resolved by ``finished`` hints."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}

    def hint(self, channel: str, payload: str) -> None:
        """A store hint (``Store.listen``): wake whoever waits for a finished execution."""
        if channel != "finished":
            return
        for future in self._waiting.pop(payload, ()):
            if not future.done():
                future.set_result(None)

    async def until_finished(
        self, store: Store, team_id: str, execution_id: str, timeout: float
    ) -> None:
        """Return when the execution has finished, waits (a delay), is gone, or at the
        deadline.

        Polls with a growing interval (50 ms up to 1 s), so a lost hint costs at most that.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        interval = POLL_SECONDS
        while True:
            future: asyncio.Future[None] = loop.create_future()
            self._waiting.setdefault(execution_id, []).append(future)
            try:
                status = await store.execution_status(team_id, execution_id)
                remaining = deadline - loop.time()
                if (status is None or status == ExecutionStatus.WAITING
                        or ExecutionStatus(status).finished or remaining <= 0):
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, min(interval, remaining))
            finally:
                self._forget(execution_id, future)
            interval = min(interval * 2, _MAX_POLL_SECONDS)

    def _forget(self, execution_id: str, future: asyncio.Future[None]) -> None:
        futures = self._waiting.get(execution_id)
        if futures is None:
            return
        with contextlib.suppress(ValueError):
            futures.remove(future)
        if not futures:
            del self._waiting[execution_id]


class QueuedDispatch:
    """Commits executions as queued; a worker process claims and runs them."""

    def __init__(self, store: Store, waiters: Waiters) -> None:
        self.store = store
        self.waiters = waiters

    async def submit(self, submission: Submission, wait: float | None) -> Started:
        """Insert as queued (the store hints the workers); with ``wait``, wait for a worker."""
        record = submission.record
        await self.store.insert_execution(record, submission.idempotency_key)
        if not wait:
            return Started(record.id)
        await self.wait(record.team_id, record.id, wait)
        return await finished_started(self.store, record.team_id, record.id)

    async def wait(self, team_id: str, execution_id: str, timeout: float) -> None:
        """Wait for the worker's final commit (hint or poll)."""
        await self.waiters.until_finished(self.store, team_id, execution_id, timeout)

    def cancel(self, execution_id: str) -> None:
        """Nothing runs here: the worker that runs it sees the cancel flag."""


async def finished_started(store: Store, team_id: str, execution_id: str) -> Started:
    """``Started`` of an execution as stored: with its record when it has finished or
    waits."""
    record = await store.get_execution(team_id, execution_id)
    if record is None or not (record.finished or record.status is ExecutionStatus.WAITING):
        return Started(execution_id)
    return Started(execution_id, record, record.output)


class LocalDispatch:
    """Runs executions in this process's worker (queued only when the worker is full)."""

    def __init__(self, worker: Worker, waiters: Waiters) -> None:
        self.worker = worker
        self.queued = QueuedDispatch(worker.store, waiters)

    async def submit(self, submission: Submission, wait: float | None) -> Started:
        """Run it here now, or queue it when every slot is taken and nobody waits."""
        worker = self.worker
        if not wait and worker.full:
            # Backpressure: committed as queued, claimed when a slot frees up.
            started = await self.queued.submit(submission, None)
            worker.wake()
            return started
        record = submission.record
        record.status = ExecutionStatus.RUNNING
        record.started_at = now_ms()
        record.lease_owner, record.lease_expires = worker.owner, worker.lease_until()
        # Steps copied from the source (a rerun from a block) count as recorded.
        job = Job(record, submission.workflow, submission.trigger, list(record.steps),
                  persisted=False, idempotency_key=submission.idempotency_key,
                  env=submission.env, credentials=submission.credentials,
                  config=submission.config, config_secrets=submission.config_secrets)
        # A run answered only when it finishes acknowledges nothing before its commit;
        # any other run is committed (and so acknowledged) before it starts. A keyed one
        # is committed first too, so a second request with the key finds it at once.
        if not wait or submission.idempotency_key is not None:
            await worker.book.ensure(job)
        future = worker.spawn(job)
        if not wait:
            return Started(record.id)
        done, _ = await asyncio.wait({future}, timeout=wait)
        if done:
            finished = future.result()  # re-raises what stopped the run
            return Started(record.id, finished.record, finished.response)
        await worker.book.ensure(job)
        return Started(record.id)

    async def wait(self, team_id: str, execution_id: str, timeout: float) -> None:
        """Wait on the run here if it is one, else as a queued dispatch would."""
        running = self.worker.running.get(execution_id)
        if running is not None:
            await asyncio.wait({running[0]}, timeout=timeout)
            return
        await self.queued.wait(team_id, execution_id, timeout)

    def cancel(self, execution_id: str) -> None:
        """Flag the execution at once if it runs here."""
        self.worker.cancel(execution_id)
