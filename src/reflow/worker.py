"""The claim -> run -> heartbeat loop (in-process for ``serve``).

Runs started by this process are handed to the worker directly; executions queued by
other processes (the CLI) or abandoned by a dead one are claimed from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from reflow.domain.executions import ExecutionRecord, ExecutionStatus, error_json
from reflow.engine import Engine, RunState
from reflow.errors import ReflowError
from reflow.ids import new_object_id, now_ms
from reflow.store.base import Store

log = logging.getLogger(__name__)

Prepare = Callable[[ExecutionRecord], Awaitable[RunState]]


class Worker:
    """Runs executions with bounded concurrency and keeps their leases alive."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        prepare: Prepare,
        *,
        concurrency: int,
        lease_seconds: float,
        poll_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.engine = engine
        self.prepare = prepare
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{new_object_id()[-8:]}"
        self.concurrency = concurrency
        self.lease_ms = int(lease_seconds * 1000)
        self.poll_interval = poll_interval
        self.running: dict[str, tuple[asyncio.Task[ExecutionRecord], RunState]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False

    @property
    def full(self) -> bool:
        """True when as many executions run as the concurrency allows."""
        return len(self.running) >= self.concurrency

    def lease_until(self) -> int:
        """The expiry to give a lease taken now."""
        return now_ms() + self.lease_ms

    def spawn(self, state: RunState) -> asyncio.Task[ExecutionRecord]:
        """Run a prepared execution in the background; its lease is renewed while it runs."""
        execution_id = state.record.id
        task = asyncio.create_task(self.engine.run(state), name=f"execution {execution_id}")
        self.running[execution_id] = (task, state)
        task.add_done_callback(lambda t: self._done(execution_id, t))
        return task

    def _done(self, execution_id: str, task: asyncio.Task[ExecutionRecord]) -> None:
        self.running.pop(execution_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The lease runs out and the execution is claimed again from its last step.
            log.error("execution %s stopped on an error: %r", execution_id, exc, exc_info=exc)
        self._wake.set()

    def wake(self) -> None:
        """Look for claimable executions now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        """Start the claim loop and the heartbeat."""
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="worker claim loop"),
            asyncio.create_task(self._heartbeat_loop(), name="worker heartbeat"),
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let running executions finish for ``grace`` seconds, then cancel."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pending = [task for task, _ in self.running.values()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)

    async def _claim_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._claim()
            except Exception:  # keep the loop alive; the next poll retries
                log.exception("claiming executions failed")

    async def _claim(self) -> None:
        free = self.concurrency - len(self.running)
        while free > 0 and not self._stopping:
            now = now_ms()
            claimed = await self.store.claim_executions(self.owner, now, now + self.lease_ms, free)
            for record in claimed:
                if record.id in self.running:
                    continue  # already running here (its lease was renewed by the claim)
                try:
                    state = await self.prepare(record)
                except Exception as exc:
                    await self._unrunnable(record, exc)
                    continue
                self.spawn(state)
            if len(claimed) < free:
                return
            free = self.concurrency - len(self.running)

    async def _unrunnable(self, record: ExecutionRecord, exc: Exception) -> None:
        # E.g. its version no longer compiles: fail it, or it would be claimed forever.
        log.error("execution %s cannot run: %r", record.id, exc)
        message = exc.message if isinstance(exc, ReflowError) else f"{type(exc).__name__}: {exc}"
        record.status = ExecutionStatus.FAILED
        record.stopped_at = now_ms()
        record.lease_owner = record.lease_expires = None
        record.error = orjson.dumps(error_json(f"cannot run: {message}", None))
        try:
            await self.store.save_execution(record, [])
        except Exception:
            log.exception("cannot record that execution %s cannot run", record.id)

    async def _heartbeat_loop(self) -> None:
        interval = self.lease_ms / 3000
        while not self._stopping:
            await asyncio.sleep(interval)
            until = self.lease_until()
            ids = []
            for execution_id, (_, state) in self.running.items():
                # The record carries its lease into every commit, the first one included
                # (a run answered at its end is inserted late): keep every copy current.
                state.record.lease_expires = until
                if state.recorder.persisted:
                    ids.append(execution_id)
            if not ids:
                continue
            try:
                await self.store.renew_leases(self.owner, ids, until)
            except Exception:
                log.exception("renewing leases failed")
