"""SQLite store: installations (a user's use of a workflow), deleted and revived."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from reflow.domain.records import Installation
from reflow.store import rows
from reflow.store.base import unfinished_conflict
from reflow.store.sqlite._base import Q, _SqliteBase


class InstallationsMixin(_SqliteBase):
    """Installations (a user's use of a workflow), deleted and revived."""

    async def get_installation(
        self, team_id: str, workflow_id: str, user_id: str
    ) -> Installation | None:
        """A user's installation of a workflow."""
        row = self._one("get_installation", (team_id, workflow_id, user_id))
        return rows.installation_of(row) if row else None

    async def get_installation_by_id(
        self, team_id: str, installation_id: str
    ) -> Installation | None:
        """An installation by id."""
        row = self._one("get_installation_by_id", (team_id, installation_id))
        return rows.installation_of(row) if row else None

    async def get_installations(
        self, team_id: str, installation_ids: Sequence[str]
    ) -> list[Installation]:
        """Live installations by id."""
        found = self._all("get_installations",
                          (team_id, orjson.dumps(list(installation_ids)).decode()))
        return [rows.installation_of(r) for r in found]

    async def list_installations(
        self, team_id: str, *, user_id: str | None = None, workflow_id: str | None = None
    ) -> list[Installation]:
        """A team's installations (a user's, a workflow's)."""
        found = self._all("list_installations",
                          (team_id, user_id, user_id, workflow_id, workflow_id))
        return [rows.installation_of(r) for r in found]

    async def save_installation(self, installation: Installation) -> None:
        """Insert or update an installation."""
        i = installation
        self._write([("upsert_installation", (i.id, i.team_id, i.workflow_id, i.user_id,
                                              i.installed_version, i.active, i.installed_at,
                                              i.updated_at))])

    async def install(self, installation: Installation) -> Installation:
        """Insert or revive an installation; the live one when there is one already."""
        i = installation
        with self._transaction() as db:
            row = db.execute(Q["integrations_install"], (
                i.id, i.team_id, i.workflow_id, i.user_id, i.installed_version, i.active,
                i.installed_at, i.updated_at)).fetchone()
        if row is not None:
            return rows.installation_of(row)
        live = await self.get_installation(i.team_id, i.workflow_id, i.user_id)
        assert live is not None  # the conflict was with a live row, never deleted here
        return live

    async def delete_installation(self, team_id: str, installation_id: str, now: int) -> bool:
        """Mark a live installation deleted; Conflict while any of its runs is unfinished."""
        with self._transaction() as db:
            (unfinished,) = db.execute(Q["integrations_unfinished_of_installation"],
                                       (team_id, installation_id)).fetchone()
            if unfinished:
                raise unfinished_conflict(unfinished, "this installation")
            cursor = db.execute(Q["integrations_delete_installation"],
                                (now, now, team_id, installation_id))
        return cursor.rowcount > 0

    async def get_deleted_installation(
        self, team_id: str, *, installation_id: str | None = None,
        workflow_id: str | None = None, user_id: str | None = None,
    ) -> Installation | None:
        """A deleted installation by id, or by workflow and user."""
        row = self._one("integrations_get_deleted_installation",
                        (team_id, installation_id, workflow_id, user_id))
        return rows.installation_of(row) if row else None
