"""SQLite store: retention windows and what they purge (services/retention.py)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from reflow.domain.retention import Retention, TeamWindow, WorkflowRetention
from reflow.store import rows
from reflow.store.sqlite._base import Q, _SqliteBase


class RetentionMixin(_SqliteBase):
    """Retention windows and what they purge (services/retention.py)."""

    async def give_back_space(self, pages: int) -> int:
        """Give up to ``pages`` free pages back to the file system when more than a quarter
        of the file is free; how many it gave back."""
        page_count, free = (self._db.execute(f"PRAGMA {name}").fetchone()[0]
                            for name in ("page_count", "freelist_count"))
        if free * 4 <= page_count:
            return 0  # the next inserts reuse them: giving them back would be undone
        # executescript: execute() steps this pragma once, which frees a single page.
        self._db.executescript(f"PRAGMA incremental_vacuum({int(pages)});")
        return int(page_count - self._db.execute("PRAGMA page_count").fetchone()[0])

    async def set_team_retention(self, team_id: str, window_s: int | None) -> bool:
        """Set the team's window."""
        with self._transaction() as db:
            return db.execute(Q["retention_set_team"], (window_s, team_id)).rowcount > 0

    async def set_workflow_retention(
        self, team_id: str, workflow_id: str, retention: Retention
    ) -> None:
        """Store the workflow's retention."""
        params = (*rows.retention_params(retention), team_id, workflow_id)
        self._write([("retention_set_workflow", params)])

    async def retention_policies(self) -> tuple[list[TeamWindow], list[WorkflowRetention]]:
        """Teams' windows and workflows' own retentions."""
        teams = [TeamWindow(r[0], r[1]) for r in self._all("retention_teams", ())]
        return teams, [rows.workflow_retention_of(r) for r in
                       self._all("retention_workflows", ())]

    async def purge_team_executions(
        self, team_id: str, stopped_before: int, skip_workflows: Sequence[str], limit: int
    ) -> int:
        """A batch of the team's old finished executions."""
        skip = orjson.dumps(list(skip_workflows))
        return self._purge_ids("retention_team_batch", (team_id, stopped_before, skip, limit))

    async def count_team_executions(
        self, team_id: str, stopped_before: int, skip_workflows: Sequence[str]
    ) -> int:
        """How many the team's purge would delete."""
        skip = orjson.dumps(list(skip_workflows))
        row = self._one("retention_team_count", (team_id, stopped_before, skip))
        return int(row[0]) if row else 0

    async def purge_workflow_executions(
        self, team_id: str, workflow_id: str, stopped_before: int, limit: int
    ) -> int:
        """A batch of the workflow's old finished executions."""
        return self._purge_ids("retention_workflow_batch",
                               (team_id, workflow_id, stopped_before, stopped_before, limit))

    async def count_workflow_executions(
        self, team_id: str, workflow_id: str, stopped_before: int
    ) -> int:
        """How many the workflow's purge would delete."""
        row = self._one("retention_workflow_count",
                        (team_id, workflow_id, stopped_before, stopped_before))
        return int(row[0]) if row else 0

    async def purge_workflow_excess(
        self, team_id: str, workflow_id: str, keep: int, limit: int
    ) -> int:
        """A batch of the workflow's finished executions beyond its newest ``keep``."""
        boundary = self._one("retention_keep_boundary", (team_id, workflow_id, keep - 1))
        if boundary is None:
            return 0
        return self._purge_ids("retention_excess_batch",
                               (team_id, workflow_id, boundary[0], boundary[1], limit))

    async def count_workflow_excess(self, team_id: str, workflow_id: str, keep: int) -> int:
        """How many the workflow's count would delete."""
        boundary = self._one("retention_keep_boundary", (team_id, workflow_id, keep - 1))
        if boundary is None:
            return 0
        row = self._one("retention_excess_count",
                        (team_id, workflow_id, boundary[0], boundary[1]))
        return int(row[0]) if row else 0

    async def drop_succeeded_steps(
        self, team_id: str, workflow_id: str, since: int, until: int, limit: int
    ) -> tuple[int, int | None]:
        """Delete a batch of succeeded executions' steps."""
        with self._transaction() as db:
            found = db.execute(Q["retention_steps_batch"],
                               (team_id, since, until, workflow_id, limit)).fetchall()
            if found:
                db.execute(Q["delete_steps_of_many"], (orjson.dumps([r[0] for r in found]),))
        return len(found), (found[-1][1] if found else None)

    async def count_succeeded_steps(
        self, team_id: str, workflow_id: str, since: int, until: int
    ) -> int:
        """How many the step pass would strip."""
        row = self._one("retention_steps_count", (team_id, since, until, workflow_id))
        return int(row[0]) if row else 0

    async def set_steps_cursor(self, team_id: str, workflow_id: str, until: int) -> None:
        """Record how far the step pass went."""
        self._write([("retention_steps_cursor", (until, team_id, workflow_id))])
