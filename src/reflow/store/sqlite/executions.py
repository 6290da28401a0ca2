"""SQLite store: executions: queueing, claims and leases, reads, purge."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import orjson

from reflow.domain.executions import ExecutionRecord, ExecutionStatus, StepRecord
from reflow.store import rows
from reflow.store.base import HINTS, Activity, ExecutionQuery
from reflow.store.sqlite._base import Q, _SqliteBase


class ExecutionsMixin(_SqliteBase):
    """Executions: queueing, claims and leases, reads, purge."""

    async def insert_execution(
        self, execution: ExecutionRecord, idempotency_key: str | None = None
    ) -> None:
        """Insert an execution and its steps (and the key that must find it again)."""
        statements: list[tuple[str, Sequence[Any]]] = [
            ("insert_execution", rows.execution_params(execution))
        ]
        statements.extend(("insert_step", rows.step_params(execution.id, s))
                          for s in execution.steps)
        if idempotency_key is not None:
            statements.append(("insert_idempotency_key", (
                execution.team_id, idempotency_key, execution.id, execution.created_at)))
        if execution.status is ExecutionStatus.FAILED:  # failed before its first commit
            statements.append(("error_outbox_insert", rows.error_outbox_params(execution)))
        await self._write_grouped(statements)

    async def find_idempotency_key(self, team_id: str, key: str) -> str | None:
        """The execution an idempotency key was first used for."""
        row = self._one("find_idempotency_key", (team_id, key))
        return None if row is None else str(row[0])

    async def save_execution(
        self, execution: ExecutionRecord, new_steps: Sequence[StepRecord], *, owner: str
    ) -> None:
        """Update an execution and append steps, if ``owner`` holds its lease."""
        e = execution
        # The fenced update first: when the lease is lost, no step of it is written.
        statements: list[tuple[str, Sequence[Any]]] = [("update_execution", (
            e.status.value, e.started_at, e.stopped_at, e.output, e.response_status, e.error,
            e.lease_owner, e.lease_expires, e.resumes, e.id, owner,
        ))]
        statements.extend(("insert_step", rows.step_params(e.id, s)) for s in new_steps)
        if e.status is ExecutionStatus.FAILED:
            statements.append(("error_outbox_insert", rows.error_outbox_params(e)))
        await self._write_grouped(statements)

    async def request_cancel(
        self, team_id: str, execution_id: str, now: int, error: bytes,
        waiting_error: bytes | None = None,
    ) -> ExecutionRecord | None:
        """Cancel a queued or waiting execution, or flag a running one; the execution as it
        is now."""
        with self._transaction() as db:
            db.execute(Q["cancel_queued"], (now, error, team_id, execution_id))
            db.execute(Q["cancel_waiting"], (now, waiting_error or error, team_id,
                                              execution_id))
            db.execute(Q["request_cancel"], (team_id, execution_id))
        return await self.get_execution(team_id, execution_id)

    async def cancel_requests(self, ids: Sequence[str]) -> list[str]:
        """Which of these executions a cancel was requested for."""
        return [r[0] for r in self._all("cancel_requests", (orjson.dumps(list(ids)),))]

    async def claim_executions(
        self, owner: str, now: int, lease_until: int, limit: int
    ) -> list[ExecutionRecord]:
        """Lease queued or abandoned executions, installation by installation from the
        one after the last claim's last (round robin)."""
        found = self._all("claimable_executions", (now, limit, self._claim_cursor))
        if not found:
            return []
        claimed: list[str] = []
        with self._transaction() as db:
            for installation_id, execution_id in found:
                cursor = db.execute(Q["claim_execution"],
                                    (owner, lease_until, now, execution_id, now))
                if cursor.rowcount:
                    claimed.append(execution_id)
                    self._claim_cursor = installation_id
        return self._with_steps(
            [rows.execution_of(r) for i in claimed
             if (r := self._one("get_execution_any_team", (i,)))]
        )

    async def renew_leases(self, owner: str, ids: Sequence[str], lease_until: int) -> list[str]:
        """Extend leases; the ids whose lease is no longer this owner's."""
        with self._transaction() as db:
            kept = {r[0] for r in db.execute(Q["renew_leases"],
                                             (lease_until, orjson.dumps(list(ids)), owner))}
        return [i for i in ids if i not in kept]

    async def listen(
        self, on_hint: Callable[[str, str], None], hints: Collection[str] = HINTS
    ) -> None:
        """Nothing to hear: one process runs executions on a SQLite file, others poll."""

    async def queue_depth(self) -> int:
        """Queued executions (on the unfinished-executions index)."""
        row = self._one("queue_depth", ())
        return int(row[0]) if row else 0

    async def release_leases(self, owner: str, ids: Sequence[str]) -> int:
        """Give back this owner's leases (a graceful stop): claimable, no resume counted."""
        with self._transaction() as db:
            return db.execute(Q["release_leases"], (orjson.dumps(list(ids)), owner)).rowcount

    async def get_execution(self, team_id: str, execution_id: str) -> ExecutionRecord | None:
        """One execution with steps and reruns."""
        row = self._one("get_execution", (team_id, execution_id))
        if row is None:
            return None
        return self._with_steps([rows.execution_of(row)])[0]

    async def get_executions(
        self, team_id: str, execution_ids: Sequence[str], *, steps: bool
    ) -> list[ExecutionRecord]:
        """Executions by id (with steps and reruns when ``steps``)."""
        found = [rows.execution_of(r) for r in self._all(
            "get_executions", (team_id, orjson.dumps(list(execution_ids)).decode()))]
        return self._with_steps(found) if steps else found

    async def execution_status(self, team_id: str, execution_id: str) -> str | None:
        """Just the status."""
        row = self._one("execution_status", (team_id, execution_id))
        return None if row is None else str(row[0])

    async def list_executions(self, query: ExecutionQuery) -> list[ExecutionRecord]:
        """A page of executions."""
        order = "desc" if query.descending else "asc"
        if query.installation_id is not None:
            name, key = f"list_by_installation_{order}", query.installation_id
        else:
            name, key = f"list_by_workflow_{order}", query.workflow_id
        found = self._all(name, (key, query.team_id, int(query.failed_only), query.limit,
                                 query.offset))
        return self._with_steps([rows.execution_of(r) for r in found])

    def _with_steps(self, executions: list[ExecutionRecord]) -> list[ExecutionRecord]:
        if not executions:
            return executions
        by_id = {e.id: e for e in executions}
        ids = orjson.dumps(list(by_id))
        for row in self._all("steps_of_many", (ids,)):
            by_id[row[0]].steps.append(rows.step_of(row))
        for rerun_of, rerun_id in self._all("reruns_of_many", (ids,)):
            by_id[rerun_of].reruns.append(rerun_id)
        return executions

    async def workflow_activity(
        self, team_id: str, workflow_id: str, installation_id: str | None,
        action_blocks: Sequence[str],
    ) -> Activity:
        """Runs, failed runs and action steps, in one query."""
        row = self._one("workflow_activity", (orjson.dumps(list(action_blocks)).decode(),
                                              team_id, workflow_id, installation_id,
                                              installation_id))
        assert row is not None  # an aggregate always answers one row
        return Activity(int(row["runs"]), int(row["errors"]), int(row["actions"]))

    async def purge_executions(self, stopped_before: int, limit: int) -> int:
        """Delete a batch of old finished executions and their steps."""
        return self._purge_ids("purge_batch", (stopped_before, limit))
