"""SQLite store: teams and their API keys."""

from __future__ import annotations

from reflow.domain.records import ApiKey, Team
from reflow.store import rows
from reflow.store.sqlite._base import Q, _SqliteBase


class TeamsMixin(_SqliteBase):
    """Teams and their API keys."""

    async def count_teams(self) -> int:
        """How many teams exist."""
        row = self._one("count_teams", ())
        return int(row[0]) if row else 0

    async def create_team(self, team: Team) -> None:
        """Insert a team."""
        retention = None if team.log_retention is None else int(team.log_retention)
        self._write([("insert_team", (team.id, team.name, team.created_at, retention))])

    async def get_team(self, team_id: str) -> Team | None:
        """A team by id."""
        row = self._one("get_team", (team_id,))
        return rows.team_of(row) if row else None

    async def list_teams(self) -> list[Team]:
        """Every team."""
        return [rows.team_of(r) for r in self._all("list_teams", ())]

    async def get_team_env(self, team_id: str) -> bytes | None:
        """The team's stored env."""
        row = self._one("get_team_env", (team_id,))
        return None if row is None else row[0]

    async def set_team_env(self, team_id: str, env: bytes | None) -> bool:
        """Replace the team's env."""
        with self._transaction() as db:
            return db.execute(Q["set_team_env"], (env, team_id)).rowcount > 0

    async def create_api_key(self, key: ApiKey, key_hash: str) -> None:
        """Insert a key."""
        params = (key.id, key.team_id, key.name, key.prefix, key_hash, key.created_at)
        self._write([("insert_api_key", params)])

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        """The live key with this hash."""
        row = self._one("find_api_key", (key_hash,))
        return rows.key_of(row) if row else None

    async def list_api_keys(self, team_id: str) -> list[ApiKey]:
        """A team's keys."""
        return [rows.key_of(r) for r in self._all("list_api_keys", (team_id,))]

    async def revoke_api_key(self, team_id: str, id_or_prefix: str, now: int) -> bool:
        """Revoke a live key."""
        cursor = self._execute("revoke_api_key", (now, team_id, id_or_prefix, id_or_prefix))
        return cursor.rowcount > 0

    async def create_first_team(self, team: Team) -> bool:
        """Insert the team if there is none (BEGIN IMMEDIATE serializes bootstraps)."""
        retention = None if team.log_retention is None else int(team.log_retention)
        with self._transaction() as db:
            return db.execute(Q["insert_first_team"], (team.id, team.name, team.created_at,
                                                       retention)).rowcount > 0
