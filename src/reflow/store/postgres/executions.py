"""PostgreSQL store: executions: queueing, claims and leases, reads, purge."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from reflow.domain.executions import ExecutionRecord, ExecutionStatus, StepRecord
from reflow.store import rows
from reflow.store.base import Activity, ExecutionQuery
from reflow.store.postgres._base import Q, Statement, _has_nul, _PostgresBase, _Writer


class ExecutionsMixin(_PostgresBase):
    """Executions: queueing, claims and leases, reads, purge."""

    async def insert_execution(
        self, execution: ExecutionRecord, idempotency_key: str | None = None
    ) -> None:
        """Insert an execution and its steps (and the key that must find it again)."""
        statements: list[Statement] = [("insert_execution", rows.execution_params(execution))]
        statements.extend(("insert_step", rows.step_params(execution.id, s))
                          for s in execution.steps)
        if idempotency_key is not None:
            statements.append(("insert_idempotency_key", (
                execution.team_id, idempotency_key, execution.id, execution.created_at)))
        if execution.status is ExecutionStatus.FAILED:  # failed before its first commit
            statements.append(("error_outbox_insert", rows.error_outbox_params(execution)))
        await self._write_grouped(_Writer(
            None, statements, queued=execution.status is ExecutionStatus.QUEUED))

    async def find_idempotency_key(self, team_id: str, key: str) -> str | None:
        """The execution an idempotency key was first used for."""
        row = await self._fetchrow("find_idempotency_key", team_id, key)
        return None if row is None else str(row[0])

    async def save_execution(
        self, execution: ExecutionRecord, new_steps: Sequence[StepRecord], *, owner: str
    ) -> None:
        """Update an execution and append steps, if ``owner`` holds its lease."""
        e = execution
        fence = (e.status.value, e.started_at, e.stopped_at, e.output, e.response_status,
                 e.error, e.lease_owner, e.lease_expires, e.resumes, e.id, owner)
        statements: list[Statement] = [("insert_step", rows.step_params(e.id, s))
                                       for s in new_steps]
        if e.status is ExecutionStatus.FAILED:
            statements.append(("error_outbox_insert", rows.error_outbox_params(e)))
        await self._write_grouped(_Writer(fence, statements,
                                          finished=e.id if e.finished else None))

    async def request_cancel(
        self, team_id: str, execution_id: str, now: int, error: bytes,
        waiting_error: bytes | None = None,
    ) -> ExecutionRecord | None:
        """Cancel a queued or waiting execution, or flag a running one; the execution as it
        is now."""
        if _has_nul((team_id, execution_id)):
            return None  # no id holds NUL (PostgreSQL text cannot)
        async with self._connection("request_cancel") as conn, conn.transaction():
            await conn.execute(Q["cancel_queued"], now, error, team_id, execution_id)
            await conn.execute(Q["cancel_waiting"], now, waiting_error or error, team_id,
                               execution_id)
            await conn.execute(Q["request_cancel"], team_id, execution_id)
        return await self.get_execution(team_id, execution_id)

    async def cancel_requests(self, ids: Sequence[str]) -> list[str]:
        """Which of these executions a cancel was requested for."""
        return [r["id"] for r in await self._fetch("cancel_requests", list(ids))]

    async def claim_executions(
        self, owner: str, now: int, lease_until: int, limit: int
    ) -> list[ExecutionRecord]:
        """Lease queued or abandoned executions, installation by installation from the
        one after the last claim's last (round robin)."""
        async with self._connection("claim_executions") as conn, conn.transaction():
            await conn.execute(Q["claim_generic_plan"])
            found = await conn.fetch(Q["claim_executions"], owner, lease_until, now, limit,
                                     self._claim_cursor)
            if found:
                self._claim_cursor = found[-1]["installation_id"]
            return await self._with_steps(conn, [rows.execution_of(r) for r in found])

    async def release_leases(self, owner: str, ids: Sequence[str]) -> int:
        """Give back this owner's leases (a graceful stop): claimable, no resume counted."""
        return await self._execute("release_leases", list(ids), owner)

    async def renew_leases(self, owner: str, ids: Sequence[str], lease_until: int) -> list[str]:
        """Extend leases; the ids whose lease is no longer this owner's."""
        kept = {r["id"] for r in await self._fetch("renew_leases", lease_until, list(ids),
                                                    owner)}
        return [i for i in ids if i not in kept]

    async def queue_depth(self) -> int:
        """Queued executions (on the unfinished-executions partial index)."""
        row = await self._fetchrow("queue_depth")
        return int(row[0])

    async def get_execution(self, team_id: str, execution_id: str) -> ExecutionRecord | None:
        """One execution with steps and reruns."""
        if _has_nul((team_id, execution_id)):
            return None  # no id holds NUL (PostgreSQL text cannot)
        async with self._connection("get_execution") as conn:
            row = await conn.fetchrow(Q["get_execution"], team_id, execution_id)
            if row is None:
                return None
            return (await self._with_steps(conn, [rows.execution_of(row)]))[0]

    async def get_executions(
        self, team_id: str, execution_ids: Sequence[str], *, steps: bool
    ) -> list[ExecutionRecord]:
        """Executions by id (with steps and reruns when ``steps``)."""
        async with self._connection("get_executions") as conn:
            found = [rows.execution_of(r) for r in await conn.fetch(
                Q["get_executions"], team_id, list(execution_ids))]
            return await self._with_steps(conn, found) if steps else found

    async def execution_status(self, team_id: str, execution_id: str) -> str | None:
        """Just the status."""
        row = await self._fetchrow("execution_status", team_id, execution_id)
        return None if row is None else str(row["status"])

    async def list_executions(self, query: ExecutionQuery) -> list[ExecutionRecord]:
        """A page of executions."""
        order = "desc" if query.descending else "asc"
        if query.installation_id is not None:
            name, key = f"list_by_installation_{order}", query.installation_id
        else:
            name, key = f"list_by_workflow_{order}", query.workflow_id
        async with self._connection(name) as conn:
            found = await conn.fetch(Q[name], key, query.team_id, query.failed_only,
                                     query.limit, query.offset)
            return await self._with_steps(conn, [rows.execution_of(r) for r in found])

    @staticmethod
    async def _with_steps(
        conn: asyncpg.Connection, executions: list[ExecutionRecord]
    ) -> list[ExecutionRecord]:
        if not executions:
            return executions
        by_id = {e.id: e for e in executions}
        ids = list(by_id)
        for row in await conn.fetch(Q["steps_of_many"], ids):
            by_id[row["execution_id"]].steps.append(rows.step_of(row))
        for row in await conn.fetch(Q["reruns_of_many"], ids):
            by_id[row["rerun_of"]].reruns.append(row["id"])
        return executions

    async def workflow_activity(
        self, team_id: str, workflow_id: str, installation_id: str | None,
        action_blocks: Sequence[str],
    ) -> Activity:
        """Runs, failed runs and action steps, in one query."""
        row = await self._fetchrow("workflow_activity", list(action_blocks), team_id,
                                   workflow_id, installation_id)
        assert row is not None  # an aggregate always answers one row
        return Activity(int(row["runs"]), int(row["errors"]), int(row["actions"]))

    async def purge_executions(self, stopped_before: int, limit: int) -> int:
        """Delete a batch of old finished executions with their steps and keys.

        The batch is locked with SKIP LOCKED, so nodes purging at once take different ones.
        """
        return await self._purge_ids("purge_batch", stopped_before, limit)
