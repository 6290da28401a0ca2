"""SQLite store: users."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from reflow.domain.records import User
from reflow.errors import Conflict
from reflow.store import rows
from reflow.store.base import unfinished_conflict
from reflow.store.sqlite._base import Q, _SqliteBase


class UsersMixin(_SqliteBase):
    """Users."""

    async def create_user(self, user: User) -> None:
        """Insert a user; a taken username is a Conflict."""
        params = (user.id, user.team_id, user.username, user.full_name, user.created_at)
        try:
            self._write([("insert_user", params)])
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"username {user.username!r} is already taken") from exc

    async def get_user(self, team_id: str, id_or_username: str) -> User | None:
        """A user by id or username."""
        key = id_or_username
        row = self._one("get_user", (team_id, key, key, key))
        return rows.user_of(row) if row else None

    async def get_user_any(self, team_id: str, user_id: str) -> User | None:
        """A user by id, live or deleted."""
        row = self._one("get_user_any", (team_id, user_id))
        return rows.user_of(row) if row else None

    async def list_users(self, team_id: str, workflow_id: str | None = None) -> list[User]:
        """A team's live users, oldest first (only a workflow's, given one)."""
        if workflow_id is None:
            found = self._all("list_users", (team_id,))
        else:
            found = self._all("list_users_of_workflow", (team_id, workflow_id))
        return [rows.user_of(r) for r in found]

    async def taken_usernames(self, team_id: str, usernames: Sequence[str]) -> set[str]:
        """Which of these usernames live users hold."""
        found = self._all("taken_usernames", (team_id, orjson.dumps(list(usernames))))
        return {r[0] for r in found}

    async def create_users(self, users: Sequence[User]) -> None:
        """Insert all the users in one transaction; a taken username is a Conflict."""
        params = [(u.id, u.team_id, u.username, u.full_name, u.created_at) for u in users]
        try:
            with self._transaction() as db:
                db.executemany(Q["insert_user"], params)
        except sqlite3.IntegrityError as exc:
            raise Conflict("a username of the batch is already taken") from exc

    async def update_user(self, user: User) -> bool:
        """Store a live user's username and full name."""
        try:
            with self._transaction() as db:
                cursor = db.execute(Q["update_user"], (user.username, user.full_name,
                                                       user.team_id, user.id))
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"username {user.username!r} is already taken") from exc
        return cursor.rowcount > 0

    async def delete_user(self, team_id: str, user_id: str, now: int) -> bool:
        """Mark a live user deleted and deactivate its installations."""
        with self._transaction() as db:
            if db.execute(Q["delete_user"], (now, team_id, user_id)).rowcount == 0:
                return False
            db.execute(Q["deactivate_user_installations"], (now, team_id, user_id))
            db.execute(Q["credentials_delete_of_user"], (team_id, user_id))
            db.execute(Q["oauth_states_delete_of_user"], (team_id, user_id))
        return True

    async def deactivate_user_installations(self, team_id: str, user_id: str, now: int) -> int:
        """Deactivate a user's active installations."""
        with self._transaction() as db:
            cursor = db.execute(Q["deactivate_user_installations"], (now, team_id, user_id))
        return cursor.rowcount

    async def delete_user_executions(self, team_id: str, user_id: str) -> int:
        """Delete a user's finished executions, steps and keys; Conflict while any runs."""
        params = (team_id, user_id)
        with self._transaction() as db:
            (unfinished,) = db.execute(Q["unfinished_of_user"], params).fetchone()
            if unfinished:
                raise unfinished_conflict(unfinished)
            db.execute(Q["delete_steps_of_user"], params)
            db.execute(Q["delete_idempotency_keys_of_user"], params)
            deleted = db.execute(Q["delete_executions_of_user"], params).rowcount
        if deleted:
            self._db.executescript("PRAGMA incremental_vacuum(256);")
        return deleted
