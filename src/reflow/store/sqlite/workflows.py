"""SQLite store: workflows and their versions."""

from __future__ import annotations

import sqlite3

from reflow.domain.records import Workflow, WorkflowVersion
from reflow.errors import Conflict
from reflow.store import rows
from reflow.store.sqlite._base import Q, _SqliteBase


class WorkflowsMixin(_SqliteBase):
    """Workflows and their versions."""

    async def create_workflow(self, workflow: Workflow, version: WorkflowVersion) -> None:
        """Insert a workflow and its first version."""
        w, v = workflow, version
        try:
            self._write([
                ("insert_workflow", (w.id, w.team_id, w.name, w.integration, w.latest_version,
                                     w.created_at, w.updated_at)),
                ("insert_version", (v.workflow_id, v.version, v.definition, v.digest,
                                    v.created_at)),
            ])
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"a workflow named {w.name!r} already exists") from exc

    async def add_version(
        self, workflow: Workflow, definition: bytes, digest: str, now: int
    ) -> WorkflowVersion:
        """Append the next version."""
        try:
            with self._transaction() as db:
                row = db.execute(
                    Q["bump_workflow_version"],
                    (now, workflow.name, workflow.integration, workflow.team_id, workflow.id),
                ).fetchone()
                version = WorkflowVersion(workflow.id, int(row[0]), definition, digest, now)
                db.execute(Q["insert_version"], (workflow.id, version.version, definition,
                                                 digest, now))
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"a workflow named {workflow.name!r} already exists") from exc
        return version

    async def get_workflow(self, team_id: str, id_or_name: str) -> Workflow | None:
        """A workflow by id or name."""
        key = id_or_name
        row = self._one("get_workflow", (team_id, key, key, key))
        return rows.workflow_of(row) if row else None

    async def list_workflows(self, team_id: str) -> list[Workflow]:
        """A team's workflows."""
        return [rows.workflow_of(r) for r in self._all("list_workflows", (team_id,))]

    async def get_version(
        self, team_id: str, workflow_id: str, version: int
    ) -> WorkflowVersion | None:
        """One version."""
        row = self._one("get_version", (team_id, workflow_id, version))
        return rows.version_of(row) if row else None

    async def list_versions(self, team_id: str, workflow_id: str) -> list[WorkflowVersion]:
        """Every version."""
        return [rows.version_of(r) for r in self._all("list_versions", (team_id, workflow_id))]
