"""Teams and API keys: bootstrap, create, list, revoke, and authenticate a request."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from reflow.domain.records import ApiKey, Team
from reflow.errors import InvalidRequest, NotFound, Unauthorized
from reflow.ids import new_object_id, now_ms
from reflow.store.base import Store

KEY_PREFIX = "rf_"
_DISPLAY_PREFIX = 10
# Keys are verified from a short cache: a revoked key stops working everywhere within this.
_CACHE_SECONDS = 5.0


def hash_key(raw: str) -> str:
    """The stored form of a key (keys are random, so a fast hash is enough)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_key() -> str:
    """A new random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(30)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A key as created: the raw value is shown this once and never stored."""

    key: ApiKey
    raw: str


class KeyService:
    """Teams and their keys."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[float, Team]] = {}

    async def create_team(self, name: str) -> Team:
        """A new team."""
        team = Team(new_object_id(), name, now_ms())
        await self.store.create_team(team)
        return team

    async def create_first_team(self, name: str) -> Team | None:
        """A new team when the database has none yet; None when one exists (another
        process bootstrapping the same new database may have made it just now)."""
        team = Team(new_object_id(), name, now_ms())
        return team if await self.store.create_first_team(team) else None

    async def first_team(self) -> Team | None:
        """The oldest team (the one ``serve`` bootstraps and the CLI defaults to)."""
        teams = await self.store.list_teams()
        return teams[0] if teams else None

    async def team(self, team_id: str | None) -> Team:
        """A team by id, or the first team when ``team_id`` is None."""
        team = await (self.store.get_team(team_id) if team_id else self.first_team())
        if team is None:
            raise NotFound(f"team {team_id!r} not found" if team_id else "no team yet")
        return team

    async def create_key(self, team: Team, name: str, raw: str | None = None) -> CreatedKey:
        """A new key for a team (``raw`` to choose its value, e.g. a bootstrap key)."""
        raw = raw or generate_key()
        if len(raw) < 16:
            raise InvalidRequest("an API key must be at least 16 characters long")
        key = ApiKey(new_object_id(), team.id, name, raw[:_DISPLAY_PREFIX], now_ms())
        await self.store.create_api_key(key, hash_key(raw))
        return CreatedKey(key, raw)

    async def list_keys(self, team: Team) -> list[ApiKey]:
        """A team's keys (prefixes only)."""
        return await self.store.list_api_keys(team.id)

    async def revoke_key(self, team: Team, id_or_prefix: str) -> None:
        """Revoke a key by id or prefix."""
        if not await self.store.revoke_api_key(team.id, id_or_prefix, now_ms()):
            raise NotFound(f"no live API key {id_or_prefix!r}")
        self._cache.clear()

    def forget(self, key_hash: str) -> None:
        """Drop a cached key at once (another process revoked it: a ``revoked`` hint)."""
        self._cache.pop(key_hash, None)

    async def is_valid(self, raw: str) -> bool:
        """True when the raw key authenticates."""
        try:
            await self.authenticate(raw)
        except Unauthorized:
            return False
        return True

    async def authenticate(self, raw: str) -> Team:
        """The team a raw key belongs to; Unauthorized when unknown or revoked."""
        digest = hash_key(raw)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        # Found by the SHA-256 of the key, through an index: the comparison an attacker
        # could time is of digests, which reveals nothing about the key itself.
        key = await self.store.find_api_key(digest)
        if key is None:
            raise Unauthorized()
        team = await self.store.get_team(key.team_id)
        if team is None:
            raise Unauthorized()
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + _CACHE_SECONDS, team)
        return team
