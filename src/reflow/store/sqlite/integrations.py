"""SQLite store: integrations (services/integrations.py, integrations.sql)."""

from __future__ import annotations

from reflow.domain.records import Integration
from reflow.store import rows
from reflow.store.sqlite._base import Q, _SqliteBase


class IntegrationsMixin(_SqliteBase):
    """Integrations (services/integrations.py, integrations.sql)."""

    async def save_integration(self, integration: Integration) -> Integration:
        """Insert or update (by name) an integration; as stored."""
        i = integration
        with self._transaction() as db:
            row = db.execute(Q["integrations_upsert"], (
                i.id, i.team_id, i.name, i.app, i.description, i.icon, i.created_at,
                i.updated_at)).fetchone()
        return rows.integration_of(row)

    async def ensure_integration(self, integration: Integration) -> None:
        """Insert an integration unless its name is taken."""
        i = integration
        self._write([("integrations_insert_default", (
            i.id, i.team_id, i.name, i.app, i.description, i.icon, i.created_at,
            i.updated_at))])

    async def get_integration(self, team_id: str, id_or_name: str) -> Integration | None:
        """An integration by id or name."""
        key = id_or_name
        row = self._one("integrations_get", (team_id, key, key, key))
        return rows.integration_of(row) if row else None

    async def list_integrations(self, team_id: str) -> list[Integration]:
        """A team's integrations."""
        return [rows.integration_of(r) for r in self._all("integrations_list", (team_id,))]
