"""SQLite store: apps (apps.sql; services/credentials.py)."""

from __future__ import annotations

from reflow.domain.apps import AppRecord
from reflow.store import rows
from reflow.store.sqlite._base import Q, _SqliteBase


class AppsMixin(_SqliteBase):
    """Apps (apps.sql; services/credentials.py)."""

    async def save_app(self, app: AppRecord) -> AppRecord:
        """Insert or update (by name) an app; as stored."""
        with self._transaction() as db:
            row = db.execute(Q["apps_upsert"], rows.app_params(app)).fetchone()
        return rows.app_of(row)

    async def get_app(self, team_id: str, name: str) -> AppRecord | None:
        """The team's app of this name."""
        row = self._one("apps_get", (team_id, name))
        return rows.app_of(row) if row else None

    async def list_apps(self, team_id: str) -> list[AppRecord]:
        """The team's apps, by name."""
        return [rows.app_of(r) for r in self._all("apps_list", (team_id,))]
