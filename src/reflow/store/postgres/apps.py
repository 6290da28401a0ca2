"""PostgreSQL store: apps (apps.sql; services/credentials.py)."""

from __future__ import annotations

from reflow.domain.apps import AppRecord
from reflow.store import rows
from reflow.store.postgres._base import Q, _PostgresBase


class AppsMixin(_PostgresBase):
    """Apps (apps.sql; services/credentials.py)."""

    async def save_app(self, app: AppRecord) -> AppRecord:
        """Insert or update (by name) an app; as stored."""
        async with self._connection("apps_upsert") as conn, conn.transaction():
            row = await conn.fetchrow(Q["apps_upsert"], *rows.app_params(app))
        return rows.app_of(row)

    async def get_app(self, team_id: str, name: str) -> AppRecord | None:
        """The team's app of this name."""
        row = await self._fetchrow("apps_get", team_id, name)
        return rows.app_of(row) if row else None

    async def list_apps(self, team_id: str) -> list[AppRecord]:
        """The team's apps, by name."""
        return [rows.app_of(r) for r in await self._fetch("apps_list", team_id)]
