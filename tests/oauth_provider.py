"""A fake OAuth 2.0 provider for the tests, served on 127.0.0.1.

``/authorize`` approves at once (or refuses with ``access_denied`` when ``deny`` is set)
and redirects with a code; ``/token`` exchanges codes (checking the client, the redirect
URI and the PKCE verifier), refreshes (each refresh token works once: it rotates), and
grants client credentials; ``/api/me`` answers 200 to a live access token and 401 to any
other. The test makes tokens expire (``expire_access_tokens``) and revokes refresh tokens
(``revoke_refresh_tokens``); counters say what was asked (``refresh_grants`` counts every
refresh-token request, ``refreshes`` the ones granted).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from support import serving

CLIENT_ID = "reflow-test-client"
CLIENT_SECRET = "cs-test-5b1e9a0f7c"
ACCESS_TTL = 3600  # seconds, as announced in expires_in


@dataclass
class _Grant:
    code_challenge: str | None
    redirect_uri: str
    scope: str


@dataclass
class FakeProvider:
    """The provider's state; ``base`` is its URL once served."""

    base: str = ""
    deny: bool = False
    access: set[str] = field(default_factory=set)  # live access tokens
    refresh: set[str] = field(default_factory=set)  # refresh tokens that work (once each)
    codes: dict[str, _Grant] = field(default_factory=dict)
    refreshes: int = 0  # refresh-token grants answered with new tokens
    refresh_grants: int = 0  # refresh-token grants asked for, refused ones included
    refresh_delay: float = 0.0  # seconds a refresh takes: callers pile up meanwhile
    exchanges: int = 0
    client_grants: int = 0
    api_calls: int = 0
    refused_api_calls: int = 0
    authorize_queries: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self, name: str = "crm", *, kind: str = "oauth2") -> dict[str, Any]:
        """An app declaration of this provider, its client in CRM_CLIENT_ID/_SECRET."""
        auth: dict[str, Any] = {"type": kind, "tokenUrl": f"{self.base}/token",
                                "scopes": ["contacts.read", "offline_access"],
                                "clientId": {"env": "REFLOW_OAUTH_CRM_CLIENT_ID"},
                                "clientSecret": {"env": "REFLOW_OAUTH_CRM_CLIENT_SECRET"}}
        if kind == "oauth2":
            auth["authorizeUrl"] = f"{self.base}/authorize"
        return {"name": name, "displayName": "Example CRM", "auth": auth}

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (they expired)."""
        with self.lock:
            self.access.clear()

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token stops working (the user revoked the app's access)."""
        with self.lock:
            self.refresh.clear()

    def _issue(self, with_refresh: bool = True) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(16)
        self.access.add(access)
        tokens: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                                  "expires_in": ACCESS_TTL, "scope": "contacts.read"}
        if with_refresh:
            refresh = "rt-" + secrets.token_urlsafe(16)
            self.refresh.add(refresh)
            tokens["refresh_token"] = refresh
        return tokens

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The token endpoint's answer to a form."""
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return 401, {"error": "invalid_client"}
        grant = form.get("grant_type")
        if grant == "refresh_token":
            time.sleep(self.refresh_delay)
        with self.lock:
            if grant == "authorization_code":
                found = self.codes.pop(form.get("code", ""), None)
                if found is None or found.redirect_uri != form.get("redirect_uri"):
                    return 400, {"error": "invalid_grant"}
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(
                    hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if found.code_challenge is not None and challenge != found.code_challenge:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "PKCE verification failed"}
                self.exchanges += 1
                return 200, self._issue()
            if grant == "refresh_token":
                self.refresh_grants += 1
                token = form.get("refresh_token", "")
                if token not in self.refresh:
                    return 400, {"error": "invalid_grant"}
                self.refresh.discard(token)  # rotation: each refresh token works once
                self.refreshes += 1
                return 200, self._issue()
            if grant == "client_credentials":
                self.client_grants += 1
                return 200, self._issue(with_refresh=False)
        return 400, {"error": "unsupported_grant_type"}


class _Handler(BaseHTTPRequestHandler):
    provider: FakeProvider  # set by a subclass per served provider

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = orjson.dumps(body)
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/authorize":
            self._authorize(query)
        elif parts.path == "/api/me":
            token = self.headers.get("authorization", "").removeprefix("Bearer ")
            with self.provider.lock:
                live = token in self.provider.access
                self.provider.api_calls += 1
                self.provider.refused_api_calls += not live
            if live:
                self._send(200, {"id": "contact-1", "name": "Ann"})
            else:
                self._send(401, {"error": "invalid_token"})
        else:
            self._send(404, {"error": "not_found"})

    def _authorize(self, query: dict[str, str]) -> None:
        self.provider.authorize_queries.append(query)
        redirect = query.get("redirect_uri", "")
        if query.get("client_id") != CLIENT_ID:
            self._send(400, {"error": "invalid_client"})
            return
        if self.provider.deny:
            answer = {"error": "access_denied", "state": query.get("state", "")}
        else:
            code = "code-" + secrets.token_urlsafe(12)
            with self.provider.lock:
                self.provider.codes[code] = _Grant(query.get("code_challenge"), redirect,
                                              query.get("scope", ""))
            answer = {"code": code, "state": query.get("state", "")}
        self._send(302, {}, {"location": f"{redirect}?{urlencode(answer)}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if urlsplit(self.path).path != "/token":
            self._send(404, {"error": "not_found"})
            return
        status, body = self.provider.token(form)
        self._send(status, body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def oauth_provider() -> Iterator[FakeProvider]:
    """A fake provider served on 127.0.0.1 for the block."""
    provider = FakeProvider()
    handler = type("Handler", (_Handler,), {"provider": provider})
    with serving(handler) as base:
        provider.base = base
        yield provider
