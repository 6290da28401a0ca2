"""Teams as a deployment holds them: create one with its first key, list them, and keep
each team's expression ``env`` (what its workflows' expressions see as ``env``).

A team's env is the deployment's shared defaults (``REFLOW_EXPRESSION_ENV``, empty unless
the operator sets it) overlaid by the team's own top-level keys: the team's value wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from reflow.domain.records import Team
from reflow.errors import Conflict, InvalidRequest, NotFound
from reflow.services.keys import CreatedKey, KeyService
from reflow.store.base import Store

# A team's env rides in every run's context: keep it small and shallow.
ENV_MAX_BYTES = 64 * 1024
ENV_MAX_DEPTH = 32
TEAM_NAME_MAX = 200
# A change made by another process (the CLI beside `serve`) is seen within this.
_CACHE_SECONDS = 5.0
_CACHE_MAX_TEAMS = 10_000


@dataclass(frozen=True, slots=True)
class CreatedTeam:
    """A new team and its first API key (the raw key is shown this once)."""

    team: Team
    key: CreatedKey


@dataclass(frozen=True, slots=True)
class TeamSummary:
    """A team as ``teams list`` shows it."""

    team: Team
    live_keys: int


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in a JSON value (a scalar is 0)."""
    depth, level = 0, [value]
    while True:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            return depth
        depth += 1
        level = [item for c in containers for item in (c.values() if isinstance(c, dict) else c)]


def encode_env(env: Any) -> bytes:
    """The stored form of an env; InvalidRequest (422) when it is not a small JSON object."""
    if not isinstance(env, dict):
        raise InvalidRequest("env: must be a JSON object")
    if _depth(env) > ENV_MAX_DEPTH:
        raise InvalidRequest(f"env: nested deeper than {ENV_MAX_DEPTH} levels")
    try:
        encoded = orjson.dumps(env)
    except TypeError as exc:
        raise InvalidRequest(f"env: not JSON ({exc})") from None
    if len(encoded) > ENV_MAX_BYTES:
        raise InvalidRequest(
            f"env: {len(encoded)} bytes as JSON, over the limit of {ENV_MAX_BYTES} bytes"
        )
    return encoded


class TeamService:
    """Teams, and the expression env of each."""

    def __init__(
        self,
        store: Store,
        keys: KeyService,
        deployment_env: Mapping[str, Any],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.keys = keys
        self.deployment_env = dict(deployment_env)
        self._clock = clock
        self._cache: dict[str, tuple[float, Mapping[str, Any]]] = {}

    async def create(self, name: str) -> CreatedTeam:
        """A new team with a first API key; a name already used by a team is a Conflict."""
        name = name.strip()
        if not name or len(name) > TEAM_NAME_MAX:
            raise InvalidRequest(f"team name: 1 to {TEAM_NAME_MAX} characters")
        if any(team.name == name for team in await self.store.list_teams()):
            raise Conflict(f"a team named {name!r} already exists")
        team = await self.keys.create_team(name)
        return CreatedTeam(team, await self.keys.create_key(team, "first"))

    async def all(self) -> list[TeamSummary]:
        """Every team, oldest first, with how many live keys it has."""
        summaries = []
        for team in await self.store.list_teams():
            keys = await self.store.list_api_keys(team.id)
            summaries.append(TeamSummary(team, sum(k.revoked_at is None for k in keys)))
        return summaries

    async def find(self, id_or_name: str) -> Team:
        """A team by id, or by name when exactly one team has it."""
        team = await self.store.get_team(id_or_name)
        if team is not None:
            return team
        named = [t for t in await self.store.list_teams() if t.name == id_or_name]
        if not named:
            raise NotFound(f"team {id_or_name!r} not found")
        if len(named) > 1:
            ids = ", ".join(t.id for t in named)
            raise InvalidRequest(f"several teams are named {id_or_name!r} ({ids}): use an id")
        return named[0]

    async def env(self, team: Team) -> dict[str, Any]:
        """The team's own env as it set it (without the deployment's defaults)."""
        stored = await self.store.get_team_env(team.id)
        env: dict[str, Any] = orjson.loads(stored) if stored else {}
        return env

    async def replace_env(self, team: Team, env: Any) -> dict[str, Any]:
        """Replace the team's env with ``env`` (a JSON object of at most 64 KiB)."""
        encoded = encode_env(env)
        if not await self.store.set_team_env(team.id, encoded if env else None):
            raise NotFound(f"team {team.id!r} not found")
        # This process sees the change at once; others within _CACHE_SECONDS.
        self._cache.pop(team.id, None)
        return dict(env)

    async def update_env(
        self,
        team: Team,
        *,
        base: Mapping[str, Any] | None = None,
        set_values: Mapping[str, Any] | None = None,
        unset: Collection[str] = (),
    ) -> dict[str, Any]:
        """Change some keys: start from ``base`` (default: the current env), set
        ``set_values``, remove ``unset``; the result replaces the team's env."""
        both = sorted(set(set_values or {}) & set(unset))
        if both:
            raise InvalidRequest(f"env: {', '.join(both)} both set and unset")
        env = dict(await self.env(team) if base is None else base)
        env.update(set_values or {})
        for key in unset:
            env.pop(key, None)
        return await self.replace_env(team, env)

    async def expression_env(self, team_id: str) -> Mapping[str, Any]:
        """What the team's expressions see as ``env``: the deployment's defaults overlaid
        by the team's own keys (cached for a few seconds per process)."""
        now = self._clock()
        cached = self._cache.get(team_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        stored = await self.store.get_team_env(team_id)
        env = {**self.deployment_env, **orjson.loads(stored)} if stored else self.deployment_env
        if len(self._cache) >= _CACHE_MAX_TEAMS:
            self._cache.clear()
        self._cache[team_id] = (now + _CACHE_SECONDS, env)
        return env
