"""PostgreSQL store: workflows and their versions."""

from __future__ import annotations

from reflow.domain.records import Workflow, WorkflowVersion
from reflow.store import rows
from reflow.store.postgres._base import Q, _PostgresBase, _translated


class WorkflowsMixin(_PostgresBase):
    """Workflows and their versions."""

    async def create_workflow(self, workflow: Workflow, version: WorkflowVersion) -> None:
        """Insert a workflow and its first version."""
        w, v = workflow, version
        async with self._connection("insert_workflow") as conn, conn.transaction():
            with _translated("insert_workflow", f"a workflow named {w.name!r} already exists"):
                await conn.execute(Q["insert_workflow"], w.id, w.team_id, w.name, w.integration,
                                   w.latest_version, w.created_at, w.updated_at)
                await conn.execute(Q["insert_version"], v.workflow_id, v.version, v.definition,
                                   v.digest, v.created_at)

    async def add_version(
        self, workflow: Workflow, definition: bytes, digest: str, now: int
    ) -> WorkflowVersion:
        """Append the next version."""
        w = workflow
        async with self._connection("add_version") as conn, conn.transaction():
            with _translated("add_version", f"a workflow named {w.name!r} already exists"):
                number = await conn.fetchval(Q["bump_workflow_version"], now, w.name,
                                             w.integration, w.team_id, w.id)
                version = WorkflowVersion(w.id, int(number), definition, digest, now)
                await conn.execute(Q["insert_version"], w.id, version.version, definition,
                                   digest, now)
        return version

    async def get_workflow(self, team_id: str, id_or_name: str) -> Workflow | None:
        """A workflow by id or name (the id wins)."""
        row = await self._fetchrow("get_workflow", team_id, id_or_name)
        return rows.workflow_of(row) if row else None

    async def list_workflows(self, team_id: str) -> list[Workflow]:
        """A team's workflows."""
        return [rows.workflow_of(r) for r in await self._fetch("list_workflows", team_id)]

    async def get_version(
        self, team_id: str, workflow_id: str, version: int
    ) -> WorkflowVersion | None:
        """One version."""
        row = await self._fetchrow("get_version", team_id, workflow_id, version)
        return rows.version_of(row) if row else None

    async def list_versions(self, team_id: str, workflow_id: str) -> list[WorkflowVersion]:
        """Every version."""
        found = await self._fetch("list_versions", team_id, workflow_id)
        return [rows.version_of(r) for r in found]
