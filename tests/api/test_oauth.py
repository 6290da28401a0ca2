"""OAuth: a user connects through the full redirect flow with a fake provider, runs call
its protected API, tokens are refreshed once however many runs need them, a revoked
refresh token makes the credential needs_reconnect (one notification, clear run errors),
and reconnecting lets the failed runs be rerun; client-credentials apps end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from oauth_provider import ACCESS_TTL, CLIENT_ID, CLIENT_SECRET, FakeProvider, oauth_provider
from reflow.clock import ManualClock
from reflow.services import Reflow
from reflow.settings import Settings
from support import Receiver, receiving

TEAM_REDIRECT = "https://app.example.com/integrations/connected"


@pytest.fixture
def executor_processes() -> int:
    """No executor process (one test runs the real one)."""
    return 0


@pytest.fixture
def settings(make_settings: Callable[..., Settings], executor_processes: int,
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Reaching the local provider; the callback as the test client calls it; the
    provider's client id and secret in the environment the app names (read at start)."""
    monkeypatch.setenv("REFLOW_OAUTH_CRM_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("REFLOW_OAUTH_CRM_CLIENT_SECRET", CLIENT_SECRET)
    return make_settings(http_allow_networks="127.0.0.0/8", public_url="http://testserver",
                         executor_processes=executor_processes, worker_concurrency=64)


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    """The fake provider (its client id and secret are in ``settings``' environment)."""
    with oauth_provider() as served:
        yield served


@pytest.fixture
def crm(client: TestClient, provider: FakeProvider) -> FakeProvider:
    """The provider declared as app ``crm``, and the team's redirect URL set."""
    assert client.post("/apps", json=provider.app()).status_code == 200
    response = client.put("/settings/oauth", json={"redirectUrl": TEAM_REDIRECT})
    assert response.status_code == 200, response.text
    return provider


def authorize(client: TestClient, user: str, path: str | None = None) -> str:
    """The authorize URL reflow gives for the user and app ``crm``."""
    response = client.get(path or "/headless/oauthUrl", params={"app": "crm", "userId": user}
                          if path is None else None)
    assert response.status_code == 200, response.text
    url: str = response.json()["data"]["oauthUrl"]
    return url


def callback_of(url: str) -> str:
    """Follow the authorize URL at the provider: the path of reflow's callback it sends
    the browser to."""
    answer = httpx.get(url, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == "http://testserver"
    return f"{location.path}?{location.query}"


class Browser:
    """GETs of ``client`` (its event loop) without its API key or version header."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def get(self, url: str, *, follow_redirects: bool = True) -> httpx.Response:
        """GET as a browser would."""
        kept = dict(self.client.headers)
        for name in ("authorization", "x-api-version"):
            self.client.headers.pop(name, None)
        try:
            return self.client.get(url, follow_redirects=follow_redirects)
        finally:
            self.client.headers.update(kept)


def anonymous(client: TestClient) -> Browser:
    """A browser: no API key, no version."""
    return Browser(client)


def connect(client: TestClient, user: str) -> dict[str, str]:
    """The full flow: reflow's URL, the provider, the callback; the team redirect's query."""
    back = anonymous(client).get(callback_of(authorize(client, user)), follow_redirects=False)
    assert back.status_code == 302, back.text
    target = urlsplit(back.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == TEAM_REDIRECT
    return {k: v[0] for k, v in parse_qs(target.query).items()}


def calling_crm(base: str) -> dict[str, Any]:
    """A workflow calling the provider's protected API as the user."""
    return {"name": "Read my CRM contact", "trigger": {"type": "api"}, "blocks": [
        {"id": "me", "type": "http",
         "with": {"method": "GET", "url": f"{base}/api/me", "credential": "crm"}},
        {"id": "done", "type": "respond", "with": {"body": {"name": "{{ me.body.name }}"}}},
    ]}


def run(client: TestClient, workflow_id: str, user: str) -> dict[str, Any]:
    """Run to its end; the answer."""
    response = client.post("/run/workflow", params={"wait": 10},
                           json={"workflowId": workflow_id, "userId": user, "data": {}})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def credential_of(client: TestClient, user: str) -> dict[str, Any]:
    """The user's only credential as listed."""
    (item,) = client.get(f"/users/{user}/credentials").json()["data"]
    result: dict[str, Any] = item
    return result


def expire(clock: ManualClock, provider: FakeProvider) -> None:
    """The access tokens expire: for the provider, and on reflow's clock."""
    provider.expire_access_tokens()
    clock.advance(ACCESS_TTL)


# -- the connect flow ---------------------------------------------------------------------


def test_connecting_stores_the_tokens_as_the_users_credential_and_redirects_to_the_team(
    client: TestClient, crm: FakeProvider, make_user: Callable[..., str]
) -> None:
    user = make_user("ann@example.com")
    url = authorize(client, user)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(f"{crm.base}/authorize?")
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == "http://testserver/oauth/callback"
    assert query["scope"] == "contacts.read offline_access"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["response_type"] == "code" and query["state"]
    back = connect(client, user)
    assert back["status"] == "success" and back["app"] == "crm" and back["userId"] == user
    item = credential_of(client, user)
    assert item["credentialId"] == back["credentialId"]
    assert (item["app"], item["health"]) == ("crm", "ok") and item["expiresAt"]
    assert crm.exchanges == 1
    events = client.get("/credentials/events", params={"userId": user}).json()["data"]
    assert [e["event"] for e in events] == ["credential.connected"]


def test_the_sdk_path_and_a_versioned_prefix_give_an_authorize_url(
    client: TestClient, crm: FakeProvider, make_user: Callable[..., str]
) -> None:
    user = make_user()
    for path in (f"/users/{user}/credentials/crm?integrationId=x",
                 f"/2023-12/users/{user}/credentials/crm", "/2025-09/headless/oauthUrl"
                 f"?app=crm&userId={user}"):
        assert authorize(client, user, path).startswith(f"{crm.base}/authorize?")


def test_a_replayed_forged_or_expired_state_is_refused(
    client: TestClient, crm: FakeProvider, make_user: Callable[..., str], clock: ManualClock
) -> None:
    user = make_user()
    browser = anonymous(client)
    callback = callback_of(authorize(client, user))
    assert browser.get(callback, follow_redirects=False).status_code == 302
    replayed = browser.get(callback, follow_redirects=False)
    assert replayed.status_code == 400
    assert "invalid, expired or already used" in replayed.json()["message"]
    forged = callback.replace("state=", "state=x")
    assert browser.get(forged, follow_redirects=False).status_code == 400
    late = callback_of(authorize(client, user))
    clock.advance(601)
    assert browser.get(late, follow_redirects=False).status_code == 400
    assert crm.exchanges == 1


def test_a_refusal_at_the_provider_redirects_with_the_error(
    client: TestClient, crm: FakeProvider, make_user: Callable[..., str]
) -> None:
    user = make_user()
    crm.deny = True
    back = connect(client, user)
    assert back["status"] == "error" and back["error"] == "access_denied"
    assert "refused the connection" in back["message"]
    assert client.get(f"/users/{user}/credentials").json()["data"] == []


def test_without_a_redirect_url_the_callback_answers_json(
    client: TestClient, provider: FakeProvider, make_user: Callable[..., str]
) -> None:
    assert client.post("/apps", json=provider.app()).status_code == 200
    user = make_user()
    answer = anonymous(client).get(callback_of(authorize(client, user)))
    assert answer.status_code == 200, answer.text
    assert answer.json()["credentialId"] == credential_of(client, user)["credentialId"]


def test_a_redirect_uri_must_share_the_origin_of_the_teams_url(
    client: TestClient, crm: FakeProvider, make_user: Callable[..., str]
) -> None:
    user = make_user()
    ok = client.get("/headless/oauthUrl", params={
        "app": "crm", "userId": user, "redirectUri": "https://app.example.com/other"})
    assert ok.status_code == 200, ok.text
    back = anonymous(client).get(callback_of(ok.json()["data"]["oauthUrl"]),
                                 follow_redirects=False)
    assert back.headers["location"].startswith("https://app.example.com/other?status=success")
    refused = client.get("/headless/oauthUrl", params={
        "app": "crm", "userId": user, "redirectUri": "https://evil.example/steal"})
    assert refused.status_code == 422
    assert "must share the origin" in refused.json()["message"]


def test_an_authorize_url_needs_an_oauth_app_of_the_team(
    client: TestClient, crm: FakeProvider, make_user: Callable[..., str]
) -> None:
    user = make_user()
    client.post("/apps", json={"name": "shop", "auth": {"type": "api_key", "header": "X-K"},
                               "fields": [{"name": "k", "secret": True}]})
    not_oauth = client.get("/headless/oauthUrl", params={"app": "shop", "userId": user})
    assert not_oauth.status_code == 422
    assert "not connected through OAuth" in not_oauth.json()["message"]
    assert client.get("/headless/oauthUrl", params={"app": "nope", "userId": user}
                      ).status_code == 404
    assert client.get("/settings/oauth").json() == {"redirectUrl": TEAM_REDIRECT}
    assert client.put("/settings/oauth", json={"redirectUrl": "ftp://x"}).status_code == 422


# -- runs, refresh, the lock ------------------------------------------------------------------


def test_an_expired_token_is_refreshed_once_for_fifty_runs_at_the_same_moment(
    client: TestClient, reflow: Reflow, crm: FakeProvider, installed: Callable[..., Any],
    clock: ManualClock, settings: Settings,
) -> None:
    workflow_id, user = installed(calling_crm(crm.base))
    connect(client, user)
    assert run(client, workflow_id, user)["output"] == {"name": "Ann"}
    expire(clock, crm)
    # Two more Reflows on the same database (other processes, other workers) need the
    # token at the same moment as the fifty runs.
    others = [Reflow.open(settings, clock) for _ in range(2)]
    credential_id = credential_of(client, user)["credentialId"]

    async def others_need_it() -> list[Any]:
        found = []
        for other in others:
            record = await other.store.get_credential(
                (await other.keys.first_team()).id, credential_id)  # type: ignore[union-attr]
            app = await other.apps.find(record.team_id, "crm")  # type: ignore[union-attr]
            found.append((other, app, record))
        return await asyncio.gather(*(o.oauth.usable(a, r, {"accessToken": "old"})
                                      for o, a, r in found for _ in range(5)))

    portal = client.portal
    assert portal is not None
    with ThreadPoolExecutor(51) as pool:
        side = pool.submit(portal.call, others_need_it)
        answers = list(pool.map(lambda _: run(client, workflow_id, user), range(50)))
        extra = side.result()
    for other in others:
        portal.call(other.close)
    assert all(a["output"] == {"name": "Ann"} for a in answers), answers[:3]
    assert crm.refreshes == 1
    assert all(not isinstance(e, str) for e in extra)
    assert credential_of(client, user)["health"] == "ok"


@pytest.mark.parametrize("executor_processes", [0, 1])
def test_a_401_from_the_target_refreshes_the_token_and_sends_the_request_once_more(
    client: TestClient, crm: FakeProvider, installed: Callable[..., Any]
) -> None:
    workflow_id, user = installed(calling_crm(crm.base))
    connect(client, user)
    crm.expire_access_tokens()  # revoked early: reflow's clock says it is still good
    answer = run(client, workflow_id, user)
    assert answer["output"] == {"name": "Ann"}
    assert (crm.refreshes, crm.refused_api_calls) == (1, 1)
    log = client.get(f"/logs/{answer['executionId']}").json()["data"]
    assert "at-" not in str(log) and "rt-" not in str(log)


# -- needs_reconnect ----------------------------------------------------------------------------


@pytest.fixture
def receiver(client: TestClient) -> Iterator[Receiver]:
    """The team's error stream, received locally."""
    with receiving() as received:
        response = client.put("/settings/error-stream", json={"url": received.url})
        assert response.status_code == 200, response.text
        yield received


def test_a_revoked_refresh_token_needs_reconnect_once_and_reconnecting_lets_reruns_succeed(
    client: TestClient, reflow: Reflow, crm: FakeProvider, installed: Callable[..., Any],
    clock: ManualClock, receiver: Receiver,
) -> None:
    workflow_id, user = installed(calling_crm(crm.base))
    connect(client, user)
    crm.revoke_refresh_tokens()
    expire(clock, crm)
    failed = [run(client, workflow_id, user) for _ in range(3)]
    credential = credential_of(client, user)
    assert credential["health"] == "needs_reconnect"
    assert "invalid_grant" in credential["healthReason"]
    for answer in failed:
        log = client.get(f"/logs/{answer['executionId']}").json()["data"]
        assert log["status"] == "failed"
        assert (f"credential {credential['credentialId']} for app 'crm' needs to be "
                "reconnected") in str(log["results"])
    # One refused refresh: the cool-down keeps the others from trying again.
    assert crm.refreshes == 0
    events = client.get("/credentials/events").json()["data"]
    assert [e["event"] for e in events] == ["credential.needs_reconnect",
                                            "credential.connected"]
    portal = client.portal
    assert portal is not None
    portal.call(reflow.periodic.run_once, "error stream")
    kinds = [r.headers.get("x-reflow-event") for r in receiver.received]
    assert kinds.count("credential.needs_reconnect") == 1
    (notice,) = [r.json for r in receiver.received
                 if r.headers.get("x-reflow-event") == "credential.needs_reconnect"]
    assert notice["credentialId"] == credential["credentialId"] and notice["userId"] == user
    assert "rt-" not in str(notice)
    # Reconnect: the same credential, healthy; each failed run reruns successfully.
    back = connect(client, user)
    assert back["credentialId"] == credential["credentialId"]
    assert credential_of(client, user)["health"] == "ok"
    for answer in failed:
        rerun = client.post(f"/workflows/{workflow_id}/rerun/{answer['executionId']}",
                            json={"wait": 10})
        assert rerun.status_code == 200, rerun.text
        log = client.get(f"/logs/{rerun.json()['executionId']}").json()["data"]
        assert log["status"] == "succeeded"


# -- client credentials ------------------------------------------------------------------------


def test_a_client_credentials_app_gets_its_token_at_run_time_and_reuses_it(
    client: TestClient, provider: FakeProvider, installed: Callable[..., Any],
    clock: ManualClock,
) -> None:
    app = provider.app(kind="oauth2_client_credentials")
    assert client.post("/apps", json=app).status_code == 200, app
    workflow_id, user = installed(calling_crm(provider.base))
    response = client.post("/headless/credentials", json={
        "userId": user, "credential": {"type": "crm", "data": {}}})
    assert response.status_code == 200, response.text
    assert run(client, workflow_id, user)["output"] == {"name": "Ann"}
    assert run(client, workflow_id, user)["output"] == {"name": "Ann"}
    assert provider.client_grants == 1
    assert credential_of(client, user)["expiresAt"]
    expire(clock, provider)
    assert run(client, workflow_id, user)["output"] == {"name": "Ann"}
    assert provider.client_grants == 2
