"""PostgreSQL store: teams and their API keys."""

from __future__ import annotations

from reflow.domain.records import ApiKey, Team
from reflow.store import rows
from reflow.store.postgres._base import Q, _count, _PostgresBase


class TeamsMixin(_PostgresBase):
    """Teams and their API keys."""

    async def count_teams(self) -> int:
        """How many teams exist."""
        row = await self._fetchrow("count_teams")
        return int(row[0])

    async def create_team(self, team: Team) -> None:
        """Insert a team."""
        retention = None if team.log_retention is None else int(team.log_retention)
        await self._execute("insert_team", team.id, team.name, team.created_at, retention)

    async def create_first_team(self, team: Team) -> bool:
        """Insert the team if there is none, under an advisory lock (concurrent bootstraps)."""
        retention = None if team.log_retention is None else int(team.log_retention)
        async with self._connection("insert_first_team") as conn, conn.transaction():
            await conn.execute(Q["lock_bootstrap"])
            status = await conn.execute(Q["insert_first_team"], team.id, team.name,
                                        team.created_at, retention)
        return _count(status) > 0

    async def get_team(self, team_id: str) -> Team | None:
        """A team by id."""
        row = await self._fetchrow("get_team", team_id)
        return rows.team_of(row) if row else None

    async def list_teams(self) -> list[Team]:
        """Every team."""
        return [rows.team_of(r) for r in await self._fetch("list_teams")]

    async def get_team_env(self, team_id: str) -> bytes | None:
        """The team's stored env."""
        row = await self._fetchrow("get_team_env", team_id)
        return None if row is None else row["env"]

    async def set_team_env(self, team_id: str, env: bytes | None) -> bool:
        """Replace the team's env."""
        return await self._execute("set_team_env", env, team_id) > 0

    async def create_api_key(self, key: ApiKey, key_hash: str) -> None:
        """Insert a key."""
        await self._execute("insert_api_key", key.id, key.team_id, key.name, key.prefix,
                            key_hash, key.created_at)

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        """The live key with this hash."""
        row = await self._fetchrow("find_api_key", key_hash)
        return rows.key_of(row) if row else None

    async def list_api_keys(self, team_id: str) -> list[ApiKey]:
        """A team's keys."""
        return [rows.key_of(r) for r in await self._fetch("list_api_keys", team_id)]

    async def revoke_api_key(self, team_id: str, id_or_prefix: str, now: int) -> bool:
        """Revoke a live key (and hint ``revoked`` with its hash to every node)."""
        return bool(await self._fetch("revoke_api_key", now, team_id, id_or_prefix))
