"""Secrets stay secret: a trigger's secret fields are stored sealed, shown redacted wherever
they reappear (URL queries, free text, errors), and still replayed by a rerun."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import asyncpg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from reflow.blocks.redaction import SECRET_MARK
from reflow.sealing import keyring
from reflow.services import Reflow
from reflow.settings import Settings
from support import TEST_SECRET_KEY, execution_log, json_handler, serving

PASSWORD, API_KEY = "hunter2", "abc123xyz"
DATA = {"label": "order 7", "password": PASSWORD, "nested": {"apiKey": API_KEY}}


def login_workflow(base: str) -> dict[str, Any]:
    """Puts the password into a URL query and into free text, and answers what it saw."""
    return {
        "name": "Login",
        "trigger": {"type": "api"},
        "blocks": [
            {"id": "call", "type": "http", "with": {
                "method": "GET",
                "url": base + "/login?user=ann&q={{ trigger.data.password }}&token=t0k3n-v4lue",
            }},
            {"id": "note", "type": "transform", "with": {"value": {
                "text": "logged in with {{ trigger.data.password }} as ann",
                "lengths": "{{ [$length(trigger.data.password), "
                           "$length(trigger.data.nested.apiKey)] }}",
            }}},
            {"id": "done", "type": "respond", "with": {"body": {
                "lengths": "{{ note.lengths }}", "label": "{{ trigger.data.label }}",
            }}},
        ],
    }


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Test settings reaching the local target."""
    return make_settings(http_allow_networks="127.0.0.0/8")


@pytest.fixture
def target() -> Iterator[tuple[str, list[str]]]:
    """A local target; yields its base URL and the request paths it saw."""
    seen: list[str] = []

    def answer(request: BaseHTTPRequestHandler) -> None:
        seen.append(request.path)

    with serving(json_handler(answer)) as base:
        yield base, seen


@pytest.fixture
def login(
    target: tuple[str, list[str]], installed: Callable[..., tuple[str, str]]
) -> tuple[str, str]:
    """The Login workflow installed for a new user: (workflowId, userId)."""
    return installed(login_workflow(target[0]))


def run(client: TestClient, workflow_id: str, user_id: str, data: Any = DATA) -> dict[str, Any]:
    """Run to its end; the answer."""
    response = client.post("/run/workflow?wait=10", json={
        "workflowId": workflow_id, "userId": user_id, "data": data})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def stored_trigger(settings: Settings, execution_id: str) -> bytes:
    """The executions row's trigger bytes, read with the database's own driver past reflow."""
    if settings.database_url.startswith("postgresql://"):
        return asyncio.run(_postgres_trigger(settings.database_url, execution_id))
    with sqlite3.connect(settings.sqlite_path) as db:
        row = db.execute("SELECT trigger FROM executions WHERE id = ?", (execution_id,)).fetchone()
    value: bytes = row[0]
    return value


async def _postgres_trigger(url: str, execution_id: str) -> bytes:
    connection = await asyncpg.connect(url)
    try:
        value: bytes = await connection.fetchval(
            "SELECT trigger FROM executions WHERE id = $1", execution_id)
    finally:
        await connection.close()
    return value


def test_the_stored_trigger_holds_the_secret_fields_only_encrypted(
    client: TestClient, settings: Settings, login: tuple[str, str]
) -> None:
    answer = run(client, *login)
    raw = stored_trigger(settings, answer["executionId"])
    assert PASSWORD.encode() not in raw and API_KEY.encode() not in raw
    assert json.loads(raw)["data"]["label"] == "order 7"  # the rest stays readable


def test_the_logs_show_the_secrets_redacted_in_the_trigger_urls_text_and_steps(
    client: TestClient, login: tuple[str, str], target: tuple[str, list[str]]
) -> None:
    answer = run(client, *login)
    assert answer["output"] == {"lengths": [7, 9], "label": "order 7"}
    assert target[1] == [f"/login?user=ann&q={PASSWORD}&token=t0k3n-v4lue"]  # the real call

    shown = execution_log(client, answer["executionId"])
    text = json.dumps(shown)
    assert PASSWORD not in text and API_KEY not in text and "t0k3n-v4lue" not in text
    assert shown["trigger"]["data"] == {
        "label": "order 7", "password": SECRET_MARK, "nested": {"apiKey": SECRET_MARK}}
    steps = {s["blockId"]: s for s in shown["steps"]}
    assert steps["call"]["input"]["url"].endswith(
        f"/login?user=ann&q={SECRET_MARK}&token={SECRET_MARK}")
    assert steps["note"]["output"]["text"] == f"logged in with {SECRET_MARK} as ann"
    listed = client.get(f"/workflows/{login[0]}/logs", params={"userId": login[1]}).json()
    assert PASSWORD not in json.dumps(listed) and answer["executionId"] in json.dumps(listed)


def test_a_rerun_replays_the_real_secret_values(
    client: TestClient, settings: Settings, login: tuple[str, str]
) -> None:
    workflow_id, user_id = login
    source = run(client, workflow_id, user_id)["executionId"]
    response = client.post(f"/workflows/{workflow_id}/rerun/{source}", json={"wait": 10})
    assert response.status_code == 200, response.text
    assert response.json()["output"] == {"lengths": [7, 9], "label": "order 7"}
    rerun = response.json()["executionId"]
    assert stored_trigger(settings, rerun) == stored_trigger(settings, source)


def test_a_rerun_with_new_data_seals_it_and_the_same_idempotency_key_finds_that_rerun(
    client: TestClient, settings: Settings, login: tuple[str, str]
) -> None:
    workflow_id, user_id = login
    source = run(client, workflow_id, user_id)["executionId"]
    body = {"wait": 10, "data": {**DATA, "password": "correct horse"}}
    headers = {"Idempotency-Key": "login-1"}
    first = client.post(f"/workflows/{workflow_id}/rerun/{source}", json=body, headers=headers)
    again = client.post(f"/workflows/{workflow_id}/rerun/{source}", json=body, headers=headers)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["executionId"] == again.json()["executionId"]
    assert first.json()["output"]["lengths"] == [13, 9]
    assert b"correct horse" not in stored_trigger(settings, first.json()["executionId"])


def test_a_resumed_execution_runs_with_the_opened_secrets(
    client: TestClient, reflow: Reflow, login: tuple[str, str]
) -> None:
    source = run(client, *login)["executionId"]
    portal = client.portal
    assert portal is not None
    team = portal.call(reflow.keys.first_team)
    assert team is not None
    record = portal.call(reflow.store.get_execution, team.id, source)
    assert record is not None
    job = portal.call(reflow.runs.prepare, record)
    assert job.trigger == {"data": DATA}


def test_a_rerun_after_its_key_was_removed_answers_409_naming_the_cause(
    client: TestClient, reflow: Reflow, login: tuple[str, str]
) -> None:
    workflow_id, user_id = login
    source = run(client, workflow_id, user_id)["executionId"]
    # As after a restart whose REFLOW_SECRET_KEY no longer lists the key that sealed it.
    reflow.runs.sealing_keys = keyring(Fernet.generate_key().decode())
    response = client.post(f"/workflows/{workflow_id}/rerun/{source}", json={"wait": 10})
    assert response.status_code == 409, response.text
    assert "no longer in REFLOW_SECRET_KEY" in response.json()["message"]
    replaced = client.post(f"/workflows/{workflow_id}/rerun/{source}",
                           json={"wait": 10, "data": DATA})
    assert replaced.status_code == 200 and replaced.json()["output"]["lengths"] == [7, 9]
    # Rotated: the new key first, the old one kept, and the source opens again.
    reflow.runs.sealing_keys = keyring(f"{Fernet.generate_key().decode()},{TEST_SECRET_KEY}")
    response = client.post(f"/workflows/{workflow_id}/rerun/{source}", json={"wait": 10})
    assert response.status_code == 200 and response.json()["output"]["lengths"] == [7, 9]


def test_a_failing_step_names_no_secret_in_its_error_or_the_executions(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed({
        "name": "Refuse",
        "trigger": {"type": "api"},
        "blocks": [{"id": "no", "type": "fail", "with": {
            "message": "login refused for https://x.example/?key=k-123456 "
                       "with password {{ trigger.data.password }}"}}],
    })
    answer = run(client, workflow_id, user_id)
    assert answer["status"] == "failed"
    shown = execution_log(client, answer["executionId"])
    expected = (f"login refused for https://x.example/?key={SECRET_MARK} "
                f"with password {SECRET_MARK}")
    assert shown["steps"][0]["error"] == expected
    assert shown["error"]["message"] == expected


def test_a_run_whose_trigger_has_secrets_is_refused_when_no_key_is_set(
    client: TestClient, reflow: Reflow, login: tuple[str, str]
) -> None:
    reflow.runs.sealing_keys = None  # what a dev server without REFLOW_SECRET_KEY has
    response = client.post("/run/workflow?wait=10", json={
        "workflowId": login[0], "userId": login[1], "data": DATA})
    assert response.status_code == 409
    assert "REFLOW_SECRET_KEY is not set" in response.json()["message"]
    clean = run(client, *login, data={"label": "no secrets here"})
    assert clean["status"] == "succeeded"
