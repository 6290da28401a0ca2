"""Users' credentials: created, listed and deleted through the API without a value ever
coming back, stored encrypted, and bound to runs whose http blocks name their app."""

from __future__ import annotations

import base64
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from fastapi.testclient import TestClient

from reflow import sealing
from reflow.services import Reflow
from reflow.settings import Settings
from support import EXAMPLES, example_shop, serving

API_KEY = "sk-live-4f9a1c2e7b3d"
API_KEY_2 = "sk-live-second-8e2d7c"
QUERY_KEY = "qk-0b7e55d1aa"
PASSWORD = "pw-correct-horse-9"
USERNAME = "ann@shop.example"

SHOP_APP = b"""\
name: shop
displayName: Example Shop
auth: {type: api_key, header: X-Api-Key}   # the value sent is the secret field's
fields:
  - {name: apiKey, displayName: API key, secret: true, required: true}
"""
QUERY_APP = {"name": "maps", "displayName": "Maps", "icon": "https://cdn.example/maps.png",
             "auth": {"type": "api_key", "query": "key"},
             "fields": [{"name": "key", "displayName": "Key", "secret": True}]}
BASIC_APP = {"name": "ledger", "displayName": "Ledger", "auth": {"type": "basic"},
             "fields": [{"name": "username", "displayName": "Username"},
                        {"name": "password", "displayName": "Password", "secret": True}]}


@pytest.fixture
def executor_processes() -> int:
    """No executor process (a test parametrizes it to run the real one)."""
    return 0


@pytest.fixture
def settings(make_settings: Callable[..., Settings], executor_processes: int) -> Settings:
    """Test settings reaching the local target."""
    return make_settings(http_allow_networks="127.0.0.0/8",
                         executor_processes=executor_processes)


class Target:
    """A local API that answers 200 only to the credential it expects, echoing what it got."""

    def __init__(self, base: str, seen: list[dict[str, Any]]) -> None:
        self.base = base
        self.seen = seen


def _authorized(request: BaseHTTPRequestHandler) -> tuple[bool, dict[str, Any]]:
    query = parse_qs(urlsplit(request.path).query)
    got = {"x-api-key": request.headers.get("x-api-key"),
           "authorization": request.headers.get("authorization"),
           "key": (query.get("key") or [None])[0], "path": urlsplit(request.path).path}
    expected = {
        "/shop": got["x-api-key"] in (API_KEY, API_KEY_2),
        "/maps": got["key"] == QUERY_KEY,
        "/ledger": got["authorization"] == "Basic " + base64.b64encode(
            f"{USERNAME}:{PASSWORD}".encode()).decode(),
    }
    return expected.get(got["path"], False), got


@pytest.fixture
def target() -> Iterator[Target]:
    """The local API; its answer echoes the credential it received (to test redaction)."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok, got = _authorized(self)
            seen.append(got)
            body = orjson.dumps({"ok": ok, "echo": got})
            self.send_response(200 if ok else 401)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    with serving(Handler) as base:
        yield Target(base, seen)


def declare(client: TestClient, body: Any) -> None:
    """POST /apps (YAML bytes or a JSON object)."""
    if isinstance(body, bytes):
        response = client.post("/apps", content=body,
                               headers={"content-type": "application/yaml"})
    else:
        response = client.post("/apps", json=body)
    assert response.status_code == 200, response.text


def create(client: TestClient, user_id: str, app: str, data: dict[str, Any]) -> str:
    """POST /headless/credentials; the credentialId."""
    response = client.post("/headless/credentials", json={
        "userId": user_id, "credential": {"type": app, "data": data}})
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    credential_id: str = response.json()["credentialId"]
    return credential_id


def calling(target: Target, app: str, *, echo: bool = True) -> dict[str, Any]:
    """A workflow whose http block calls the target as ``app``, then answers its body."""
    blocks: list[dict[str, Any]] = [
        {"id": "call", "type": "http",
         "with": {"method": "GET", "url": f"{target.base}/{app}", "credential": app}},
        {"id": "context", "type": "transform", "with": {"value": "{{ $string($$) }}"}},
    ]
    if echo:
        blocks.append({"id": "done", "type": "respond",
                       "with": {"body": {"ok": "{{ call.body.ok }}",
                                         "echo": "{{ call.body.echo }}"}}})
    return {"name": f"Call {app}", "trigger": {"type": "api"}, "blocks": blocks}


def run(client: TestClient, workflow_id: str, user_id: str) -> dict[str, Any]:
    """Run to its end and read its log."""
    response = client.post("/run/workflow", params={"wait": 10},
                           json={"workflowId": workflow_id, "userId": user_id, "data": {}})
    assert response.status_code == 200, response.text
    log = client.get(f"/logs/{response.json()['executionId']}")
    assert log.status_code == 200, log.text
    data: dict[str, Any] = log.json()["data"]
    return data


# -- create, list, delete --------------------------------------------------------------------


def test_a_credential_is_listed_in_both_paths_with_its_app_and_health_never_its_value(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    declare(client, SHOP_APP)
    user_id = make_user("jane@example.com")
    credential_id = create(client, user_id, "shop", {"apiKey": API_KEY})
    for path in (f"/credentials/users/{user_id}", "/users/jane@example.com/credentials",
                 f"/2024-03/users/{user_id}/credentials"):
        response = client.get(path)
        assert response.status_code == 200, response.text
        assert API_KEY not in response.text
        (item,) = response.json()["data"]
        assert item["credentialId"] == credential_id
        assert (item["type"], item["name"], item["app"], item["health"]) == (
            "shop", "Example Shop", "shop", "ok")
        assert item["createdAt"] and item["updatedAt"]


def test_the_sdk_create_path_takes_the_user_from_the_path(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    declare(client, SHOP_APP)
    user_id = make_user()
    response = client.post(f"/2023-12/users/{user_id}/credentials",
                           json={"credential": {"type": "shop", "data": {"apiKey": API_KEY}}})
    assert response.status_code == 200, response.text
    listed = client.get(f"/users/{user_id}/credentials").json()["data"]
    assert [c["credentialId"] for c in listed] == [response.json()["credentialId"]]


def test_values_are_checked_against_the_apps_fields_naming_each_problem_never_a_value(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    declare(client, SHOP_APP)
    user_id = make_user()
    response = client.post("/headless/credentials", json={
        "userId": user_id, "credential": {"type": "shop", "data": {"apikey": API_KEY}}})
    assert response.status_code == 422, response.text
    paths = {p["path"]: p["reason"] for p in response.json()["problems"]}
    assert "did you mean 'apiKey'" in paths["credential.data.apikey"]
    assert "required by app 'shop'" in paths["credential.data.apiKey"]
    assert API_KEY not in response.text
    unknown_app = client.post("/headless/credentials", json={
        "userId": user_id, "credential": {"type": "nope", "data": {}}})
    assert unknown_app.status_code == 404
    assert "app 'nope' not found" in unknown_app.json()["message"]
    assert client.get(f"/users/{user_id}/credentials").json()["data"] == []


def test_deleting_a_credential_removes_it_and_a_second_delete_is_404(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    declare(client, SHOP_APP)
    user_id = make_user()
    credential_id = create(client, user_id, "shop", {"apiKey": API_KEY})
    path = f"/users/{user_id}/credentials/{credential_id}"
    assert client.delete(path).json() == {"success": True}
    assert client.get(f"/users/{user_id}/credentials").json()["data"] == []
    again = client.delete(path)
    assert again.status_code == 404
    assert credential_id in again.json()["message"]


def test_deleting_a_user_deletes_its_credentials_with_it(
    client: TestClient, reflow: Reflow, make_user: Callable[..., str]
) -> None:
    declare(client, SHOP_APP)
    gone, kept = make_user(), make_user()
    create(client, gone, "shop", {"apiKey": API_KEY})
    other = create(client, kept, "shop", {"apiKey": API_KEY})
    assert client.delete(f"/users/{gone}").status_code == 200
    assert client.portal is not None
    [team] = client.portal.call(reflow.store.list_teams)
    assert client.portal.call(reflow.store.list_credentials, team.id, gone) == []
    assert [c.id for c in client.portal.call(reflow.store.list_credentials, team.id,
                                             kept)] == [other]


def test_another_users_credential_cannot_be_deleted_through_this_user(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    declare(client, SHOP_APP)
    owner, other = make_user(), make_user()
    credential_id = create(client, owner, "shop", {"apiKey": API_KEY})
    assert client.delete(f"/users/{other}/credentials/{credential_id}").status_code == 404
    assert len(client.get(f"/users/{owner}/credentials").json()["data"]) == 1


def test_no_secret_key_refuses_to_store_a_credential_with_409(
    make_settings: Callable[..., Settings], make_user: Callable[..., str],
    client: TestClient, reflow: Reflow,
) -> None:
    declare(client, SHOP_APP)
    user_id = make_user()
    reflow.credentials.keys = None
    response = client.post("/headless/credentials", json={
        "userId": user_id, "credential": {"type": "shop", "data": {"apiKey": API_KEY}}})
    assert response.status_code == 409
    assert "REFLOW_SECRET_KEY" in response.json()["message"]
    assert API_KEY not in response.text


# -- in runs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("app", "declaration", "data"), [
    ("shop", SHOP_APP, {"apiKey": API_KEY}),
    ("maps", QUERY_APP, {"key": QUERY_KEY}),
    ("ledger", BASIC_APP, {"username": USERNAME, "password": PASSWORD}),
])
def test_a_run_applies_the_users_credential_and_no_log_shows_its_value(
    client: TestClient, installed: Callable[..., tuple[str, str]], target: Target,
    app: str, declaration: Any, data: dict[str, Any],
) -> None:
    declare(client, declaration)
    workflow_id, user_id = installed(calling(target, app))
    create(client, user_id, app, data)
    log = run(client, workflow_id, user_id)
    assert log["status"] == "succeeded", log
    assert target.seen[-1]["path"] == f"/{app}"
    assert log["results"][-1]["data"][0][0]["json"]["ok"] is True
    shown = orjson.dumps(log).decode()
    for value in (*data.values(), base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()):
        if value != USERNAME:
            assert value not in shown
    # The expression context never held it: the transform saw the whole context.
    context = next(r for r in log["results"] if r["connectorId"] == "context")
    assert "call" in context["data"][0][0]["json"]


@pytest.mark.parametrize("executor_processes", [1])
def test_an_executor_process_gets_the_binding_with_the_job_and_logs_no_value(
    client: TestClient, installed: Callable[..., tuple[str, str]], target: Target,
) -> None:
    declare(client, SHOP_APP)
    workflow_id, user_id = installed(calling(target, "shop"))
    create(client, user_id, "shop", {"apiKey": API_KEY})
    log = run(client, workflow_id, user_id)
    assert log["status"] == "succeeded", log
    assert target.seen[-1]["x-api-key"] == API_KEY
    assert API_KEY not in orjson.dumps(log).decode()


def test_the_example_shop_started_with_a_key_answers_a_run_with_the_users_credential(
    client: TestClient, installed: Callable[..., tuple[str, str]],
) -> None:
    shop = example_shop()
    server, thread = shop.serve(0, api_key=API_KEY)
    try:
        declare(client, (EXAMPLES / "shop.app.yaml").read_bytes())
        workflow_id, user_id = installed({
            "name": "Read an order", "trigger": {"type": "api"},
            "blocks": [{"id": "order", "type": "http", "with": {
                "method": "GET", "url": f"{server.url}/orders/1001", "credential": "shop"}}]})
        wrong = create(client, user_id, "shop", {"apiKey": "not-the-key"})
        refused = run(client, workflow_id, user_id)
        client.delete(f"/users/{user_id}/credentials/{wrong}")
        create(client, user_id, "shop", {"apiKey": API_KEY})
        answered = run(client, workflow_id, user_id)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert refused["status"] == "failed"
    assert "answered 401" in orjson.dumps(refused).decode()
    assert answered["status"] == "succeeded", answered
    assert answered["results"][0]["data"][0][0]["json"]["body"]["id"] == "1001"


def test_a_run_for_a_user_without_a_credential_fails_naming_the_app_and_the_user(
    client: TestClient, installed: Callable[..., tuple[str, str]], target: Target,
    make_user: Callable[..., str],
) -> None:
    declare(client, SHOP_APP)
    workflow_id, user_id = installed(calling(target, "shop"))
    username = client.get(f"/users/{user_id}").json()["username"]
    log = run(client, workflow_id, user_id)
    assert log["status"] == "failed"
    message = log["error"]["message"] if isinstance(log.get("error"), dict) else str(log)
    assert "'shop'" in message and repr(username) in message, message
    assert target.seen == []


def test_a_run_naming_an_undeclared_app_fails_saying_to_declare_it(
    client: TestClient, installed: Callable[..., tuple[str, str]], target: Target,
) -> None:
    workflow_id, user_id = installed(calling(target, "shop"))
    log = run(client, workflow_id, user_id)
    assert log["status"] == "failed"
    assert "no app named 'shop' is declared" in orjson.dumps(log).decode()


def test_the_newest_credential_is_used_unless_the_installation_pins_one(
    client: TestClient, reflow: Reflow, installed: Callable[..., tuple[str, str]],
    target: Target,
) -> None:
    declare(client, SHOP_APP)
    workflow_id, user_id = installed(calling(target, "shop"))
    first = create(client, user_id, "shop", {"apiKey": API_KEY})
    create(client, user_id, "shop", {"apiKey": API_KEY_2})
    run(client, workflow_id, user_id)
    assert target.seen[-1]["x-api-key"] == API_KEY_2
    portal = client.portal
    assert portal is not None
    team = portal.call(reflow.keys.team, None)
    installation = portal.call(reflow.store.get_installation, team.id, workflow_id, user_id)
    assert installation is not None
    assert portal.call(reflow.store.pin_credentials, team.id, installation.id, [first])
    run(client, workflow_id, user_id)
    assert target.seen[-1]["x-api-key"] == API_KEY


def test_a_deleted_credential_is_not_used_by_the_next_run(
    client: TestClient, installed: Callable[..., tuple[str, str]], target: Target,
) -> None:
    declare(client, SHOP_APP)
    workflow_id, user_id = installed(calling(target, "shop"))
    credential_id = create(client, user_id, "shop", {"apiKey": API_KEY})
    assert run(client, workflow_id, user_id)["status"] == "succeeded"
    client.delete(f"/users/{user_id}/credentials/{credential_id}")
    assert run(client, workflow_id, user_id)["status"] == "failed"


# -- encryption at rest ------------------------------------------------------------------------


def _stored_text(settings: Settings, database_backend: str) -> bytes:
    """Everything the database holds, as bytes: the SQLite file and its WAL, or a
    PostgreSQL dump (every table's rows as text when pg_dump is missing)."""
    if database_backend == "sqlite":
        path = Path(settings.sqlite_path)
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    try:
        dumped = subprocess.run(["pg_dump", "--data-only", settings.database_url],
                                capture_output=True, check=True, timeout=60)
        return dumped.stdout
    except FileNotFoundError:
        import asyncio

        import asyncpg

        async def read_all() -> bytes:
            conn = await asyncpg.connect(settings.database_url)
            try:
                names = [r[0] for r in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
                rows = [str(list(r)) for n in names
                        for r in await conn.fetch(f'SELECT * FROM "{n}"')]
            finally:
                await conn.close()
            return "\n".join(rows).encode()

        return asyncio.run(read_all())


def test_no_secret_value_is_stored_in_clear_in_the_database(
    client: TestClient, settings: Settings, database_backend: str, reflow: Reflow,
    installed: Callable[..., tuple[str, str]], target: Target,
) -> None:
    declare(client, SHOP_APP)
    declare(client, BASIC_APP)
    workflow_id, user_id = installed(calling(target, "shop"))
    create(client, user_id, "shop", {"apiKey": API_KEY})
    create(client, user_id, "ledger", {"username": USERNAME, "password": PASSWORD})
    assert run(client, workflow_id, user_id)["status"] == "succeeded"
    if database_backend == "sqlite":
        # Whatever is only in the WAL is read from the WAL too.
        sqlite3.connect(settings.sqlite_path).close()
    stored = _stored_text(settings, database_backend)
    assert b"Example Shop" in stored  # the dump does hold the data
    for secret in (API_KEY, PASSWORD):
        assert secret.encode() not in stored


# -- key rotation ------------------------------------------------------------------------------

NEW_SECRET_KEY = base64.urlsafe_b64encode(b"k" * 32).decode()


def test_rotate_key_reencrypts_credentials_and_sealed_triggers_under_the_newest_key(
    client: TestClient, reflow: Reflow, settings: Settings,
    installed: Callable[..., tuple[str, str]], target: Target,
) -> None:
    declare(client, SHOP_APP)
    workflow_id, user_id = installed(calling(target, "shop", echo=False))
    create(client, user_id, "shop", {"apiKey": API_KEY})
    response = client.post("/run/workflow", params={"wait": 10}, json={
        "workflowId": workflow_id, "userId": user_id, "data": {"password": PASSWORD}})
    assert response.status_code == 200, response.text
    portal = client.portal
    assert portal is not None
    keys = f"{NEW_SECRET_KEY},{settings.secret_key_text()}"
    reflow.credentials.keys = sealing.keyring(keys)

    done = {r.kind: r for r in portal.call(reflow.credentials.rotate_key, keys)}
    again = {r.kind: r for r in portal.call(reflow.credentials.rotate_key, keys)}

    assert (done["credentials"].rotated, done["triggers"].rotated) == (1, 1)
    assert (again["credentials"].current, again["triggers"].current) == (1, 1)
    assert again["credentials"].rotated == again["triggers"].rotated == 0
    newest = sealing.keyring(NEW_SECRET_KEY)
    [(_, credential)] = portal.call(reflow.store.sealed_batch, "credentials", "", 10)
    [(_, trigger)] = portal.call(reflow.store.sealed_batch, "triggers", "", 10)
    assert orjson.loads(newest.decrypt(credential)) == {"apiKey": API_KEY}
    assert sealing.open_trigger(trigger, newest) == {"data": {"password": PASSWORD}}
    # Runs go on with the rotated credential.
    reflow.runs.sealing_keys = reflow.credentials.keys = newest
    assert run(client, workflow_id, user_id)["status"] == "succeeded"
