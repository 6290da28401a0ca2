"""End users of a team's product."""

from __future__ import annotations

import re

from reflow.domain.records import Team, User
from reflow.errors import InvalidRequest, NotFound
from reflow.ids import new_object_id, now_ms
from reflow.store.base import Store

_USERNAME = re.compile(r"\S(.{0,198}\S)?")


class UserService:
    """Create and look up users (by id or username)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, team: Team, username: str, full_name: str | None) -> User:
        """A new user; a taken username is a Conflict."""
        if not _USERNAME.fullmatch(username):
            raise InvalidRequest(
                "username: must be 1 to 200 characters without leading or trailing spaces"
            )
        user = User(new_object_id(), team.id, username, full_name, now_ms())
        await self.store.create_user(user)
        return user

    async def get(self, team: Team, id_or_username: str) -> User:
        """A user by id or username; NotFound otherwise."""
        user = await self.store.get_user(team.id, id_or_username)
        if user is None:
            raise NotFound(f"user {id_or_username!r} not found")
        return user
