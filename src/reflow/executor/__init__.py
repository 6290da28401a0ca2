"""Where executions run: in this process, or in supervised executor processes.

The worker hands a ``Job`` to an ``Executor`` and gets a future of its ``Finished`` result.
Either way the engine's writes come back through ``JobBook.write``, in the process that
owns the database connection, so what is committed and when (DESIGN "Performance") does
not depend on where the engine ran. ``ProcessExecutor`` (``executor.process``) is the
default: an expression that crashes, exhausts memory or hangs takes down one executor
process, never the API, and the execution that did it is found and ended
(docs/architecture.md "Executor processes").
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from reflow import metrics
from reflow.clock import Clock, SystemClock
from reflow.domain.executions import ExecutionRecord, ExecutionStatus, StepRecord
from reflow.engine import Engine, Recorder, RunState
from reflow.engine.compiled import CompiledWorkflow
from reflow.errors import LeaseLost
from reflow.ids import now_ms
from reflow.store.base import Store


@dataclass(slots=True, eq=False)
class Job:
    """One execution handed to an executor, and what the parent knows of it meanwhile."""

    record: ExecutionRecord  # its ``steps`` are the ones not yet written (a rerun's reused)
    workflow: CompiledWorkflow
    trigger: Any  # the trigger as the engine sees it (plain, not sealed)
    recorded: list[StepRecord]  # steps to reuse instead of running again
    persisted: bool  # the execution row exists
    idempotency_key: str | None = None
    env: Mapping[str, Any] | None = None
    # The run's credential bindings by app name (decrypted here, in the serving process).
    credentials: Mapping[str, Mapping[str, str]] | None = None
    # The installation's configured fields (``config`` in expressions), and which of
    # their values are secret (hidden from the steps).
    config: Mapping[str, Any] | None = None
    config_secrets: tuple[str, ...] = ()
    # Steps with a lower seq were written by the parent's own early insert (``ensure``).
    written_below: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True, slots=True)
class Finished:
    """A job's end: the execution as committed, and the respond body as computed."""

    record: ExecutionRecord
    response: bytes | None  # JSON of the respond block's body, when one ran


class Executor(Protocol):
    """Runs jobs; ``submit`` returns a future of the job's end."""

    async def start(self) -> None:
        """Be ready to run jobs."""

    def submit(self, job: Job) -> asyncio.Future[Finished]:
        """Run a job; the future fails with the store's error if its writes failed."""

    def cancel(self, execution_id: str) -> None:
        """Ask a running job to stop before its next block."""

    async def stop(self, grace: float) -> None:
        """Let running jobs finish for ``grace`` seconds, then stop them (they resume later)."""


class JobBook:
    """Commits what running jobs report, under this process's lease."""

    def __init__(
        self, store: Store, owner: str, lease_seconds: float, clock: Clock | None = None,
        *, on_failed: Callable[[], None] = lambda: None,
        renew: Callable[[ExecutionRecord, str, Mapping[str, Any]],
                        Awaitable[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.store = store
        self.owner = owner
        self.clock: Clock = clock or SystemClock()
        self.lease_ms = int(lease_seconds * 1000)
        # Executions whose lease another worker took over: nothing of theirs is written.
        self.lost: set[str] = set()
        # Called after a failed execution is committed (Reflow wakes the error stream).
        self.on_failed = on_failed
        # Renews an OAuth binding a target refused, for a job running here or in an
        # executor process (Reflow gives CredentialService.renew).
        self.renew = renew or _cannot_renew

    def lose(self, execution_id: str) -> None:
        """Refuse every later write of this execution (its lease is someone else's now)."""
        self.lost.add(execution_id)

    def forget(self, execution_id: str) -> None:
        """The execution's job ended here; drop what the book knew of it."""
        self.lost.discard(execution_id)

    def lease_until(self) -> int:
        """The expiry to give a lease taken now."""
        return self.clock.now_ms() + self.lease_ms

    def _lease(self, record: ExecutionRecord) -> None:
        # Every commit carries the lease: this process's while it runs, none once finished;
        # a waiting execution has none either, its wake time in its place (migration 0016).
        if record.finished:
            record.lease_owner = record.lease_expires = None
        elif record.status is ExecutionStatus.WAITING:
            record.lease_owner, record.lease_expires = None, record.wake_at
        else:
            record.lease_owner, record.lease_expires = self.owner, self.lease_until()

    async def write(self, job: Job, steps: Sequence[StepRecord]) -> None:
        """Commit the job's record as it is now, with its new ``steps``."""
        record = job.record
        if record.id in self.lost:
            raise LeaseLost(f"execution {record.id}: its lease is held by another worker now")
        self._lease(record)
        async with job.lock:
            if not job.persisted:
                record.steps = list(steps)
                await self.store.insert_execution(record, job.idempotency_key)
                job.persisted = True
                metrics.committed(record, steps)
            else:
                fresh = [s for s in steps if s.seq >= job.written_below]
                try:
                    await self.store.save_execution(record, fresh, owner=self.owner)
                except LeaseLost:
                    self.lose(record.id)
                    raise
                metrics.committed(record, fresh)
        if record.status is ExecutionStatus.FAILED:
            self.on_failed()

    async def ensure(self, job: Job) -> None:
        """Make sure the execution row exists (before answering that it still runs)."""
        async with job.lock:
            if job.persisted:
                return
            record = job.record
            self._lease(record)
            await self.store.insert_execution(record, job.idempotency_key)
            job.written_below = max((s.seq + 1 for s in record.steps), default=0)
            job.persisted = True



async def _cannot_renew(record: ExecutionRecord, app: str, used: Mapping[str, Any]
                        ) -> Mapping[str, Any]:
    """No credential service in this process: the refusal stands."""
    return {"type": "unavailable",
            "reason": f"the credential for app {app!r} was refused (HTTP 401)"}


Commit = Callable[[ExecutionRecord, Sequence[StepRecord]], Awaitable[None]]


class WriteThrough:
    """A recorder's writer that hands every commit, insert or update, to one function that
    knows which it is: the job book here, the parent from an executor process."""

    __slots__ = ("_commit",)

    def __init__(self, commit: Commit) -> None:
        self._commit = commit

    async def insert_execution(
        self, execution: ExecutionRecord, idempotency_key: str | None = None
    ) -> None:
        """The first commit: the execution with every step not written yet."""
        await self._commit(execution, execution.steps)

    async def save_execution(
        self, execution: ExecutionRecord, new_steps: Sequence[StepRecord]
    ) -> None:
        """A later commit: the execution with its new steps."""
        await self._commit(execution, new_steps)


class InProcessExecutor:
    """Runs jobs on this process's event loop (REFLOW_EXECUTOR_PROCESSES=0; tests)."""

    def __init__(self, engine: Engine, book: JobBook) -> None:
        self.engine = engine
        self.book = book
        self._states: dict[str, RunState] = {}
        self._tasks: set[asyncio.Task[Finished]] = set()

    async def start(self) -> None:
        """Nothing to start."""

    def submit(self, job: Job) -> asyncio.Future[Finished]:
        """Run the job as a task of this loop."""
        writer = WriteThrough(lambda _, steps: self.book.write(job, steps))
        recorder = Recorder(writer, job.record, persisted=job.persisted,
                            idempotency_key=job.idempotency_key)
        state = self.engine.new_state(recorder, job.workflow, job.trigger, job.recorded,
                                      env=job.env, credentials=job.credentials,
                                      config=job.config, config_secrets=job.config_secrets,
                                      clock_offset=self.book.clock.now_ms() - now_ms())
        state.cancel_requested = job.record.cancel_requested
        state.renew = functools.partial(self.book.renew, job.record)
        execution_id = job.record.id
        self._states[execution_id] = state
        task = asyncio.create_task(self._run(state), name=f"execution {execution_id}")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._forget(execution_id, t))
        return task

    async def _run(self, state: RunState) -> Finished:
        record = await self.engine.run(state)
        return Finished(record, orjson.dumps(state.response) if state.responded else None)

    def _forget(self, execution_id: str, task: asyncio.Task[Finished]) -> None:
        self._states.pop(execution_id, None)
        self._tasks.discard(task)

    def cancel(self, execution_id: str) -> None:
        """Flag the running state; the engine checks it before each block."""
        state = self._states.get(execution_id)
        if state is not None:
            state.cancel_requested = True

    async def stop(self, grace: float) -> None:
        """Wait for running jobs up to ``grace`` seconds, then cancel what remains."""
        pending = set(self._tasks)
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=grace)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=1.0)
