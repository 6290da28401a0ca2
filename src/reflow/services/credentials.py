"""End users' credentials for apps: stored sealed, listed without a value, bound to runs.

Every value a user gives is sealed as one Fernet token (REFLOW_SECRET_KEY, the keyring of
``reflow.sealing``) before it is written; nothing here returns a value to a caller. A run
gets its credentials as *bindings* (``reflow.domain.apps.binding``): resolved in the
serving process when the run is handed to an executor, applied by the ``http`` block,
never in the expression context, and hidden from every step it records
(docs/credentials.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from reflow import sealing
from reflow.clock import Clock, SystemClock
from reflow.domain.apps import CredentialRecord, Health, binding, unavailable, value_problems
from reflow.domain.executions import ExecutionRecord
from reflow.domain.records import Team
from reflow.engine.compiled import CompiledWorkflow
from reflow.errors import CredentialInvalid, NotFound, Problem
from reflow.ids import new_object_id
from reflow.sealing import SealError
from reflow.services.apps import App, AppService
from reflow.services.oauth import OAuthService, Values, reconnect_reason
from reflow.services.users import UserService
from reflow.store.base import Store

log = logging.getLogger(__name__)

_NO_KEY = ("REFLOW_SECRET_KEY is not set, so credentials cannot be stored encrypted; set "
           "it (`make run` makes one for dev; docs/security.md)")
# What `rotate-key` re-encrypts, in this order (Store.sealed_batch's kinds).
# Every kind of value sealed under REFLOW_SECRET_KEY; "triggers" and "installations" are
# JSON documents with sealed parts (sealing.py), the others one token each.
SEALED_KINDS = ("credentials", "error_stream", "triggers", "installations")
_DOCUMENT_KINDS = ("triggers", "installations")

Bindings = dict[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class Rotated:
    """What a key rotation did to one kind of sealed value."""

    kind: str
    rotated: int = 0  # re-encrypted under the newest key now
    current: int = 0  # already under it (a rotation resumed)
    unreadable: list[str] = field(default_factory=list)  # keys no configured key opens


class CredentialService:
    """Create, list and delete users' credentials; bind them to runs; rotate the key."""

    def __init__(self, store: Store, users: UserService, apps: AppService,
                 keys: MultiFernet | None, clock: Clock | None = None,
                 oauth: OAuthService | None = None) -> None:
        self.store = store
        self.users = users
        self.apps = apps
        self.keys = keys
        self.clock: Clock = clock or SystemClock()
        # Keeps OAuth tokens fresh as they are bound (services/oauth.py).
        self.oauth = oauth

    async def create(self, team: Team, user_ref: str, app_name: Any, data: Any
                     ) -> CredentialRecord:
        """Store a credential of the user for the app; CredentialInvalid names each missing,
        unknown or malformed field (never a value)."""
        user = await self.users.get(team, user_ref)
        if not isinstance(app_name, str) or not app_name:
            raise CredentialInvalid([Problem("credential.type", "required: the app's name")])
        app = await self.apps.find(team.id, app_name)
        if app is None:
            # An app is named like any other id: another team's (or none) is not found.
            raise NotFound(f"app {app_name!r} not found (GET /metadata/credentials lists "
                           "the apps; declare one with POST /apps or `reflow apps apply`)")
        problems = value_problems(app.declaration, data)
        if problems:
            raise CredentialInvalid(problems)
        if self.keys is None:
            raise SealError(_NO_KEY)
        now = self.clock.now_ms()
        expires = data.get("expiresAt")
        record = CredentialRecord(
            id=new_object_id(), team_id=team.id, user_id=user.id, app=app.record.name,
            sealed=self.keys.encrypt(orjson.dumps(dict(data))).decode(),
            created_at=now, updated_at=now, expires_at=expires if isinstance(expires, int)
            else None, app_display_name=app.record.display_name)
        await self.store.create_credential(record)
        log.info("credential %s created for user %s, app %s", record.id, user.id, record.app)
        return record

    async def ensure(self, team: Team, user_ref: str, app_name: str, data: Mapping[str, Any]
                     ) -> tuple[CredentialRecord, bool]:
        """The user's credential for the app holding exactly ``data``: their newest one for
        the app when it does, else a new one (checked as ``create`` checks); with whether
        it was created. What ``serve --demo-credential`` gives the demo user, so a restart
        adds nothing and a changed value takes effect (runs bind the newest)."""
        user = await self.users.get(team, user_ref)
        mine = [c for c in await self.store.list_credentials(team.id, user.id)
                if c.app == app_name]
        if mine and self._open(mine[-1]) == dict(data):
            return mine[-1], False
        return await self.create(team, user.id, app_name, dict(data)), True

    async def of_user(self, team: Team, user_ref: str) -> list[CredentialRecord]:
        """The user's credentials, oldest first (sealed values stay sealed)."""
        user = await self.users.get(team, user_ref)
        return await self.store.list_credentials(team.id, user.id)

    async def delete(self, team: Team, user_ref: str, credential_id: str) -> None:
        """Delete one of the user's credentials; NotFound when the user has none of that id."""
        user = await self.users.get(team, user_ref)
        if not await self.store.delete_credential(team.id, user.id, credential_id):
            raise NotFound(f"credential {credential_id!r} not found for user {user_ref!r}")
        log.info("credential %s of user %s deleted", credential_id, user.id)

    # -- runs ----------------------------------------------------------------------------

    async def bindings(self, record: ExecutionRecord, workflow: CompiledWorkflow) -> Bindings:
        """The credentials a run of this version may use, by app name: the installation's
        pinned credential for the app, else the user's newest. An app that cannot be used
        (undeclared, no credential, unreadable, needs reconnecting) is bound as
        ``unavailable`` with the reason, so the block naming it fails saying why."""
        if not workflow.credentials and not workflow.any_credential:
            return {}
        pinned, found = await self.store.run_credentials(record.team_id, record.user_id,
                                                         record.installation_id)
        names = set(workflow.credentials)
        if workflow.any_credential:  # a templated name: any of the user's apps may be meant
            names.update(c.app for c in found)
        bound: Bindings = {}
        for name in sorted(names):
            bound[name] = await self._bind(record, name, pinned, found)
        return bound

    async def _bind(self, record: ExecutionRecord, name: str, pinned: list[str],
                    found: list[CredentialRecord]) -> dict[str, str]:
        app = await self.apps.find(record.team_id, name)
        if app is None:
            return unavailable(f"no app named {name!r} is declared; declare it (POST /apps "
                               "or `reflow apps apply`) and connect the user's credential")
        candidates = [c for c in found if c.app == name]
        by_id = {c.id: c for c in candidates}
        chosen = next((by_id[i] for i in pinned if i in by_id), None)
        if chosen is None and candidates:
            chosen = candidates[0]
        if chosen is None:
            user = await self.store.get_user_any(record.team_id, record.user_id)
            who = user.username if user is not None else record.user_id
            return unavailable(f"user {who!r} has no credential for app {name!r}; connect "
                               "one (POST /headless/credentials) and rerun")
        oauth = self.oauth if app.declaration.auth.kind.is_oauth else None
        # An OAuth credential past its cool-down may be refreshed once more (oauth.py).
        if chosen.health is Health.NEEDS_RECONNECT and oauth is None:
            return unavailable(reconnect_reason(chosen))
        data = self._open(chosen)
        if isinstance(data, str):
            return unavailable(data)
        if oauth is None:
            return binding(app.declaration, data)
        usable = await oauth.usable(app, chosen, data)
        return _oauth_binding(app, chosen.id, usable)

    async def renew(self, record: ExecutionRecord, name: str,
                    used: Mapping[str, Any]) -> dict[str, str]:
        """The binding to send again after the target answered 401 to ``used`` (an OAuth
        binding): the token refreshed, unless a refresh happened since ``used``'s version
        (then that one's token), or why it cannot be (docs/architecture.md)."""
        app = await self.apps.find(record.team_id, name)
        credential_id, version = used.get("credential"), used.get("version")
        if app is None or self.oauth is None or not isinstance(credential_id, str) \
                or not str(version).isdigit():
            return unavailable(f"the credential for app {name!r} was refused (HTTP 401) and "
                               "cannot be refreshed")
        renewed = await self.oauth.renewed(app, record.team_id, credential_id,
                                           int(str(version)))
        return _oauth_binding(app, credential_id, renewed)

    def _open(self, credential: CredentialRecord) -> Mapping[str, Any] | str:
        """The credential's values, or why they cannot be read."""
        if self.keys is None:
            return (f"credential {credential.id} for app {credential.app!r} is encrypted "
                    "and REFLOW_SECRET_KEY is not set")
        try:
            data = orjson.loads(self.keys.decrypt(credential.sealed.encode()))
        except InvalidToken:
            return (f"credential {credential.id} for app {credential.app!r} was encrypted "
                    "with a key that is no longer in REFLOW_SECRET_KEY; add that key back "
                    "(after the newest)")
        return data if isinstance(data, dict) else {}

    # -- key rotation --------------------------------------------------------------------

    async def rotate_key(
        self, key_text: str | None, *, batch: int = 200,
        progress: Callable[[Rotated], None] | None = None,
    ) -> list[Rotated]:
        """Re-encrypt every sealed value (credentials, error-stream secrets, triggers'
        sealed parts) under the newest key of ``key_text``, ``batch`` at a time, each
        written only if unchanged since read. A value already under the newest key is left
        as it is, so an interrupted rotation resumes where it stopped."""
        if self.keys is None or key_text is None:
            raise SealError("REFLOW_SECRET_KEY is not set: there is no key to rotate to")
        newest = sealing.newest_key(key_text)
        done = []
        for kind in SEALED_KINDS:
            result = await self._rotate_kind(kind, self.keys, newest, batch, progress)
            done.append(result)
        return done

    async def _rotate_kind(
        self, kind: str, keys: MultiFernet, newest: Fernet, batch: int,
        progress: Callable[[Rotated], None] | None,
    ) -> Rotated:
        after, rotated, current, unreadable = "", 0, 0, []
        while True:
            found = await self.store.sealed_batch(kind, after, batch)
            for key, value in found:
                try:
                    new = (sealing.rotate_trigger(value, keys, newest)
                           if kind in _DOCUMENT_KINDS
                           else sealing.rotate_token(value, keys, newest))
                except InvalidToken:
                    unreadable.append(key)
                    continue
                if new is None:
                    current += 1
                elif await self.store.reseal(kind, key, value, new):
                    rotated += 1
                else:
                    # Changed since read (a new value is sealed with the newest key already,
                    # or it was deleted): nothing left to do for it.
                    current += 1
            if found:
                after = found[-1][0]
                if progress is not None:
                    progress(Rotated(kind, rotated, current, list(unreadable)))
            if len(found) < batch:
                return Rotated(kind, rotated, current, unreadable)


def _oauth_binding(app: App, credential_id: str, usable: Values | str) -> dict[str, str]:
    """An OAuth credential's binding: bearer, with the credential and version it holds (so
    a 401 can ask for the token after that one: ``CredentialService.renew``)."""
    if isinstance(usable, str):
        return unavailable(usable)
    version, data = usable
    bound = binding(app.declaration, data)
    if bound.get("type") == "bearer":
        bound |= {"credential": credential_id, "version": str(version)}
    return bound
