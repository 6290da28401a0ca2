"""Apps a team's users connect: declared from files or ``POST /apps``, read by the
credentials service and the metadata endpoints (docs/credentials.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from reflow.clock import Clock, SystemClock
from reflow.domain.apps import AppDeclaration, AppRecord, app_from_document, app_json
from reflow.domain.records import Team
from reflow.errors import NotFound
from reflow.ids import new_object_id
from reflow.store.base import Store

# A run reads its apps' declarations; they change only when applied, so each process
# keeps them this long (an apply made here clears them at once).
_CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class App:
    """A stored app and its declaration."""

    record: AppRecord
    declaration: AppDeclaration


@dataclass(frozen=True, slots=True)
class AppliedApp:
    """What storing a declaration did."""

    app: App
    created: bool  # False when an app of that name existed
    changed: bool  # False when the declaration equals what was stored (nothing written)


def _app(record: AppRecord) -> App:
    # Stored declarations were checked when applied; reading one builds the parsed form.
    return App(record, app_from_document(orjson.loads(record.definition)))


class AppService:
    """Declare, list and find a team's apps."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self._cache: dict[tuple[str, str], tuple[float, App | None]] = {}

    async def apply(self, team: Team, declared: AppDeclaration) -> AppliedApp:
        """Create the app the declaration names, or update it to the declaration (the
        declaration is the whole truth: a key left out takes its default)."""
        definition = orjson.dumps(app_json(declared), option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(definition).hexdigest()
        existing = await self.store.get_app(team.id, declared.name)
        if existing is not None and existing.digest == digest:
            return AppliedApp(App(existing, declared), created=False, changed=False)
        now, new_id = self.clock.now_ms(), new_object_id()
        stored = await self.store.save_app(AppRecord(
            new_id, team.id, declared.name, declared.display_name, declared.auth.kind.value,
            declared.icon, definition, digest, now, now))
        self._cache.pop((team.id, declared.name), None)
        # An update keeps the stored id (also when another request created it meanwhile).
        return AppliedApp(App(stored, declared), created=stored.id == new_id, changed=True)

    async def get(self, team: Team, name: str) -> App:
        """The team's app of this name; NotFound otherwise."""
        app = await self.find(team.id, name)
        if app is None:
            raise NotFound(f"app {name!r} not found")
        return app

    async def find(self, team_id: str, name: str) -> App | None:
        """The team's app of this name (cached for a few seconds), or None."""
        now = self.clock.now_ms() / 1000
        cached = self._cache.get((team_id, name))
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await self.store.get_app(team_id, name)
        app = None if record is None else _app(record)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[team_id, name] = (now + _CACHE_SECONDS, app)
        return app

    async def all(self, team: Team) -> list[App]:
        """The team's apps, by name."""
        return [_app(r) for r in await self.store.list_apps(team.id)]
