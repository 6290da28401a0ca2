"""PostgreSQL store: users."""

from __future__ import annotations

from collections.abc import Sequence

from reflow.domain.records import User
from reflow.errors import InvalidRequest
from reflow.store import rows
from reflow.store.base import unfinished_conflict
from reflow.store.postgres._base import Q, _count, _has_nul, _PostgresBase, _translated


class UsersMixin(_PostgresBase):
    """Users."""

    async def create_user(self, user: User) -> None:
        """Insert a user; a taken username is a Conflict."""
        await self._execute("insert_user", user.id, user.team_id, user.username,
                            user.full_name, user.created_at,
                            conflict=f"username {user.username!r} is already taken")

    async def get_user(self, team_id: str, id_or_username: str) -> User | None:
        """A user by id or username (the id wins)."""
        row = await self._fetchrow("get_user", team_id, id_or_username)
        return rows.user_of(row) if row else None

    async def get_user_any(self, team_id: str, user_id: str) -> User | None:
        """A user by id, live or deleted."""
        row = await self._fetchrow("get_user_any", team_id, user_id)
        return rows.user_of(row) if row else None

    async def list_users(self, team_id: str, workflow_id: str | None = None) -> list[User]:
        """A team's live users, oldest first (only a workflow's, given one)."""
        if workflow_id is None:
            found = await self._fetch("list_users", team_id)
        else:
            found = await self._fetch("list_users_of_workflow", team_id, workflow_id)
        return [rows.user_of(r) for r in found]

    async def taken_usernames(self, team_id: str, usernames: Sequence[str]) -> set[str]:
        """Which of these usernames live users hold."""
        # PostgreSQL text cannot hold NUL, so no stored username has one.
        clean = [u for u in usernames if "\x00" not in u]
        return {r["username"] for r in await self._fetch("taken_usernames", team_id, clean)}

    async def create_users(self, users: Sequence[User]) -> None:
        """Insert all the users in one transaction; a taken username is a Conflict."""
        params = [(u.id, u.team_id, u.username, u.full_name, u.created_at) for u in users]
        if any(_has_nul(p) for p in params):
            raise InvalidRequest("text values may not contain the NUL character (\\u0000)")
        async with self._connection("insert_user") as conn, conn.transaction():
            with _translated("insert_user", "a username of the batch is already taken"):
                await conn.executemany(Q["insert_user"], params)

    async def update_user(self, user: User) -> bool:
        """Store a live user's username and full name."""
        changed = await self._execute("update_user", user.username, user.full_name,
                                      user.team_id, user.id,
                                      conflict=f"username {user.username!r} is already taken")
        return changed > 0

    async def delete_user(self, team_id: str, user_id: str, now: int) -> bool:
        """Mark a live user deleted and deactivate its installations."""
        async with self._connection("delete_user") as conn, conn.transaction():
            if _count(await conn.execute(Q["delete_user"], now, team_id, user_id)) == 0:
                return False
            await conn.execute(Q["deactivate_user_installations"], now, team_id, user_id)
            await conn.execute(Q["credentials_delete_of_user"], team_id, user_id)
            await conn.execute(Q["oauth_states_delete_of_user"], team_id, user_id)
        return True

    async def deactivate_user_installations(self, team_id: str, user_id: str, now: int) -> int:
        """Deactivate a user's active installations."""
        return await self._execute("deactivate_user_installations", now, team_id, user_id)

    async def delete_user_executions(self, team_id: str, user_id: str) -> int:
        """Delete a user's finished executions, steps and keys; Conflict while any runs."""
        if _has_nul((team_id, user_id)):
            return 0
        async with self._connection("delete_user_executions") as conn, conn.transaction():
            unfinished = await conn.fetchval(Q["unfinished_of_user"], team_id, user_id)
            if unfinished:
                raise unfinished_conflict(unfinished)
            found = await conn.fetch(Q["finished_of_user"], team_id, user_id)
            ids = [r["id"] for r in found]
            if ids:
                for name in ("delete_steps_of_many", "delete_idempotency_keys_of_many",
                             "delete_executions_many"):
                    await conn.execute(Q[name], ids)
        return len(ids)
