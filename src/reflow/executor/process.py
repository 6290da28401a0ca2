"""Executor processes, supervised: the engine runs there, the database stays here.

Each executor is a fresh interpreter (``python -m reflow.executor``) under ``RLIMIT_AS``,
talking to this process over a socket pair (``wire``). It sends a ``beat`` four times a
second; one that falls silent for ``hang_timeout`` is killed (an expression running past
its budget inside one built-in call, which the engine's own clock cannot interrupt).

When an executor dies, its marker file names the execution whose block was evaluating:
- the other executions it held are innocent: they continue at once in a new executor,
  from their last committed step, without counting a resume;
- the culprit counts a resume; a hang fails its block at once (it would hang again), a
  crash is retried alone in the quarantine executor (one execution at a time) until it
  has been resumed ``max_resumes`` times, then fails with a message saying it stopped
  its executor;
- with no marker (a crash outside evaluation), every execution it held counts a resume
  and goes through quarantine, where a crash is its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from reflow.domain.executions import ExecutionStatus, StepRecord, StepStatus, error_json
from reflow.errors import Conflict
from reflow.executor import Finished, Job, JobBook
from reflow.executor.child import MARKER_SIZE, SENT_VERSIONS, read_marker
from reflow.executor.wire import Channel, Message, apply_progress, step_from_wire, step_to_wire
from reflow.ids import now_ms
from reflow.settings import Settings

log = logging.getLogger(__name__)

_RESPAWN_BACKOFF = (0.0, 0.5, 1.0, 2.0, 5.0)  # by how many executors died young in a row
_YOUNG_SECONDS = 2.0
# A new executor imports reflow before it beats; a loaded machine may take seconds.
_START_SECONDS = 60.0


class ExecutorStopped(Exception):
    """The executor stopped before the job ended; its lease brings it back later."""


@dataclass(eq=False)
class _Executor:
    """One executor process as the parent sees it."""

    name: str
    capacity: int
    quarantine: bool
    marker: str
    process: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    jobs: dict[str, Job] = field(default_factory=dict)
    # The versions it was sent lately, most recent last (it keeps more than these).
    sent_versions: collections.OrderedDict[tuple[str, int], None] = field(
        default_factory=collections.OrderedDict)
    last_seen: float = 0.0
    ready: bool = False  # it said "ready": importing is done, the watchdog's limit applies
    started: float = 0.0
    killed_for: str | None = None
    dead: bool = False

    @property
    def free(self) -> int:
        """How many more jobs it takes."""
        return 0 if self.dead or self.process is None else self.capacity - len(self.jobs)


class ProcessExecutor:
    """Runs jobs in ``processes`` executor processes, plus a quarantine one when needed."""

    def __init__(
        self,
        settings: Settings,
        book: JobBook,
        *,
        processes: int,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.book = book
        self.processes = processes
        self.capacity = capacity
        self.hang_timeout = settings.executor_hang_timeout
        self.max_resumes = settings.max_resumes
        self.clock = clock
        self._dir = Path(tempfile.mkdtemp(prefix="reflow-executor-"))  # mode 0700
        self._settings_file = self._dir / "settings.pickle"
        self._executors: list[_Executor] = []
        self._quarantine: _Executor | None = None
        self._quarantined: collections.deque[Job] = collections.deque()
        # Jobs no executor has room for: every one is full (a burst of runs can pass the
        # worker's concurrency check together) or being replaced. Sent as room frees up.
        self._waiting: collections.deque[Job] = collections.deque()
        self._futures: dict[str, asyncio.Future[Finished]] = {}
        self._where: dict[str, _Executor] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Task[None]] = set()  # commits executors asked for
        self._stopping = False
        self._young_deaths = 0
        self._counter = 0

    # -- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the executor processes and the watchdog."""
        fd = os.open(self._settings_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(self.settings, handle)
        for _ in range(self.processes):
            self._executors.append(await self._spawn(self.capacity, quarantine=False))
        self._keep(self._watchdog())

    async def _spawn(self, capacity: int, *, quarantine: bool) -> _Executor:
        self._counter += 1
        name = f"{'quarantine' if quarantine else 'executor'}-{self._counter}"
        marker = str(self._dir / f"{name}.marker")
        with open(marker, "wb") as handle:
            handle.write(bytes(MARKER_SIZE))
        executor = _Executor(name, capacity, quarantine, marker)
        parent_sock, child_sock = socket.socketpair()
        try:
            executor.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "reflow.executor", "--fd", str(child_sock.fileno()),
                "--marker", marker, "--settings", str(self._settings_file),
                "--memory", str(self.settings.executor_memory_limit),
                pass_fds=(child_sock.fileno(),),
                env={**os.environ, "MALLOC_ARENA_MAX": "2"},
            )
        finally:
            child_sock.close()
        loop = asyncio.get_running_loop()
        _, executor.channel = await loop.create_connection(
            lambda: Channel(lambda m: self._on_message(executor, m)), sock=parent_sock
        )
        executor.started = executor.last_seen = self.clock()
        self._keep(self._reap(executor))
        return executor

    def _keep(
        self, coroutine: collections.abc.Coroutine[object, object, None],
        tasks: set[asyncio.Task[None]] | None = None,
    ) -> None:
        held = self._background if tasks is None else tasks
        task = asyncio.get_running_loop().create_task(coroutine)
        held.add(task)
        task.add_done_callback(held.discard)

    async def stop(self, grace: float) -> None:
        """Let executors finish their jobs for ``grace`` seconds, then end them."""
        self._stopping = True
        executors = [e for e in [*self._executors, self._quarantine] if e is not None]
        for executor in executors:
            if executor.channel is not None:
                executor.channel.send(["stop", grace])
        await self._ended(executors, grace + 2.0)
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=5.0)  # what was asked is committed
        for task in list(self._background):
            task.cancel()
        for future in self._futures.values():
            if not future.done():
                future.set_exception(ExecutorStopped("reflow is stopping"))
        self._futures.clear()
        shutil.rmtree(self._dir, ignore_errors=True)

    @staticmethod
    async def _ended(executors: list[_Executor], timeout: float) -> None:
        """Wait for the processes to exit; kill those still running after ``timeout``."""
        processes = [e.process for e in executors if e.process is not None]
        if not processes:
            return
        waits = [asyncio.ensure_future(p.wait()) for p in processes]
        _, pending = await asyncio.wait(waits, timeout=timeout)
        for process in processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    # -- jobs --------------------------------------------------------------------------------

    def submit(self, job: Job) -> asyncio.Future[Finished]:
        """Send the job to the least busy executor."""
        future: asyncio.Future[Finished] = asyncio.get_running_loop().create_future()
        self._futures[job.record.id] = future
        self._dispatch(job)
        return future

    def _dispatch(self, job: Job) -> None:
        live = [e for e in self._executors if e.free > 0]
        if not live:
            self._waiting.append(job)
            return
        self._send_job(max(live, key=lambda e: e.free), job)

    def _dispatch_waiting(self) -> None:
        """Send waiting jobs to the executors that have room now."""
        while self._waiting and any(e.free > 0 for e in self._executors):
            self._dispatch(self._waiting.popleft())

    def _send_job(self, executor: _Executor, job: Job) -> None:
        record = job.record
        key = (record.workflow_id, record.version)
        source = None
        sent = executor.sent_versions
        if key in sent:
            sent.move_to_end(key)
        else:
            source = orjson.Fragment(job.workflow.source)  # stored JSON, sent as it is
            sent[key] = None
            if len(sent) > SENT_VERSIONS:
                sent.popitem(last=False)
        meta = [record.id, record.team_id, record.workflow_id, record.installation_id,
                record.user_id, record.version, record.mode.value, record.created_at,
                record.started_at, record.rerun_of, record.resumes, record.cancel_requested,
                self.book.clock.now_ms() - now_ms()]
        executor.jobs[record.id] = job
        self._where[record.id] = executor
        assert executor.channel is not None
        executor.channel.send([
            "run", meta, key, source, job.trigger,
            [step_to_wire(s) for s in record.steps], [step_to_wire(s) for s in job.recorded],
            job.persisted, job.env, job.credentials, job.config, list(job.config_secrets),
        ])

    def cancel(self, execution_id: str) -> None:
        """Pass a cancel to the executor running the job (or flag it while it waits)."""
        executor = self._where.get(execution_id)
        if executor is not None and executor.channel is not None:
            executor.channel.send(["cancel", execution_id])
        for job in self._quarantined:
            if job.record.id == execution_id:
                job.record.cancel_requested = True

    # -- messages ----------------------------------------------------------------------------

    def _on_message(self, executor: _Executor, message: Message) -> None:
        executor.last_seen = self.clock()
        kind = message[0]
        if kind == "ready":
            executor.ready = True
        elif kind == "save":
            self._keep(self._save(executor, message), self._writes)
        elif kind == "finish":
            self._keep(self._finish(executor, message), self._writes)
        elif kind == "renew":
            self._keep(self._renew(executor, message))

    async def _renew(self, executor: _Executor, message: Message) -> None:
        """A job's target refused its OAuth token: renew the binding here, where the
        database is, and answer with it (``unavailable`` with the reason if it cannot)."""
        _, seq, execution_id, app, used = message
        job = executor.jobs.get(execution_id)
        if job is None or executor.channel is None:
            return
        try:
            renewed = await self.book.renew(job.record, str(app), dict(used or {}))
        except Exception as exc:  # the database failed: this request fails, not the run's
            log.warning("renewing the credential for app %s of execution %s failed: %r",
                        app, execution_id, exc)
            renewed = {"type": "unavailable",
                       "reason": f"the credential for app {app!r} was refused (HTTP 401) "
                                 "and could not be renewed now"}
        executor.channel.send(["renewed", seq, dict(renewed)])

    async def _save(self, executor: _Executor, message: Message) -> None:
        _, seq, execution_id, progress, steps = message
        job = executor.jobs.get(execution_id)
        if job is None or executor.channel is None:
            return
        apply_progress(job.record, progress)
        try:
            await self.book.write(job, [step_from_wire(s) for s in steps])
        except Exception as exc:
            kind = "conflict" if isinstance(exc, Conflict) else "store"
            executor.channel.send(["nack", seq, kind, getattr(exc, "message", str(exc))])
            return
        executor.channel.send(["ack", seq])

    async def _finish(self, executor: _Executor, message: Message) -> None:
        """A run ended: commit its last state, then answer whoever waits for it."""
        _, execution_id, progress, steps, response, error = message
        job = executor.jobs.pop(execution_id, None)
        self._where.pop(execution_id, None)
        future = self._futures.pop(execution_id, None)
        self._dispatch_waiting()
        if executor.quarantine:
            self._keep(self._drain_quarantine())
        if job is None:
            return
        try:
            if progress is not None:
                apply_progress(job.record, progress)
                await self.book.write(job, [step_from_wire(s) for s in steps])
        except Exception as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(ExecutorJobError(error))
        else:
            body = None if response is None else response.encode()
            future.set_result(Finished(job.record, body))

    # -- supervision -------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        interval = min(0.25, self.hang_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = self.clock()
            for executor in [*self._executors, self._quarantine]:
                if executor is None or executor.dead or executor.process is None:
                    continue
                if not executor.ready:
                    if now - executor.started > _START_SECONDS:
                        executor.killed_for = f"it did not start in {_START_SECONDS:g}s"
                        with contextlib.suppress(ProcessLookupError):
                            executor.process.kill()
                    continue
                if now - executor.last_seen > self.hang_timeout:
                    executor.killed_for = (
                        f"it ran for more than {self.hang_timeout:g}s without yielding"
                    )
                    with contextlib.suppress(ProcessLookupError):
                        executor.process.kill()

    async def _reap(self, executor: _Executor) -> None:
        assert executor.process is not None
        code = await executor.process.wait()
        executor.dead = True
        if executor.channel is not None:
            executor.channel.close()
        if self._stopping:
            return
        reason = executor.killed_for or _exit_reason(code)
        log.error("executor %s (pid %s) stopped: %s; %d executions were on it",
                  executor.name, executor.process.pid, reason, len(executor.jobs))
        if self.clock() - executor.started < _YOUNG_SECONDS:
            self._young_deaths += 1
        else:
            self._young_deaths = 0
        culprit = read_marker(executor.marker)
        if executor.quarantine:
            self._quarantine = None
        else:
            self._executors.remove(executor)
            await asyncio.sleep(_RESPAWN_BACKOFF[min(self._young_deaths,
                                                     len(_RESPAWN_BACKOFF) - 1)])
            if self._stopping:
                return
            self._executors.append(await self._spawn(self.capacity, quarantine=False))
            self._dispatch_waiting()
        jobs = list(executor.jobs.values())
        executor.jobs.clear()
        alone = executor.quarantine or len(jobs) == 1
        for job in jobs:
            self._where.pop(job.record.id, None)
            await self._after_death(job, executor, culprit, reason, alone=alone)
        await self._drain_quarantine()

    async def _after_death(
        self, job: Job, executor: _Executor, culprit: tuple[str, str] | None, reason: str,
        *, alone: bool,
    ) -> None:
        execution_id = job.record.id
        named = culprit is not None and culprit[0] == execution_id
        await self._refresh(job)
        if job.record.finished:
            # Its end is committed already (by a path other than its lost ``finish``).
            future = self._futures.pop(execution_id, None)
            if future is not None and not future.done():
                future.set_result(Finished(job.record, None))
            return
        if culprit is not None and not named and not executor.quarantine:
            self._dispatch(job)  # innocent: it was only sharing the process
            return
        block_id = culprit[1] if named and culprit is not None else None
        job.record.resumes += 1
        hang = executor.killed_for is not None
        # A hang while its own block evaluated would hang again: that block fails now.
        if (hang and (named or (alone and executor.quarantine))) or (
                job.record.resumes > self.max_resumes):
            where = f"block {block_id!r}" if block_id else "this execution"
            times = "" if hang else f" {job.record.resumes} times"
            await self._fail(job, f"{where} stopped its executor process{times}: {reason}; "
                                  "it is not resumed again", block_id)
            return
        if job.persisted:
            await self.book.write(job, [])  # the resume count survives a restart
        self._quarantined.append(job)

    async def _refresh(self, job: Job) -> None:
        """Bring the job up to what is committed: the steps written so far are reused."""
        if not job.persisted:
            return
        async with job.lock:
            stored = await self.book.store.get_execution(job.record.team_id, job.record.id)
        if stored is None:
            return
        record = job.record
        record.status, record.output, record.error = (stored.status, stored.output,
                                                      stored.error)
        record.response_status, record.stopped_at = stored.response_status, stored.stopped_at
        record.steps = []
        job.recorded = stored.steps
        job.written_below = 0

    async def _fail(self, job: Job, message: str, block_id: str | None) -> None:
        record = job.record
        record.status = ExecutionStatus.FAILED
        record.stopped_at = now_ms()
        record.error = orjson.dumps(error_json(message, block_id))
        log.error("execution %s failed: %s", record.id, message)
        future = self._futures.pop(record.id, None)
        steps = [] if job.persisted else list(record.steps)
        if block_id is not None:
            # The logs show the block that did it, as for any failed block.
            seq = max((s.seq + 1 for s in [*job.recorded, *steps]), default=0)
            steps.append(StepRecord(seq, block_id, StepStatus.FAILED, record.resumes,
                                    record.stopped_at, record.stopped_at, b"{}", None, message))
        try:
            await self.book.write(job, steps)
        except Exception as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(Finished(record, None))

    async def _drain_quarantine(self) -> None:
        """Run the next quarantined job, alone, in the quarantine executor."""
        if self._stopping or not self._quarantined:
            return
        if self._quarantine is None:
            self._quarantine = await self._spawn(1, quarantine=True)
        executor = self._quarantine
        while self._quarantined and executor.free > 0:
            self._send_job(executor, self._quarantined.popleft())


class ExecutorJobError(Exception):
    """The engine in the executor stopped on an error (the store's, usually)."""


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = {"SIGABRT": " (out of memory?)", "SIGSEGV": " (a crash in native code)",
                "SIGKILL": " (killed: out of memory?)"}.get(name, "")
        return f"it was killed by {name}{hint}"
    return f"it exited with status {code}"
