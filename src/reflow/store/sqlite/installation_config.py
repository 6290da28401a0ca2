"""SQLite store: headless installation (installation_config.sql; services/headless.py)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from reflow.domain.records import ConfigChange, HeadlessInstallation, InstallationSettings
from reflow.store import rows
from reflow.store.sqlite._base import Q, _SqliteBase


class InstallationConfigMixin(_SqliteBase):
    """Headless installation (installation_config.sql; services/headless.py)."""

    async def save_headless_installation(self, started: HeadlessInstallation) -> None:
        """Insert or replace (by id) a headless installation, keeping its creation time."""
        self._write([("headless_installation_upsert",
                      rows.headless_installation_params(started))])

    async def get_headless_installation(
        self, team_id: str, installation_id: str
    ) -> HeadlessInstallation | None:
        """The team's headless installation of this id."""
        row = self._one("headless_installation_get", (team_id, installation_id))
        return rows.headless_installation_of(row) if row else None

    async def installation_settings(
        self, team_id: str, installation_ids: Sequence[str]
    ) -> dict[str, InstallationSettings]:
        """Configured values and pinned credentials of live installations, by id."""
        if not installation_ids:
            return {}
        found = self._all("installation_settings",
                          (team_id, orjson.dumps(list(installation_ids)).decode()))
        return {r["id"]: rows.installation_settings_of(r) for r in found}

    async def configure_installations(
        self, team_id: str, changes: Sequence[ConfigChange], now: int
    ) -> int:
        """Write every change in one transaction; how many installations were written."""
        written = 0
        with self._transaction() as db:
            for change in changes:
                cursor = db.execute(Q["installation_configure"],
                                    rows.config_change_params(team_id, change, now))
                written += cursor.rowcount
        return written
