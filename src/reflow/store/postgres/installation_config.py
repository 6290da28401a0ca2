"""PostgreSQL store: headless installation (installation_config.sql; services/headless.py)."""

from __future__ import annotations

from collections.abc import Sequence

from reflow.domain.records import ConfigChange, HeadlessInstallation, InstallationSettings
from reflow.store import rows
from reflow.store.postgres._base import Q, _count, _PostgresBase


class InstallationConfigMixin(_PostgresBase):
    """Headless installation (installation_config.sql; services/headless.py)."""

    async def save_headless_installation(self, started: HeadlessInstallation) -> None:
        """Insert or replace (by id) a headless installation, keeping its creation time."""
        await self._execute("headless_installation_upsert",
                            *rows.headless_installation_params(started))

    async def get_headless_installation(
        self, team_id: str, installation_id: str
    ) -> HeadlessInstallation | None:
        """The team's headless installation of this id."""
        row = await self._fetchrow("headless_installation_get", team_id, installation_id)
        return rows.headless_installation_of(row) if row else None

    async def installation_settings(
        self, team_id: str, installation_ids: Sequence[str]
    ) -> dict[str, InstallationSettings]:
        """Configured values and pinned credentials of live installations, by id."""
        if not installation_ids:
            return {}
        found = await self._fetch("installation_settings", team_id, list(installation_ids))
        return {r["id"]: rows.installation_settings_of(r) for r in found}

    async def configure_installations(
        self, team_id: str, changes: Sequence[ConfigChange], now: int
    ) -> int:
        """Write every change in one transaction; how many installations were written."""
        # JSON text from orjson holds no raw NUL (it is escaped), so none is refused.
        params = [rows.config_change_params(team_id, c, now) for c in changes]
        written = 0
        async with (self._connection("installation_configure") as conn,
                    conn.transaction()):
            for args in params:
                written += _count(await conn.execute(Q["installation_configure"], *args))
        return written
