"""Apps: the third-party services end users connect, and how a credential for one is used.

An app declaration (YAML or JSON, a file applied like a workflow or the body of
``POST /apps``) names the app, how requests to it are authenticated (``auth``) and the
fields a user fills in to connect (``fields``). A file beside workflows says ``kind: app``
(how ``serve --apply`` tells it from a workflow definition); ``reflow apps apply`` and
``POST /apps`` may leave ``kind`` out. Every problem is reported at once, by path.

A credential's values are checked against the app's fields (``value_problems``) and turned
into a ``binding`` at run time: the plain mapping the ``http`` block applies (a header, a
query parameter, basic or bearer auth). OAuth client ids and secrets are references to the
deployment's environment (``{env: NAME}``), never values in the declaration.
"""

from __future__ import annotations

import base64
import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from reflow.domain.definitions import parse_document
from reflow.errors import AppInvalid, DefinitionInvalid, Problem

KIND = "app"
MAX_NAME_LENGTH = 100
MAX_TEXT_LENGTH = 200
MAX_URL_LENGTH = 2_048
MAX_FIELDS = 50
MAX_VALUE_LENGTH = 16_384
# An app's name is what a workflow's `credential` and a credential's `type` say.
_APP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A header or query parameter name (RFC 9110 token characters).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# The only variables a declaration may name (reflow.settings.OAUTH_ENV_PREFIX): a team
# must not be able to send the deployment's own settings to a token URL it chose.
_ENV_NAME = re.compile(r"REFLOW_OAUTH_[A-Z0-9_]+")
_KEYS = ("kind", "name", "displayName", "icon", "auth", "fields")
_FIELD_KEYS = ("name", "displayName", "description", "secret", "required")
# The values an OAuth credential holds (imported, or stored by the connect flow); they are
# secret whatever the app's fields say.
OAUTH_TOKEN_FIELDS: Mapping[str, bool] = {
    "accessToken": True, "refreshToken": True, "expiresAt": False, "tokenType": False,
    "scope": False,
}


class AuthKind(StrEnum):
    """How requests to an app carry a user's credential."""

    API_KEY = "api_key"  # a secret in a header or a query parameter
    BEARER = "bearer"  # Authorization: Bearer <secret>
    BASIC = "basic"  # Authorization: Basic base64(username:password)
    OAUTH2 = "oauth2"  # authorization code with PKCE; the access token as bearer
    OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials"  # a token per client; bearer

    @property
    def is_oauth(self) -> bool:
        """Whether credentials of this kind hold OAuth tokens."""
        return self in (AuthKind.OAUTH2, AuthKind.OAUTH2_CLIENT_CREDENTIALS)


@dataclass(frozen=True, slots=True)
class Reference:
    """Where a value comes from at run time: the environment (``env``) or a user's
    field (``field``, for client credentials the user brings)."""

    env: str | None = None
    field: str | None = None

    def as_json(self) -> dict[str, str]:
        """The reference as declared."""
        return {"env": self.env} if self.env is not None else {"field": self.field or ""}


@dataclass(frozen=True, slots=True)
class AppField:
    """A value a user fills in to connect the app."""

    name: str
    display_name: str
    secret: bool = False
    required: bool = True
    description: str = ""


@dataclass(frozen=True, slots=True)
class Auth:
    """How the app is authenticated; which keys are set depends on ``kind``."""

    kind: AuthKind
    header: str | None = None  # api_key: the header that carries it
    query: str | None = None  # api_key: or the query parameter
    field: str | None = None  # api_key, bearer: the field whose value is sent
    username: str | None = None  # basic: the fields of the pair
    password: str | None = None
    authorize_url: str | None = None  # oauth2
    token_url: str | None = None  # oauth2, oauth2_client_credentials
    scopes: tuple[str, ...] = ()
    client_id: Reference | None = None
    client_secret: Reference | None = None
    pkce: bool = True


@dataclass(frozen=True, slots=True)
class AppDeclaration:
    """A checked app declaration."""

    name: str
    display_name: str
    auth: Auth
    fields: tuple[AppField, ...]
    icon: str | None = None

    def field(self, name: str) -> AppField | None:
        """The field of this name, if declared."""
        return next((f for f in self.fields if f.name == name), None)

    def secret_names(self) -> frozenset[str]:
        """Names of values that are secret (the secret fields, and OAuth tokens)."""
        names = {f.name for f in self.fields if f.secret}
        if self.auth.kind.is_oauth:
            names.update(k for k, secret in OAUTH_TOKEN_FIELDS.items() if secret)
        return frozenset(names)


def declares_app(doc: Any) -> bool:
    """Whether a parsed document is an app declaration (``kind: app``)."""
    return isinstance(doc, dict) and doc.get("kind") == KIND


def app_from_text(text: str | bytes, content_type: str | None = None) -> AppDeclaration:
    """Parse and check a declaration; AppInvalid lists every problem."""
    try:
        doc = parse_document(text, content_type)
    except DefinitionInvalid as exc:
        raise AppInvalid(exc.problems) from None
    return app_from_document(doc)


def app_from_document(doc: Any) -> AppDeclaration:
    """Check a parsed declaration; AppInvalid lists every problem."""
    if not isinstance(doc, dict):
        raise AppInvalid([Problem("", "an app declaration must be a mapping with a name")])
    check = _Checker()
    check.unknown_keys("", doc, _KEYS)
    if doc.get("kind", KIND) != KIND:
        check.problem("kind", f"must be '{KIND}'")
    name = check.text("name", doc.get("name"), required=True, max_length=MAX_NAME_LENGTH)
    if name is not None and not _APP_NAME.fullmatch(name):
        check.problem("name", "must start with a letter and hold only letters, digits, "
                              "'_', '.' and '-' (workflows name it in `credential`)")
        name = None
    display = check.text("displayName", doc.get("displayName"))
    icon = check.url("icon", doc.get("icon"))
    fields = check.fields(doc.get("fields"))
    auth = check.auth(doc.get("auth"), fields)
    if check.problems:
        raise AppInvalid(check.problems)
    assert name is not None and auth is not None
    return AppDeclaration(name=name, display_name=display or name, auth=auth,
                          fields=tuple(fields), icon=icon)


def app_json(app: AppDeclaration) -> dict[str, Any]:
    """The declaration as canonical JSON (what is stored, and compared on re-apply)."""
    a = app.auth
    auth: dict[str, Any] = {"type": a.kind.value}
    optional = {"header": a.header, "query": a.query, "field": a.field,
                "username": a.username, "password": a.password,
                "authorizeUrl": a.authorize_url, "tokenUrl": a.token_url}
    auth.update({k: v for k, v in optional.items() if v is not None})
    if a.kind.is_oauth:
        auth["scopes"] = list(a.scopes)
        if a.client_id is not None:
            auth["clientId"] = a.client_id.as_json()
        if a.client_secret is not None:
            auth["clientSecret"] = a.client_secret.as_json()
    if a.kind is AuthKind.OAUTH2:
        auth["pkce"] = a.pkce
    doc: dict[str, Any] = {"name": app.name, "displayName": app.display_name, "auth": auth,
                           "fields": [_field_json(f) for f in app.fields]}
    if app.icon is not None:
        doc["icon"] = app.icon
    return doc


def _field_json(f: AppField) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.name, "displayName": f.display_name,
                           "secret": f.secret, "required": f.required}
    if f.description:
        out["description"] = f.description
    return out


def value_problems(app: AppDeclaration, data: Any) -> list[Problem]:
    """Why ``data`` cannot be stored as a credential of ``app``: each missing required
    field, each unknown key, each value that is not text. Never quotes a value."""
    if not isinstance(data, Mapping):
        return [Problem("credential.data", "must be an object of field names to values")]
    allowed = {f.name for f in app.fields}
    if app.auth.kind.is_oauth:
        allowed.update(OAUTH_TOKEN_FIELDS)
    problems = [
        Problem(f"credential.data.{key}", f"unknown field of app {app.name!r}"
                + _suggest(str(key), sorted(allowed)))
        for key in data if key not in allowed
    ]
    problems += [p for key, value in data.items() if key in allowed
                 if (p := _value_problem(str(key), value)) is not None]
    for f in app.fields:
        value = data.get(f.name)
        if f.required and (value is None or value == ""):
            problems.append(Problem(f"credential.data.{f.name}",
                                    f"required by app {app.name!r} ({f.display_name})"))
    if app.auth.kind is AuthKind.OAUTH2 and not data.get("accessToken"):
        problems.append(Problem("credential.data.accessToken",
                                f"required: app {app.name!r} is OAuth; import a token you "
                                "hold (accessToken, refreshToken, expiresAt)"))
    return problems


def _value_problem(key: str, value: Any) -> Problem | None:
    path = f"credential.data.{key}"
    if key == "expiresAt":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return Problem(path, "must be milliseconds since the epoch")
        return None
    if not isinstance(value, str):
        return Problem(path, "must be a string")
    if len(value) > MAX_VALUE_LENGTH:
        return Problem(path, f"must be at most {MAX_VALUE_LENGTH} characters")
    if "\x00" in value:
        return Problem(path, "may not contain the NUL character")
    return None


def secret_values(app: AppDeclaration, data: Mapping[str, Any]) -> tuple[str, ...]:
    """The secret values of a credential (to be hidden wherever a run repeats them)."""
    names = app.secret_names()
    return tuple(str(v) for k, v in data.items() if k in names and isinstance(v, str) and v)


def binding(app: AppDeclaration, data: Mapping[str, Any]) -> dict[str, str]:
    """What the ``http`` block applies for this credential (docs/credentials.md):
    ``{type: header|query, name, value}``, ``{type: basic, username, password}``,
    ``{type: bearer, token}``, or ``{type: unavailable, reason}`` when it cannot be used."""
    a = app.auth

    def value(field: str | None) -> str:
        found = data.get(field or "")
        return found if isinstance(found, str) else ""

    if a.kind is AuthKind.API_KEY:
        if a.header is not None:
            return {"type": "header", "name": a.header, "value": value(a.field)}
        return {"type": "query", "name": a.query or "", "value": value(a.field)}
    if a.kind is AuthKind.BEARER:
        return {"type": "bearer", "token": value(a.field)}
    if a.kind is AuthKind.BASIC:
        return {"type": "basic", "username": value(a.username), "password": value(a.password)}
    token = value("accessToken")
    if not token:
        return unavailable(f"the credential for app {app.name!r} holds no access token yet")
    return {"type": "bearer", "token": token}


def unavailable(reason: str) -> dict[str, str]:
    """A binding that fails the block using it with ``reason`` (no credential, not usable)."""
    return {"type": "unavailable", "reason": reason}


class _Checker:
    """Collects problems by path while reading a declaration."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path, reason))

    def unknown_keys(self, path: str, doc: Mapping[str, Any], allowed: Collection[str]) -> None:
        for key in doc:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.problem(where, "unknown key" + _suggest(str(key), allowed))

    def text(self, path: str, value: Any, *, required: bool = False,
             max_length: int = MAX_TEXT_LENGTH) -> str | None:
        if value is None:
            if required:
                self.problem(path, "required")
            return None
        if not isinstance(value, str):
            self.problem(path, "must be a string")
        elif not value.strip():
            self.problem(path, "must not be empty")
        elif len(value) > max_length:
            self.problem(path, f"must be at most {max_length} characters")
        elif "\x00" in value:
            self.problem(path, "may not contain the NUL character")
        else:
            return value
        return None

    def url(self, path: str, value: Any, *, required: bool = False) -> str | None:
        text = self.text(path, value, required=required, max_length=MAX_URL_LENGTH)
        if text is None:
            return None
        try:
            parts = urlsplit(text)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc \
                or " " in text:
            self.problem(path, "must be an absolute http or https URL")
            return None
        return text

    def token(self, path: str, value: Any, what: str) -> str | None:
        text = self.text(path, value)
        if text is not None and not _TOKEN.fullmatch(text):
            self.problem(path, f"must be a {what} name (letters, digits and -_.!#$%&'*+^`|~)")
            return None
        return text

    def flag(self, path: str, value: Any, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, "must be true or false")
            return default
        return value

    def fields(self, value: Any) -> list[AppField]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem("fields", "must be a list of fields")
            return []
        if len(value) > MAX_FIELDS:
            self.problem("fields", f"at most {MAX_FIELDS} fields")
            return []
        found: list[AppField] = []
        for index, item in enumerate(value):
            path = f"fields[{index}]"
            if not isinstance(item, dict):
                self.problem(path, "must be a mapping with a name")
                continue
            self.unknown_keys(path, item, _FIELD_KEYS)
            name = self.text(f"{path}.name", item.get("name"), required=True)
            if name is not None and not _FIELD_NAME.fullmatch(name):
                self.problem(f"{path}.name", "must be letters, digits and '_', not starting "
                                             "with a digit")
                name = None
            if name is not None and any(f.name == name for f in found):
                self.problem(f"{path}.name", f"{name!r} is declared twice")
                name = None
            if name is not None and name in OAUTH_TOKEN_FIELDS:
                self.problem(f"{path}.name", f"{name!r} is reserved for OAuth tokens")
                name = None
            display = self.text(f"{path}.displayName", item.get("displayName"))
            description = self.text(f"{path}.description", item.get("description"),
                                    max_length=2_000)
            secret = self.flag(f"{path}.secret", item.get("secret"), False)
            required = self.flag(f"{path}.required", item.get("required"), True)
            if name is not None:
                found.append(AppField(name, display or name, secret, required,
                                      description or ""))
        return found

    def field_ref(self, path: str, value: Any, fields: list[AppField], *,
                  default: str | None = None, secret_default: bool = False) -> str | None:
        """The name of a declared field that ``value`` (or the default) names."""
        if value is None:
            if secret_default:
                secrets = [f.name for f in fields if f.secret]
                if len(secrets) == 1:
                    return secrets[0]
                self.problem(path, "required: name the field whose value is sent "
                                   f"(the app declares {len(secrets)} secret fields)")
                return None
            value = default
        name = self.text(path, value, required=True)
        if name is not None and not any(f.name == name for f in fields):
            self.problem(path, f"names no field of this app ({name!r}); declare it under "
                               "fields")
            return None
        return name

    def reference(self, path: str, value: Any, *, fields: list[AppField] | None
                  ) -> Reference | None:
        """``{env: NAME}`` (or, when ``fields`` is given, ``{field: name}``)."""
        shape = "{env: NAME}" + (" or {field: name}" if fields is not None else "")
        if isinstance(value, str):
            self.problem(path, f"must be a reference {shape}, never the value itself")
            return None
        if not isinstance(value, dict) or len(value) != 1:
            self.problem(path, f"must be a reference {shape}")
            return None
        ((key, target),) = value.items()
        if key == "env":
            env = self.text(f"{path}.env", target, required=True)
            if env is not None and not _ENV_NAME.fullmatch(env):
                self.problem(f"{path}.env", "must name an environment variable "
                                            "REFLOW_OAUTH_... (A-Z, 0-9 and _): only "
                                            "those are readable by app declarations")
                return None
            return None if env is None else Reference(env=env)
        if key == "field" and fields is not None:
            name = self.field_ref(f"{path}.field", target, fields)
            return None if name is None else Reference(field=name)
        self.problem(path, f"must be a reference {shape}")
        return None

    def auth(self, value: Any, fields: list[AppField]) -> Auth | None:
        if value is None:
            self.problem("auth", "required: {type: api_key|bearer|basic|oauth2|"
                                 "oauth2_client_credentials, ...}")
            return None
        if not isinstance(value, dict):
            self.problem("auth", "must be a mapping with a type")
            return None
        raw = value.get("type")
        try:
            kind = AuthKind(str(raw))
        except ValueError:
            kinds = ", ".join(k.value for k in AuthKind)
            self.problem("auth.type", f"must be one of {kinds}" if raw is not None
                         else f"required: one of {kinds}")
            return None
        reader = {
            AuthKind.API_KEY: self._api_key, AuthKind.BEARER: self._bearer,
            AuthKind.BASIC: self._basic, AuthKind.OAUTH2: self._oauth2,
            AuthKind.OAUTH2_CLIENT_CREDENTIALS: self._client_credentials,
        }[kind]
        return reader(value, fields)

    def _api_key(self, doc: dict[str, Any], fields: list[AppField]) -> Auth | None:
        self.unknown_keys("auth", doc, ("type", "header", "query", "field"))
        header = self.token("auth.header", doc.get("header"), "header")
        query = self.token("auth.query", doc.get("query"), "query parameter")
        if (doc.get("header") is None) == (doc.get("query") is None):
            self.problem("auth", "give header or query (where the key is sent), not both")
        field = self.field_ref("auth.field", doc.get("field"), fields, secret_default=True)
        return Auth(AuthKind.API_KEY, header=header, query=query, field=field)

    def _bearer(self, doc: dict[str, Any], fields: list[AppField]) -> Auth | None:
        self.unknown_keys("auth", doc, ("type", "field"))
        field = self.field_ref("auth.field", doc.get("field"), fields, secret_default=True)
        return Auth(AuthKind.BEARER, field=field)

    def _basic(self, doc: dict[str, Any], fields: list[AppField]) -> Auth | None:
        self.unknown_keys("auth", doc, ("type", "username", "password"))
        username = self.field_ref("auth.username", doc.get("username"), fields,
                                  default="username")
        password = self.field_ref("auth.password", doc.get("password"), fields,
                                  default="password")
        return Auth(AuthKind.BASIC, username=username, password=password)

    def _scopes(self, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(
                isinstance(s, str) and s and " " not in s for s in value):
            self.problem("auth.scopes", "must be a list of scope names (no spaces)")
            return ()
        return tuple(value)

    def _oauth2(self, doc: dict[str, Any], fields: list[AppField]) -> Auth | None:
        self.unknown_keys("auth", doc, ("type", "authorizeUrl", "tokenUrl", "scopes",
                                        "clientId", "clientSecret", "pkce"))
        return Auth(
            AuthKind.OAUTH2,
            authorize_url=self.url("auth.authorizeUrl", doc.get("authorizeUrl"), required=True),
            token_url=self.url("auth.tokenUrl", doc.get("tokenUrl"), required=True),
            scopes=self._scopes(doc.get("scopes")),
            client_id=self.reference("auth.clientId", doc.get("clientId"), fields=None),
            client_secret=self.reference("auth.clientSecret", doc.get("clientSecret"),
                                         fields=None),
            pkce=self.flag("auth.pkce", doc.get("pkce"), True),
        )

    def _client_credentials(self, doc: dict[str, Any], fields: list[AppField]) -> Auth | None:
        self.unknown_keys("auth", doc, ("type", "tokenUrl", "scopes", "clientId",
                                        "clientSecret"))
        return Auth(
            AuthKind.OAUTH2_CLIENT_CREDENTIALS,
            token_url=self.url("auth.tokenUrl", doc.get("tokenUrl"), required=True),
            scopes=self._scopes(doc.get("scopes")),
            client_id=self.reference("auth.clientId", doc.get("clientId"), fields=fields),
            client_secret=self.reference("auth.clientSecret", doc.get("clientSecret"),
                                         fields=fields),
        )


def _suggest(word: str, choices: Collection[str]) -> str:
    matches = difflib.get_close_matches(word, list(choices), n=1)
    if matches:
        return f"; did you mean '{matches[0]}'?"
    return f" (expected one of: {', '.join(choices)})" if choices else ""


class Health(StrEnum):
    """Whether a credential can be used: ``needs_reconnect`` once its app refused it for
    good (an OAuth refresh that failed with an auth error), until the user reconnects."""

    OK = "ok"
    NEEDS_RECONNECT = "needs_reconnect"


@dataclass(frozen=True, slots=True)
class AppRecord:
    """A stored app: its declaration's canonical JSON and the columns lists show."""

    id: str
    team_id: str
    name: str
    display_name: str
    auth_kind: str
    icon: str | None
    definition: bytes  # app_json(declaration), canonical
    digest: str
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """A user's credential for an app; ``sealed`` is the Fernet token of its values."""

    id: str
    team_id: str
    user_id: str
    app: str
    sealed: str
    created_at: int
    updated_at: int
    health: Health = Health.OK
    health_reason: str | None = None
    health_changed_at: int | None = None
    expires_at: int | None = None
    version: int = 1
    app_display_name: str | None = None  # read with the app, for lists
    # The token refresh (services/oauth.py): who holds the lease and until when, and the
    # cool-down after failures.
    refresh_owner: str | None = None
    refresh_until: int | None = None
    refresh_blocked_until: int | None = None
    refresh_failures: int = 0


# The keys of a binding whose values are secret (the rest say how they are sent).
_BINDING_SECRETS = ("value", "token", "password")


def binding_secrets(bindings: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    """Every secret value in a run's bindings, and the basic auth pair as it is sent
    (base64), so a target echoing its Authorization header is hidden too."""
    found = [v for b in bindings.values() for k in _BINDING_SECRETS
             if isinstance(v := b.get(k), str) and v]
    for b in bindings.values():
        if b.get("type") == "basic":
            pair = f"{b.get('username', '')}:{b.get('password', '')}"
            found.append(base64.b64encode(pair.encode()).decode("ascii"))
    return tuple(found)
