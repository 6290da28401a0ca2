"""OAuth: the connect flow, and tokens kept fresh with one refresh at a time.

- **Connect** (``authorize_url``, ``callback``): the authorize URL carries a ``state``
  that is a Fernet token (REFLOW_SECRET_KEY: signed, and timestamped so it expires after
  ``STATE_TTL``) holding the team, user, app, PKCE verifier and where to send the browser
  back. Only its SHA-256 is stored (``oauth_states``), and the callback deletes that row
  before using it: a replayed state finds nothing, a forged one fails the signature. The
  code is exchanged at the app's token URL and the tokens stored as the user's credential
  for the app (the newest one's values replaced, healthy again).
- **Refresh** (``usable``): a credential whose access token expires within
  ``REFRESH_MARGIN`` (or that a target answered 401 with: ``renewed``) is refreshed by the
  one caller that takes the lease on its row (a conditional UPDATE: free or lapsed lease,
  the version read, no cool-down); every other caller, in any process, polls the row until
  its version moves and uses the result. The new access token and the rotated refresh
  token are written in one UPDATE, under the lease and the version read.
- **Refused** refreshes (400 invalid_grant and the like, 401, 403) mark the credential
  ``needs_reconnect``: runs that need it fail saying so, no refresh is tried during a
  cool-down (``COOL_DOWN_FIRST``, doubling with each refused attempt up to
  ``COOL_DOWN_MAX``), and the team is told once: a ``credential.needs_reconnect`` event
  and, when it streams errors, a notification in the error stream's outbox (same
  transaction). Connecting again makes it healthy.
- **Client credentials** apps get their token the same way, with the client credentials
  grant instead of a refresh token.

docs/credentials.md "OAuth" is the user's guide; docs/architecture.md "Credentials in
runs" the 401 path.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson
from cryptography.fernet import InvalidToken

from reflow.blocks.http import HttpClients, HttpPolicy, create_http_clients
from reflow.clock import Clock
from reflow.domain.apps import AuthKind, CredentialRecord, Health, Reference
from reflow.domain.records import Team
from reflow.errors import BadRequest, InvalidRequest, NotFound, ReflowError
from reflow.ids import new_object_id
from reflow.sealing import SealError
from reflow.services.apps import App, AppService
from reflow.services.logs import iso
from reflow.services.users import UserService
from reflow.settings import Settings
from reflow.store.base import CredentialEvent, Store

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

log = logging.getLogger(__name__)

CALLBACK_PATH = "/oauth/callback"
STATE_TTL = 600  # seconds a connect flow may take, authorize to callback
REFRESH_MARGIN = 60_000  # ms: a token expiring sooner than this is refreshed first
LEASE = 30_000  # ms: a refresh taking longer loses its lease (another may take it)
WAIT = 30.0  # s: how long a caller waits for another's refresh
COOL_DOWN_FIRST = 15 * 60_000  # ms: no refresh after a refused one, doubling each time
COOL_DOWN_MAX = 24 * 3_600_000
PASSING_COOL_DOWN = 30_000  # ms: after a failure that may pass (5xx, no answer)
TOKEN_TIMEOUT = 15.0  # s: a token request
_MAX_TOKEN_RESPONSE = 64 * 1024
# Token endpoint errors that say the grant (or the client) is no good: reconnect.
_REFUSALS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client",
                       "invalid_scope", "invalid_request", "access_denied"})
_EVENTS_LIMIT = 1_000

# A credential's version and its values (opened).
Values = tuple[int, Mapping[str, Any]]

NEEDS_RECONNECT = "credential.needs_reconnect"
CONNECTED = "credential.connected"
RECONNECTED = "credential.reconnected"


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """Where the callback sends the browser (``redirect``), or, with no redirect URL
    configured, what it answers: ``status`` and ``message``/``credential_id``."""

    redirect: str | None
    success: bool
    message: str
    credential_id: str | None = None


class _Refused(Exception):
    """The token endpoint refused the grant: only a new connection helps."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Failed(Exception):
    """A token request that failed for a reason that may pass (no answer, 5xx, 429)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def cool_down(failures: int) -> int:
    """Milliseconds without a refresh after ``failures`` refused ones in a row."""
    return int(min(COOL_DOWN_FIRST * 2 ** min(max(failures - 1, 0), 20), COOL_DOWN_MAX))


def reconnect_reason(credential: CredentialRecord) -> str:
    """The error a run needing this credential fails with."""
    why = f" ({credential.health_reason})" if credential.health_reason else ""
    return (f"credential {credential.id} for app {credential.app!r} needs to be "
            f"reconnected{why}")


class OAuthService:
    """Connect users' OAuth credentials and keep their tokens fresh."""

    def __init__(self, store: Store, users: UserService, apps: AppService, settings: Settings,
                 keys: MultiFernet | None, clock: Clock,
                 environ: Mapping[str, str],
                 notified: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.users = users
        self.apps = apps
        self.settings = settings
        self.keys = keys
        self.clock = clock
        # Where {env: NAME} references of app declarations are read: the deployment's
        # environment, looked up when a token is requested.
        self.environ = environ
        self._http: HttpClients | None = None
        # Called after a credential notification is committed (Reflow wakes the stream).
        self.notified = notified

    # -- the team's redirect URL ------------------------------------------------------------

    async def redirect_url(self, team: Team) -> str | None:
        """Where the team's callback sends the user's browser back (None: not set)."""
        return await self.store.get_oauth_redirect(team.id)

    async def set_redirect_url(self, team: Team, url: str | None) -> str | None:
        """Set (None: clear) where the callback sends the user's browser back."""
        checked = None if url is None else _redirect_problem_free(url)
        if not await self.store.set_oauth_redirect(team.id, checked):
            raise NotFound(f"team {team.id!r} not found")
        return checked

    # -- connect ----------------------------------------------------------------------------

    async def authorize_url(self, team: Team, user_ref: str, app_name: str | None,
                            redirect_uri: str | None = None) -> str:
        """The URL to send the user to for connecting the app (authorization code, PKCE
        S256), with a signed, expiring, single-use state."""
        user = await self.users.get(team, user_ref)
        if not app_name:
            raise InvalidRequest("app: required (the app's name)")
        app = await self._oauth_app(team, app_name, AuthKind.OAUTH2)
        auth = app.declaration.auth
        client_id = self._reference(app, "clientId", auth.client_id, {})
        redirect = await self._redirect_for(team, redirect_uri)
        keys = self._keys()
        verifier = secrets.token_urlsafe(48)
        now = self.clock.now_ms()
        payload = {"n": secrets.token_urlsafe(16), "t": team.id, "u": user.id,
                   "a": app.record.name, "v": verifier, "r": redirect}
        state = keys.encrypt_at_time(orjson.dumps(payload), now // 1000).decode()
        await self.store.insert_oauth_state(team.id, _hash(state), user.id, app.record.name,
                                            now, now + STATE_TTL * 1000)
        query = {"response_type": "code", "client_id": client_id,
                 "redirect_uri": self.callback_url(), "state": state}
        if auth.scopes:
            query["scope"] = " ".join(auth.scopes)
        if auth.pkce:
            query |= {"code_challenge": _challenge(verifier), "code_challenge_method": "S256"}
        separator = "&" if urlsplit(auth.authorize_url or "").query else "?"
        return f"{auth.authorize_url}{separator}{urlencode(query)}"

    def callback_url(self) -> str:
        """reflow's callback as the provider calls it back (REFLOW_PUBLIC_URL)."""
        return self.settings.public_base_url + CALLBACK_PATH

    async def callback(self, state: str | None, code: str | None, error: str | None,
                       error_description: str | None) -> CallbackResult:
        """Finish a connect flow: check and use up the state, exchange the code, store the
        tokens; where to send the browser with the outcome. A 400 for a state
        that is missing, forged, expired or used already (BadRequest)."""
        payload = await self._take_state(state)
        team_id, user_id, app_name = payload["t"], payload["u"], payload["a"]
        redirect = payload.get("r") or await self.store.get_oauth_redirect(team_id)
        where = {"app": app_name, "userId": user_id}
        if error:
            reason = f"the user or the app refused the connection ({error})"
            if error_description:
                reason += f": {error_description[:200]}"
            log.info("oauth: user %s, app %s: provider answered %s", user_id, app_name, error)
            return _outcome(redirect, False, reason, {**where, "error": error})
        if not code:
            return _outcome(redirect, False, "the provider sent no code",
                            {**where, "error": "missing_code"})
        app = await self.apps.find(team_id, app_name)
        if app is None or app.declaration.auth.kind is not AuthKind.OAUTH2:
            return _outcome(redirect, False, f"app {app_name!r} is no longer an OAuth app",
                            {**where, "error": "app_changed"})
        try:
            tokens = await self._token(app, team_id, {
                "grant_type": "authorization_code", "code": code,
                "redirect_uri": self.callback_url(), "code_verifier": payload["v"]}, {})
        except (_Refused, _Failed) as exc:
            reason = exc.reason
            log.warning("oauth: user %s, app %s: the code exchange failed: %s", user_id,
                        app_name, reason)
            return _outcome(redirect, False, f"the code exchange failed: {reason}",
                            {**where, "error": "token_exchange_failed"})
        credential_id = await self._store_connected(team_id, user_id, app, tokens)
        return _outcome(redirect, True, "connected",
                        {**where, "credentialId": credential_id}, credential_id)

    async def _take_state(self, state: str | None) -> dict[str, Any]:
        refused = BadRequest("state: invalid, expired or already used; start the "
                                 "connection again (GET /headless/oauthUrl)")
        if not state or len(state) > 4096 or self.keys is None:
            raise refused
        try:
            opened = self.keys.decrypt_at_time(state.encode(), STATE_TTL,
                                               self.clock.now_ms() // 1000)
            payload = orjson.loads(opened)
        except (InvalidToken, orjson.JSONDecodeError):
            raise refused from None
        taken = await self.store.take_oauth_state(_hash(state))
        if not isinstance(payload, dict) or taken is None \
                or taken[:3] != (payload.get("t"), payload.get("u"), payload.get("a")) \
                or taken[3] < self.clock.now_ms():
            raise refused
        return payload

    async def _store_connected(self, team_id: str, user_id: str, app: App,
                               tokens: dict[str, Any]) -> str:
        """The tokens as the user's credential for the app: the newest one's values
        replaced (its id and pins kept), else a new one."""
        keys = self._keys()
        now = self.clock.now_ms()
        sealed = keys.encrypt(orjson.dumps(tokens)).decode()
        found = [c for c in await self.store.list_credentials(team_id, user_id)
                 if c.app == app.record.name]
        existing = found[-1] if found else None
        credential = CredentialRecord(
            id=existing.id if existing else new_object_id(), team_id=team_id,
            user_id=user_id, app=app.record.name, sealed=sealed, created_at=now,
            updated_at=now, expires_at=tokens.get("expiresAt"))
        kind = RECONNECTED if existing else CONNECTED
        event = self._event(credential, kind, f"credential {credential.id} for app "
                            f"{app.record.name!r} {'re' if existing else ''}connected")
        if not await self.store.save_connected_credential(
                credential, existing.id if existing else None, event):
            # Deleted meanwhile: store it as a new one.
            credential = replace(credential, id=new_object_id())
            await self.store.save_connected_credential(credential, None, event)
        log.info("oauth: credential %s of user %s for app %s %s", credential.id, user_id,
                 app.record.name, kind.split(".")[1])
        return credential.id

    # -- tokens for runs ----------------------------------------------------------------------

    def needs_token(self, app: App, credential: CredentialRecord,
                    data: Mapping[str, Any]) -> bool:
        """Whether the credential's access token must be (re)newed before use."""
        if credential.health is Health.NEEDS_RECONNECT:
            return True
        if not data.get("accessToken"):
            return app.declaration.auth.kind is AuthKind.OAUTH2_CLIENT_CREDENTIALS
        expires = credential.expires_at
        return expires is not None and expires - self.clock.now_ms() < REFRESH_MARGIN

    async def usable(self, app: App, credential: CredentialRecord,
                     data: Mapping[str, Any]) -> Values | str:
        """The credential's version and values with an access token good for a while: as
        they are, or after a refresh (this caller's, or another's it waited for); else
        why not."""
        if not self.needs_token(app, credential, data):
            return credential.version, data
        return await self._renew(app, credential)

    async def renewed(self, app: App, team_id: str, credential_id: str,
                      used_version: int) -> Values | str:
        """After a target refused the token of ``used_version``: the values renewed (by a
        refresh unless one happened since that version), else why not."""
        current = await self.store.get_credential(team_id, credential_id)
        if current is None:
            return f"credential {credential_id} for app {app.record.name!r} was deleted"
        if current.version == used_version or current.health is Health.NEEDS_RECONNECT:
            return await self._renew(app, current)
        return self._values(current)

    async def _renew(self, app: App, credential: CredentialRecord) -> Values | str:
        """Refresh under the row's lease, or wait for whoever holds it."""
        seen = credential
        deadline = time.monotonic() + WAIT
        pause = 0.01
        while True:
            now = self.clock.now_ms()
            blocked = seen.refresh_blocked_until or 0
            if blocked > now:
                return self._blocked(seen)
            owner = secrets.token_hex(8)
            if await self.store.claim_credential_refresh(seen.id, seen.version, owner,
                                                         now + LEASE, now):
                return await self._refresh(app, seen, owner)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)
            current = await self.store.get_credential(seen.team_id, seen.id)
            if current is None:
                return f"credential {seen.id} for app {seen.app!r} was deleted"
            if current.version != seen.version:
                if current.health is Health.NEEDS_RECONNECT:
                    return reconnect_reason(current)
                return self._values(current)  # refreshed by whoever held the lease
            seen = current
            if time.monotonic() > deadline:
                return (f"credential {seen.id} for app {seen.app!r}: waited {WAIT:g}s for "
                        "another process's token refresh; try again")

    def _blocked(self, credential: CredentialRecord) -> Values | str:
        if credential.health is Health.NEEDS_RECONNECT:
            return reconnect_reason(credential)
        data = self._open(credential)
        expires = credential.expires_at
        if not isinstance(data, str) and data.get("accessToken") and (
                expires is None or expires > self.clock.now_ms()):
            return credential.version, data  # the refresh failed for now; the token works
        return (f"credential {credential.id} for app {credential.app!r}: the token refresh "
                "failed a moment ago; tried again after "
                f"{iso(credential.refresh_blocked_until)}")

    async def _refresh(self, app: App, credential: CredentialRecord, owner: str
                       ) -> Values | str:
        """This caller holds the lease: get a new token and write it, or the refusal."""
        data = self._open(credential)
        if isinstance(data, str):
            await self.store.release_credential_refresh(credential.id, owner,
                                                        self.clock.now_ms())
            return data
        try:
            tokens = await self._token(app, credential.team_id, self._grant(app, data), data)
        except _Refused as exc:
            return await self._refused(app, credential, owner, exc.reason)
        except _Failed as exc:
            log.warning("oauth: credential %s for app %s: token refresh failed (%s)",
                        credential.id, credential.app, exc.reason)
            await self.store.release_credential_refresh(
                credential.id, owner, self.clock.now_ms() + PASSING_COOL_DOWN)
            fresh = await self.store.get_credential(credential.team_id, credential.id)
            return self._blocked(fresh or credential)
        merged = {**data, **tokens}
        if "refreshToken" not in tokens and data.get("refreshToken"):
            merged["refreshToken"] = data["refreshToken"]  # not rotated: the old one stays
        if "expiresAt" not in tokens:
            merged.pop("expiresAt", None)
        now = self.clock.now_ms()
        sealed = self._keys().encrypt(orjson.dumps(merged)).decode()
        if not await self.store.credential_refreshed(credential.id, credential.version, owner,
                                                     sealed, merged.get("expiresAt"), now):
            # The lease lapsed and another refresh won: its values are the ones to use.
            current = await self.store.get_credential(credential.team_id, credential.id)
            if current is None or current.health is Health.NEEDS_RECONNECT:
                return reconnect_reason(current) if current else "credential was deleted"
            return self._values(current)
        log.info("oauth: credential %s for app %s refreshed", credential.id, credential.app)
        return credential.version + 1, merged

    async def _refused(self, app: App, credential: CredentialRecord, owner: str,
                       reason: str) -> str:
        now = self.clock.now_ms()
        failures = credential.refresh_failures + 1
        blocked = now + cool_down(failures)
        why = f"the app refused the token refresh: {reason}"
        first = credential.health is Health.OK
        event = notification = None
        if first:
            message = (f"credential {credential.id} for app {credential.app!r} needs to be "
                       f"reconnected ({why})")
            event = self._event(credential, NEEDS_RECONNECT, message)
            notification = orjson.dumps({
                "event": NEEDS_RECONNECT, "eventId": event.id,
                "credentialId": credential.id, "app": credential.app,
                "appDisplayName": app.record.display_name, "userId": credential.user_id,
                "reason": why, "message": message, "at": iso(now),
                "nextRefreshAttemptAfter": iso(blocked),
            })
        await self.store.credential_refresh_refused(credential.id, credential.version, owner,
                                                    why, blocked, now, event, notification)
        log.warning("oauth: credential %s for app %s of user %s needs to be reconnected "
                    "(%s); no refresh before %s", credential.id, credential.app,
                    credential.user_id, why, iso(blocked))
        if notification is not None:
            self.notified()
        return (f"credential {credential.id} for app {credential.app!r} needs to be "
                f"reconnected ({why})")

    def _grant(self, app: App, data: Mapping[str, Any]) -> dict[str, str]:
        auth = app.declaration.auth
        if auth.kind is AuthKind.OAUTH2_CLIENT_CREDENTIALS:
            grant = {"grant_type": "client_credentials"}
            if auth.scopes:
                grant["scope"] = " ".join(auth.scopes)
            return grant
        refresh = data.get("refreshToken")
        if not isinstance(refresh, str) or not refresh:
            raise _Refused("the access token expired and the app issued no refresh token")
        return {"grant_type": "refresh_token", "refresh_token": refresh}

    # -- the token endpoint -------------------------------------------------------------------

    async def _token(self, app: App, team_id: str, form: dict[str, str],
                     data: Mapping[str, Any]) -> dict[str, Any]:
        """POST a grant to the app's token URL (client_secret_post); the tokens as a
        credential holds them. _Refused for a refusal, _Failed for anything that may pass."""
        auth = app.declaration.auth
        try:
            client_id = self._reference(app, "clientId", auth.client_id, data)
            client_secret = self._reference(app, "clientSecret", auth.client_secret, data)
        except InvalidRequest as exc:
            raise _Refused(exc.message) from None
        body = {**form, "client_id": client_id}
        if client_secret:
            body["client_secret"] = client_secret
        team = self._clients().team(team_id)
        url = httpx.URL(auth.token_url or "")
        try:
            async with asyncio.timeout(TOKEN_TIMEOUT), team.slot(url, TOKEN_TIMEOUT):
                response = await team.client.post(
                    url, data=body, headers={"accept": "application/json"})
        except (TimeoutError, httpx.TimeoutException):
            raise _Failed(f"the token URL did not answer within {TOKEN_TIMEOUT:g}s") from None
        except httpx.HTTPError as exc:
            raise _Failed(f"the token URL could not be reached: {exc}") from None
        except ReflowError as exc:  # the address guard, a connection limit
            raise _Failed(exc.message) from None
        return _tokens(response, self.clock.now_ms())

    def _reference(self, app: App, key: str, reference: Reference | None,
                   data: Mapping[str, Any]) -> str:
        if reference is None:
            return ""
        if reference.env is not None:
            value = self.environ.get(reference.env, "")
            where = f"the environment variable {reference.env}"
        else:
            found = data.get(reference.field or "")
            value = found if isinstance(found, str) else ""
            where = f"the credential's field {reference.field!r}"
        if not value:
            raise InvalidRequest(f"app {app.record.name!r}: auth.{key} refers to {where}, "
                                 "which is not set")
        return value

    # -- events -----------------------------------------------------------------------------

    async def events(self, team: Team, user_ref: str | None, limit: int = 100
                     ) -> list[CredentialEvent]:
        """The team's (or the user's) credential events, newest first."""
        if not 1 <= limit <= _EVENTS_LIMIT:
            raise InvalidRequest(f"limit: must be between 1 and {_EVENTS_LIMIT}")
        user_id = None if user_ref is None else (await self.users.get(team, user_ref)).id
        return await self.store.list_credential_events(team.id, user_id, limit)

    async def purge_states(self) -> int:
        """Delete connect-flow states that expired (the periodic job)."""
        return await self.store.purge_oauth_states(self.clock.now_ms(), 1_000)

    # -- helpers ------------------------------------------------------------------------------

    def _event(self, credential: CredentialRecord, kind: str, message: str) -> CredentialEvent:
        return CredentialEvent(new_object_id(), credential.team_id, credential.id,
                               credential.user_id, credential.app, kind, message,
                               self.clock.now_ms())

    async def _oauth_app(self, team: Team, name: str, kind: AuthKind) -> App:
        app = await self.apps.find(team.id, name)
        if app is None:
            raise NotFound(f"app {name!r} not found (GET /metadata/credentials lists the "
                           "apps; declare one with POST /apps or `reflow apps apply`)")
        auth = app.declaration.auth
        if auth.kind is not kind:
            raise InvalidRequest(f"app {name!r} is not connected through OAuth (its auth "
                                 f"type is {auth.kind.value}); create its credential with "
                                 "POST /headless/credentials")
        return app

    async def _redirect_for(self, team: Team, requested: str | None) -> str | None:
        """The redirect of this flow: ``requested`` when it shares the origin of the team's
        redirect URL (the allow-list), else the team's (None: the callback answers JSON)."""
        configured = await self.store.get_oauth_redirect(team.id)
        if requested is None:
            return configured
        url = _redirect_problem_free(requested, "redirectUri")
        if configured is None:
            raise InvalidRequest("redirectUri: set the team's OAuth redirect URL first (PUT "
                                 "/settings/oauth or `reflow credentials oauth-redirect`); a "
                                 "redirectUri must share its origin")
        if _origin(url) != _origin(configured):
            raise InvalidRequest(f"redirectUri: must share the origin of the team's OAuth "
                                 f"redirect URL ({_origin(configured)})")
        return url

    def _keys(self) -> MultiFernet:
        if self.keys is None:
            raise SealError("REFLOW_SECRET_KEY is not set: OAuth states and tokens are "
                            "encrypted with it; set it (`make run` makes one for dev)")
        return self.keys

    def _values(self, credential: CredentialRecord) -> Values | str:
        data = self._open(credential)
        return data if isinstance(data, str) else (credential.version, data)

    def _open(self, credential: CredentialRecord) -> Mapping[str, Any] | str:
        try:
            data = orjson.loads(self._keys().decrypt(credential.sealed.encode()))
        except (InvalidToken, SealError):
            return (f"credential {credential.id} for app {credential.app!r} was encrypted "
                    "with a key that is not in REFLOW_SECRET_KEY")
        return data if isinstance(data, dict) else {}

    def _clients(self) -> HttpClients:
        if self._http is None:
            settings = self.settings
            self._http = create_http_clients(HttpPolicy(
                allow_networks=settings.http_allow_networks, timeout=TOKEN_TIMEOUT,
                max_response_bytes=_MAX_TOKEN_RESPONSE,
                team_clients=settings.http_team_clients))
        return self._http

    async def aclose(self) -> None:
        """Close the token requests' clients."""
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()


def _tokens(response: httpx.Response, now: int) -> dict[str, Any]:
    """A token endpoint's answer as a credential's values (never quoting a token)."""
    status = response.status_code
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error = body.get("error") if isinstance(body.get("error"), str) else None
    if status in (401, 403) or (status == 400 and (error is None or error in _REFUSALS)):
        raise _Refused(f"HTTP {status}" + (f" {error}" if error else ""))
    if status >= 300 or error:
        raise _Failed(f"HTTP {status}" + (f" {error}" if error else ""))
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise _Failed(f"HTTP {status} without an access_token")
    tokens: dict[str, Any] = {"accessToken": access,
                              "tokenType": str(body.get("token_type") or "Bearer")}
    refresh = body.get("refresh_token")
    if isinstance(refresh, str) and refresh:
        tokens["refreshToken"] = refresh
    expires_in = body.get("expires_in")
    if isinstance(expires_in, int | float | str) and str(expires_in).isdigit():
        tokens["expiresAt"] = now + int(expires_in) * 1000
    if isinstance(body.get("scope"), str):
        tokens["scope"] = body["scope"]
    return tokens


def event_json(event: CredentialEvent) -> dict[str, Any]:
    """A credential event as the API and the CLI show it."""
    return {"eventId": event.id, "event": event.kind, "credentialId": event.credential_id,
            "userId": event.user_id, "app": event.app, "message": event.message,
            "createdAt": iso(event.created_at)}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _redirect_problem_free(url: str, name: str = "redirectUrl") -> str:
    """A redirect URL as stored (absolute http(s), no fragment, no spaces); 422 otherwise.
    Any address may be named: the browser follows it, not reflow (an intranet app)."""
    text = url.strip()
    parts = urlsplit(text)
    if not text or len(text) > 2048 or parts.scheme not in ("http", "https") \
            or not parts.netloc or parts.fragment \
            or any(c.isspace() or ord(c) < 32 for c in text):
        raise InvalidRequest(f"{name}: must be an absolute http or https URL without a "
                             "#fragment (at most 2048 characters)")
    return text


def _outcome(redirect: str | None, success: bool, message: str, query: dict[str, str],
             credential_id: str | None = None) -> CallbackResult:
    if redirect is None:
        return CallbackResult(None, success, message, credential_id)
    params = {"status": "success" if success else "error", **query}
    if not success:
        params["message"] = message
    separator = "&" if urlsplit(redirect).query else "?"
    return CallbackResult(f"{redirect}{separator}{urlencode(params)}", success, message,
                          credential_id)

