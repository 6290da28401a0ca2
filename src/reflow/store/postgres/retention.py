"""PostgreSQL store: retention windows and what they purge (services/retention.py)."""

from __future__ import annotations

from collections.abc import Sequence

from reflow.domain.retention import Retention, TeamWindow, WorkflowRetention
from reflow.store import rows
from reflow.store.postgres._base import Q, _has_nul, _PostgresBase


class RetentionMixin(_PostgresBase):
    """Retention windows and what they purge (services/retention.py)."""

    async def set_team_retention(self, team_id: str, window_s: int | None) -> bool:
        """Set the team's window."""
        return await self._execute("retention_set_team", window_s, team_id) > 0

    async def set_workflow_retention(
        self, team_id: str, workflow_id: str, retention: Retention
    ) -> None:
        """Store the workflow's retention."""
        await self._execute("retention_set_workflow", *rows.retention_params(retention),
                            team_id, workflow_id)

    async def retention_policies(self) -> tuple[list[TeamWindow], list[WorkflowRetention]]:
        """Teams' windows and workflows' own retentions."""
        teams = [TeamWindow(r[0], r[1]) for r in await self._fetch("retention_teams")]
        return teams, [rows.workflow_retention_of(r) for r in
                       await self._fetch("retention_workflows")]

    async def purge_team_executions(
        self, team_id: str, stopped_before: int, skip_workflows: Sequence[str], limit: int
    ) -> int:
        """A batch of the team's old finished executions."""
        return await self._purge_ids("retention_team_batch", team_id, stopped_before,
                                     list(skip_workflows), limit)

    async def count_team_executions(
        self, team_id: str, stopped_before: int, skip_workflows: Sequence[str]
    ) -> int:
        """How many the team's purge would delete."""
        row = await self._fetchrow("retention_team_count", team_id, stopped_before,
                                   list(skip_workflows))
        return int(row[0]) if row else 0

    async def purge_workflow_executions(
        self, team_id: str, workflow_id: str, stopped_before: int, limit: int
    ) -> int:
        """A batch of the workflow's old finished executions."""
        return await self._purge_ids("retention_workflow_batch", team_id, workflow_id,
                                     stopped_before, stopped_before, limit)

    async def count_workflow_executions(
        self, team_id: str, workflow_id: str, stopped_before: int
    ) -> int:
        """How many the workflow's purge would delete."""
        row = await self._fetchrow("retention_workflow_count", team_id, workflow_id,
                                   stopped_before, stopped_before)
        return int(row[0]) if row else 0

    async def purge_workflow_excess(
        self, team_id: str, workflow_id: str, keep: int, limit: int
    ) -> int:
        """A batch of the workflow's finished executions beyond its newest ``keep``."""
        boundary = await self._fetchrow("retention_keep_boundary", team_id, workflow_id,
                                        keep - 1)
        if boundary is None:
            return 0
        return await self._purge_ids("retention_excess_batch", team_id, workflow_id,
                                     boundary[0], boundary[1], limit)

    async def count_workflow_excess(self, team_id: str, workflow_id: str, keep: int) -> int:
        """How many the workflow's count would delete."""
        boundary = await self._fetchrow("retention_keep_boundary", team_id, workflow_id,
                                        keep - 1)
        if boundary is None:
            return 0
        row = await self._fetchrow("retention_excess_count", team_id, workflow_id,
                                   boundary[0], boundary[1])
        return int(row[0]) if row else 0

    async def drop_succeeded_steps(
        self, team_id: str, workflow_id: str, since: int, until: int, limit: int
    ) -> tuple[int, int | None]:
        """Delete a batch of succeeded executions' steps."""
        if _has_nul((team_id, workflow_id)):
            return 0, None
        async with self._connection("retention_steps_batch") as conn, conn.transaction():
            found = await conn.fetch(Q["retention_steps_batch"], team_id, since, until,
                                     workflow_id, limit)
            if found:
                await conn.execute(Q["delete_steps_of_many"], [r[0] for r in found])
        return len(found), (found[-1][1] if found else None)

    async def count_succeeded_steps(
        self, team_id: str, workflow_id: str, since: int, until: int
    ) -> int:
        """How many the step pass would strip."""
        row = await self._fetchrow("retention_steps_count", team_id, since, until, workflow_id)
        return int(row[0]) if row else 0

    async def set_steps_cursor(self, team_id: str, workflow_id: str, until: int) -> None:
        """Record how far the step pass went."""
        await self._execute("retention_steps_cursor", until, team_id, workflow_id)

    async def give_back_space(self, pages: int) -> int:
        """Nothing: (auto)vacuum makes deleted rows' space reusable in place."""
        return 0
