"""OAuth refresh on PostgreSQL, as real processes: one API process and four workers.

A user connects the fake provider (tests/oauth_provider.py) through the full redirect flow
over HTTP. The provider then refuses the access token (it expired early), and fifty
executions that call its protected API start at once: the four workers' runs get 401 and
ask for a refresh, and the provider must see exactly one refresh-token grant, every run
must succeed, and the rotated refresh token must be the one stored. Then the provider
revokes the refresh token: the credential becomes needs_reconnect, one notification
reaches the team's error stream, the runs fail saying the credential needs to be
reconnected; after the user connects again, rerunning the failed executions succeeds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import orjson
import pytest

from oauth_provider import CLIENT_ID, CLIENT_SECRET, FakeProvider, oauth_provider
from pg_support import truncate
from reflow.sealing import keyring
from support import (
    SERVE_HEADERS,
    SERVE_KEY,
    Receiver,
    free_port,
    receiving,
    start_serve,
    start_worker,
    stop_serve,
    wait_all_finished,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SECRET_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
USER = "ann@example.com"
WORKFLOW = "Read my CRM contact"
TEAM_REDIRECT = "https://app.example.com/integrations/connected"
WORKERS = 4
RUNS = 50
FAILING_RUNS = 10
# A refresh takes this long at the provider, so the runs that need the token meanwhile
# (on every worker) pile up behind the one that refreshes.
REFRESH_DELAY = 0.3


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    """The fake provider on 127.0.0.1, its refreshes slow enough to overlap."""
    with oauth_provider() as served:
        served.refresh_delay = REFRESH_DELAY
        yield served


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The team's error stream, received locally."""
    with receiving() as received:
        yield received


class Deployment:
    """The API process and the workers on one PostgreSQL database (stopped by ``stop``)."""

    def __init__(self, tmp: Path, database_url: str, provider: FakeProvider) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        workflow = tmp / "crm.json"
        workflow.write_text(json.dumps({
            "name": WORKFLOW, "trigger": {"type": "api"}, "blocks": [
                {"id": "me", "type": "http",
                 "with": {"method": "GET", "url": f"{provider.base}/api/me",
                          "credential": "crm"}},
                {"id": "done", "type": "respond",
                 "with": {"body": {"name": "{{ me.body.name }}"}}}]}))
        env = {
            "REFLOW_DATABASE_URL": database_url,
            "REFLOW_BOOTSTRAP_KEY": SERVE_KEY,
            "REFLOW_SECRET_KEY": SECRET_KEY,
            "REFLOW_HTTP_ALLOW_NETWORKS": "127.0.0.0/8",
            "REFLOW_PUBLIC_URL": self.base,
            "REFLOW_OAUTH_CRM_CLIENT_ID": CLIENT_ID,
            "REFLOW_OAUTH_CRM_CLIENT_SECRET": CLIENT_SECRET,
            "REFLOW_DEV_KEY_FILE": str(tmp / "dev-key"),
            "REFLOW_WORKER_CONCURRENCY": "16",
            "REFLOW_ERROR_STREAM_INTERVAL": "1",
            "REFLOW_SHUTDOWN_GRACE": "5",
        }
        self.log = (tmp / "processes.log").open("ab")
        self.workers: list[subprocess.Popen[bytes]] = []
        self.api = start_serve(["--no-worker", "--apply", str(workflow), "--demo-user", USER],
                               env, port, self.log)
        try:
            with ThreadPoolExecutor(WORKERS) as pool:
                started = list(pool.map(
                    lambda i: start_worker(env, tmp / f"worker{i}.out", self.log),
                    range(WORKERS)))
            self.workers = [process for process, _ in started]
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM every process at once (killed if it hangs), then close the log."""
        with ThreadPoolExecutor(WORKERS + 1) as pool:
            list(pool.map(stop_serve, [*self.workers, self.api]))
        self.log.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """An API call with the key; its JSON answer (asserting a 2xx)."""
        response = httpx.request(method, f"{self.base}{path}", headers=SERVE_HEADERS, timeout=15,
                                 **kwargs)
        assert response.is_success, (method, path, response.status_code, response.text)
        return response.json()

    def connect(self) -> str:
        """The full redirect flow for USER, as a browser follows it; the credential's id."""
        url = self.call("GET", "/headless/oauthUrl",
                        params={"app": "crm", "userId": USER})["data"]["oauthUrl"]
        at_provider = httpx.get(url, timeout=10)
        assert at_provider.status_code == 302, at_provider.text
        callback = at_provider.headers["location"]
        assert callback.startswith(f"{self.base}/oauth/callback?"), callback
        back = httpx.get(callback, timeout=15)  # no API key: a browser calls it
        assert back.status_code == 302, back.text
        target = urlsplit(back.headers["location"])
        assert f"{target.scheme}://{target.netloc}{target.path}" == TEAM_REDIRECT
        outcome = {k: v[0] for k, v in parse_qs(target.query).items()}
        assert outcome["status"] == "success", outcome
        credential_id: str = outcome["credentialId"]
        return credential_id

    def credential(self) -> dict[str, Any]:
        """USER's only credential as listed."""
        (item,) = self.call("GET", f"/users/{USER}/credentials")["data"]
        found: dict[str, Any] = item
        return found

    def start_runs(self, count: int) -> list[str]:
        """Start ``count`` runs at once (each answered once committed); their ids."""
        body = {"workflowName": WORKFLOW, "userId": USER, "data": {}}
        with ThreadPoolExecutor(count) as pool:
            answers = list(pool.map(lambda _: self.call("POST", "/run/workflow", json=body),
                                    range(count)))
        return [answer["executionId"] for answer in answers]

    def finished(self, ids: list[str]) -> dict[str, Any]:
        """Each execution's detail once final (bounded)."""
        return wait_all_finished(self.base, SERVE_HEADERS, ids, 20)


@pytest.fixture
def deployment(tmp_path: Path, postgres_url: str, provider: FakeProvider
               ) -> Iterator[Deployment]:
    """The API process and four workers on an empty database, stopped after the test."""
    truncate(postgres_url)
    started = Deployment(tmp_path, postgres_url, provider)
    try:
        yield started
    finally:
        started.stop()


def stored_values(database_url: str, credential_id: str) -> dict[str, Any]:
    """A credential's values as stored, opened with the deployment's key (read past
    reflow)."""
    async def fetch() -> str:
        connection = await asyncpg.connect(database_url)
        try:
            sealed: str = await connection.fetchval(
                "SELECT sealed FROM credentials WHERE id = $1", credential_id)
        finally:
            await connection.close()
        return sealed

    values: dict[str, Any] = orjson.loads(keyring(SECRET_KEY).decrypt(
        asyncio.run(fetch()).encode()))
    return values


def notifications(receiver: Receiver, event: str) -> list[Any]:
    """The bodies the error stream POSTed for ``event``."""
    return [r.json for r in list(receiver.received) if r.headers.get("x-reflow-event") == event]


def wait_notified(receiver: Receiver, failed: int, timeout: float = 15) -> None:
    """Until the error stream told of ``failed`` failed executions and a credential."""
    deadline = time.monotonic() + timeout
    while (len(notifications(receiver, "execution.failed")) < failed
           or not notifications(receiver, "credential.needs_reconnect")):
        assert time.monotonic() < deadline, [r.headers for r in receiver.received]
        time.sleep(0.05)


def test_fifty_runs_on_four_workers_refresh_once_and_a_revoked_token_needs_reconnect(
    deployment: Deployment, provider: FakeProvider, receiver: Receiver, postgres_url: str,
) -> None:
    deployment.call("POST", "/apps", json=provider.app())
    deployment.call("PUT", "/settings/oauth", json={"redirectUrl": TEAM_REDIRECT})
    deployment.call("PUT", "/settings/error-stream", json={"url": receiver.url})
    credential_id = deployment.connect()
    assert (provider.exchanges, deployment.credential()["health"]) == (1, "ok")

    # The access token stops working before its announced expiry: each run gets a 401,
    # and one refresh, on one worker, serves all of them.
    provider.expire_access_tokens()
    ran = deployment.finished(deployment.start_runs(RUNS))
    assert [d["status"] for d in ran.values()] == ["succeeded"] * RUNS, [
        d["error"] for d in ran.values() if d["status"] != "succeeded"][:3]
    assert all(d["output"] == {"name": "Ann"} for d in ran.values())
    assert (provider.refresh_grants, provider.refreshes) == (1, 1)
    assert provider.refused_api_calls >= 1
    (live_refresh_token,) = provider.refresh  # the rotated one; the first was used up
    assert stored_values(postgres_url, credential_id)["refreshToken"] == live_refresh_token
    assert deployment.credential()["health"] == "ok"

    # The user revokes the app's access: the refresh is refused once, the credential
    # needs reconnecting, the team hears of it once and the runs fail saying so.
    provider.revoke_refresh_tokens()
    provider.expire_access_tokens()
    failed = deployment.finished(deployment.start_runs(FAILING_RUNS))
    reconnect = f"credential {credential_id} for app 'crm' needs to be reconnected"
    for detail in failed.values():
        assert detail["status"] == "failed"
        assert reconnect in detail["error"]["message"], detail["error"]
        assert detail["error"]["blockId"] == "me"
    credential = deployment.credential()
    assert credential["health"] == "needs_reconnect"
    assert "invalid_grant" in credential["healthReason"]
    assert provider.refresh_grants == 2  # one refused: the cool-down stops the others
    wait_notified(receiver, FAILING_RUNS)
    (notice,) = notifications(receiver, "credential.needs_reconnect")
    assert (notice["credentialId"], notice["app"]) == (credential_id, "crm")
    assert reconnect in notice["message"]
    assert "rt-" not in str(notice) and "at-" not in str(notice)

    # Connecting again replaces the tokens of the same credential; every failed execution
    # reruns successfully with them.
    assert deployment.connect() == credential_id
    assert deployment.credential()["health"] == "ok"
    with ThreadPoolExecutor(FAILING_RUNS) as pool:
        reruns = list(pool.map(
            lambda execution_id: deployment.call(
                "POST", f"/workflows/{WORKFLOW}/rerun/{execution_id}",
                params={"userId": USER}, json={"wait": 15}),
            failed))
    assert [r["status"] for r in reruns] == ["succeeded"] * FAILING_RUNS, reruns[:3]
    assert all(r["output"] == {"name": "Ann"} for r in reruns)
    assert (provider.exchanges, provider.refresh_grants) == (2, 2)
    assert len(notifications(receiver, "credential.needs_reconnect")) == 1
