"""When an execution's steps reach the database (DESIGN "Performance").

Pure steps ride in the next commit; a side-effecting step is committed before the next
block runs. An execution that nobody was told about yet (a run answered only when it
finishes) is inserted with its first commit, so a crash before it loses nothing promised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from reflow.domain.executions import ExecutionRecord, StepRecord


class ExecutionWriter(Protocol):
    """Where a recorder commits: the Store itself, or ``executor.WriteThrough``."""

    async def insert_execution(
        self, execution: ExecutionRecord, idempotency_key: str | None = None
    ) -> None:
        """Insert the execution with its steps (and idempotency key) in one transaction."""

    async def save_execution(
        self, execution: ExecutionRecord, new_steps: Sequence[StepRecord]
    ) -> None:
        """Update the execution's status fields and append steps in one transaction."""


class Recorder:
    """Buffers an execution's new steps and writes them with the execution's state."""

    __slots__ = ("_idempotency_key", "_lock", "_store", "pending", "persisted", "record")

    def __init__(
        self, store: ExecutionWriter, record: ExecutionRecord, *, persisted: bool,
        idempotency_key: str | None = None,
    ) -> None:
        self._store = store
        self.record = record
        self.persisted = persisted
        self._idempotency_key = idempotency_key
        self.pending: list[StepRecord] = []
        self._lock = asyncio.Lock()

    def add(self, step: StepRecord) -> None:
        """Keep a pure step for the next commit."""
        self.pending.append(step)

    async def flush(self) -> None:
        """Commit the execution's state and every pending step in one transaction."""
        async with self._lock:
            steps, self.pending = self.pending, []
            if self.persisted:
                await self._store.save_execution(self.record, steps)
            else:
                self.record.steps.extend(steps)
                await self._store.insert_execution(self.record, self._idempotency_key)
                self.persisted = True
