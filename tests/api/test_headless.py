"""Headless installation (H1, K1): configurable fields a user fills in at install time,
stored on the installations and read by runs as ``config``; an installation lacking a
required value does not run, and an upgrade needing one is refused."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow import sealing
from reflow.clock import ManualClock
from reflow.services import Reflow
from reflow.settings import Settings

INTEGRATION = "Slack alerts"
NOTIFY: dict[str, Any] = {
    "name": "Notify channel",
    "integration": INTEGRATION,
    "trigger": {"type": "api"},
    "blocks": [
        {"id": "notify", "type": "transform",
         "config": [
             {"name": "channel", "displayName": "Channel", "type": "string",
              "options": ["#sales", {"value": "#ops", "displayName": "Operations"}]},
             {"name": "token", "displayName": "Bot token", "secret": True},
             {"name": "limit", "displayName": "Limit", "type": "integer", "default": 5},
         ],
         "with": {"value": {"channel": "{{ config.channel }}", "limit": "{{ config.limit }}",
                            "auth": "Bearer {{ config.token }}"}}},
        {"id": "done", "type": "respond", "with": {"body": "{{ notify }}"}},
    ],
}
EVENTFUL: dict[str, Any] = {
    "name": "On signup",
    "integration": INTEGRATION,
    "trigger": {"type": "event", "event": "user.signup"},
    "blocks": [{"id": "greet", "type": "transform",
                "config": [{"name": "greeting", "displayName": "Greeting"}],
                "with": {"value": "{{ config.greeting }}"}}],
}
TOKEN = "xoxb-headless-secret-token"
NEW_SECRET_KEY = base64.urlsafe_b64encode(b"n" * 32).decode()


def start(client: TestClient, user_id: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/headless/startInstallation",
                           json={"userId": user_id, "integrationId": INTEGRATION, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def fields(workflow_id: str, block_id: str, **values: Any) -> dict[str, Any]:
    return {"workflowId": workflow_id, "blockId": block_id,
            "fields": [{"name": k, "value": v} for k, v in values.items()]}


def complete(client: TestClient, installation_id: str, data: list[dict[str, Any]],
             **extra: Any) -> Any:
    return client.post("/headless/completeInstallation",
                       json={"installationId": installation_id, "data": data, **extra})


def run(client: TestClient, workflow_id: str, user_id: str) -> Any:
    return client.post("/run/workflow", params={"wait": 10},
                       json={"workflowId": workflow_id, "userId": user_id, "data": {}})


@pytest.fixture
def notify(make_workflow: Callable[..., str]) -> str:
    return make_workflow(NOTIFY)


def test_start_returns_each_blocks_fields_and_the_installation_id_i3_uses(
    client: TestClient, notify: str, make_user: Callable[..., str]
) -> None:
    user_id = make_user()
    started = start(client, user_id)
    assert started["workflowIds"] == [notify]
    assert started["credentials"] == []
    [block] = started["data"]
    assert (block["workflowId"], block["blockId"], block["app"]) == (notify, "notify",
                                                                      "transform")
    by_name = {f["name"]: f for f in block["fields"]}
    assert by_name["channel"] == {
        "name": "channel", "displayName": "Channel", "type": "string", "required": True,
        "secret": False, "description": None,
        "options": [{"displayName": "#sales", "value": "#sales"},
                    {"displayName": "Operations", "value": "#ops"}]}
    assert by_name["token"]["secret"] is True
    assert by_name["limit"]["required"] is False and by_name["limit"]["default"] == 5
    # Starting installs nothing yet; completing makes the installation I3 lists by this id.
    assert client.get("/installations").json()["data"] == []
    done = complete(client, started["installationId"],
                    [fields(notify, "notify", channel="#ops", token=TOKEN)])
    assert done.status_code == 200, done.text
    [item] = client.get("/installations").json()["data"]
    assert item["installationId"] == started["installationId"]
    assert item["formData"] == [{"workflowId": notify, "blockId": "notify", "app": "transform",
                                 "fields": [by_name["limit"]]}]
    assert TOKEN not in client.get("/installations").text


def test_complete_with_missing_or_invalid_fields_answers_422_naming_each_and_writes_nothing(
    client: TestClient, notify: str, make_user: Callable[..., str]
) -> None:
    user_id = make_user()
    started = start(client, user_id)
    response = complete(client, started["installationId"],
                        [fields(notify, "notify", channel="#random", limit="ten", nope=1)])
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert "data[0].fields[0].value: channel: must be one of '#sales', '#ops'" in message
    assert "data[0].fields[1].value: limit: must be an integer" in message
    assert "has no configurable field 'nope' in block 'notify'" in message
    assert "needs a value for 'token' (block 'notify', Bot token)" in message
    assert client.get("/installations").json()["data"] == []
    response = complete(client, started["installationId"], [])
    assert response.status_code == 422
    assert "'channel'" in response.json()["message"] and "'token'" in response.json()["message"]


def test_completed_installation_is_active_and_its_runs_see_the_values_with_secrets_hidden(
    client: TestClient, reflow: Reflow, notify: str, make_user: Callable[..., str]
) -> None:
    user_id = make_user()
    started = start(client, user_id)
    done = complete(client, started["installationId"],
                    [fields(notify, "notify", channel="#sales", token=TOKEN)])
    assert done.status_code == 200, done.text
    [workflow] = done.json()["workflows"]
    assert workflow["active"] is True and workflow["installedVersion"] == 1
    response = run(client, notify, user_id)
    assert response.status_code == 200, response.text
    assert response.json()["output"]["channel"] == "#sales"
    assert response.json()["output"]["limit"] == 5  # the default
    log = client.get(f"/logs/{response.json()['executionId']}").text
    assert TOKEN not in log  # the secret value is redacted from every recorded step
    # Stored sealed: the database row does not hold the secret in the clear.
    settings = client.portal.call(  # type: ignore[union-attr]
        reflow.store.installation_settings, workflow_team(client, reflow),
        [workflow["installationId"]])
    stored = settings[workflow["installationId"]].config or b""
    assert TOKEN.encode() not in stored and b"#sales" in stored


def test_rotate_key_reencrypts_the_secret_values_of_installations(
    client: TestClient, reflow: Reflow, settings: Settings, notify: str,
    make_user: Callable[..., str],
) -> None:
    user_id = make_user()
    started = start(client, user_id)
    assert complete(client, started["installationId"],
                    [fields(notify, "notify", channel="#ops", token=TOKEN)]).status_code == 200
    portal = client.portal
    assert portal is not None
    keys = f"{NEW_SECRET_KEY},{settings.secret_key_text()}"
    reflow.credentials.keys = sealing.keyring(keys)
    done = {r.kind: r for r in portal.call(reflow.credentials.rotate_key, keys)}
    assert done["installations"].rotated == 1
    [(_, config)] = portal.call(reflow.store.sealed_batch, "installations", "", 10)
    newest = sealing.keyring(NEW_SECRET_KEY)
    assert sealing.open_trigger(config, newest)["token"] == TOKEN
    # Runs of the installation read the value under the new key alone.
    reflow.runs.sealing_keys = reflow.headless.keys = newest
    response = run(client, notify, user_id)
    assert response.status_code == 200, response.text
    assert response.json()["output"]["auth"] == f"Bearer {TOKEN}"


def workflow_team(client: TestClient, reflow: Reflow) -> str:
    team = client.portal.call(reflow.keys.first_team)  # type: ignore[union-attr]
    assert team is not None
    return team.id


def test_an_installation_lacking_a_required_value_does_not_run_and_says_which(
    client: TestClient, notify: str, install_for_new_user: Callable[..., str]
) -> None:
    user_id = install_for_new_user(notify)  # activated directly, never configured
    response = run(client, notify, user_id)
    assert response.status_code == 409
    message = response.json()["message"]
    assert "needs a value for 'channel' (block 'notify'), 'token' (block 'notify')" in message
    assert "/headless/completeInstallation" in message


def test_an_event_skips_an_unconfigured_installation_with_a_logged_reason(
    client: TestClient, make_workflow: Callable[..., str],
    install_for_new_user: Callable[..., str], caplog: pytest.LogCaptureFixture,
) -> None:
    workflow_id = make_workflow(EVENTFUL)
    user_id = install_for_new_user(workflow_id)
    with caplog.at_level(logging.WARNING, logger="reflow.services.runs"):
        response = client.post("/run/event", json={"event": "user.signup", "userId": user_id,
                                                   "data": {}})
    assert response.status_code == 200, response.text
    assert response.json()["executionIds"] == []
    assert "needs a value for 'greeting'" in caplog.text
    started = start(client, user_id, workflowIds=[workflow_id])
    assert complete(client, started["installationId"],
                    [fields(workflow_id, "greet", greeting="hi")]).status_code == 200
    fired = client.post("/run/event", json={"event": "user.signup", "userId": user_id,
                                            "data": {}})
    assert len(fired.json()["executionIds"]) == 1


def test_a_schedule_of_an_unconfigured_installation_is_skipped_until_completed(
    client: TestClient, reflow: Reflow, clock: ManualClock, make_workflow: Callable[..., str],
    install_for_new_user: Callable[..., str], caplog: pytest.LogCaptureFixture,
) -> None:
    workflow_id = make_workflow({**EVENTFUL, "name": "Digest",
                                 "trigger": {"type": "schedule", "cron": "*/5 * * * *"}})
    user_id = install_for_new_user(workflow_id)
    portal = client.portal
    assert portal is not None
    portal.call(reflow.periodic.run_once, "schedules")
    clock.advance(301)
    with caplog.at_level(logging.WARNING, logger="reflow.scheduler"):
        portal.call(reflow.periodic.run_once, "schedules")
    assert "skipped" in caplog.text and "'greeting'" in caplog.text
    logs = client.get(f"/workflows/{workflow_id}/logs", params={"userId": user_id})
    assert logs.json()["data"] == []
    started = start(client, user_id)
    assert complete(client, started["installationId"],
                    [fields(workflow_id, "greet", greeting="hi")]).status_code == 200
    portal.call(reflow.periodic.run_once, "schedules")
    clock.advance(301)
    portal.call(reflow.periodic.run_once, "schedules")
    logs = client.get(f"/workflows/{workflow_id}/logs", params={"userId": user_id})
    assert len(logs.json()["data"]) == 1


def test_upgrade_is_refused_with_422_when_the_new_version_needs_a_value_the_copy_lacks(
    client: TestClient, notify: str, make_user: Callable[..., str]
) -> None:
    user_id = make_user()
    started = start(client, user_id)
    assert complete(client, started["installationId"],
                    [fields(notify, "notify", channel="#sales", token=TOKEN)]).status_code == 200
    v2 = {**NOTIFY, "blocks": [
        {**NOTIFY["blocks"][0], "config": [*NOTIFY["blocks"][0]["config"],
                                           {"name": "mention", "displayName": "Mention"}]},
        NOTIFY["blocks"][1]]}
    assert client.put(f"/workflows/{notify}/definition", json=v2).json()["version"] == 2
    response = client.put(f"/2024-03/workflows/{notify}/upgrade", params={"userId": user_id},
                          headers={"x-api-version": ""})
    assert response.status_code == 422, response.text
    assert "needs configuration this installation lacks: 'mention' (block 'notify')" in (
        response.json()["message"])
    # Completing again gives the value and installs the latest version.
    again = start(client, user_id)
    assert [f["name"] for f in again["data"][0]["fields"]] == ["limit", "mention"]
    done = complete(client, again["installationId"],
                    [fields(notify, "notify", mention="@here")])
    assert done.status_code == 200, done.text
    assert done.json()["workflows"][0]["installedVersion"] == 2
    assert run(client, notify, user_id).json()["output"]["channel"] == "#sales"


def test_credentials_the_workflows_use_are_listed_and_pinned_on_completion(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    assert client.post("/apps", json={
        "name": "slack", "displayName": "Slack", "auth": {"type": "bearer"},
        "fields": [{"name": "token", "displayName": "Token", "secret": True}]}).status_code == 200
    workflow_id = make_workflow({
        "name": "Post", "integration": INTEGRATION, "trigger": {"type": "api"},
        "blocks": [{"id": "post", "type": "http",
                    "config": [{"name": "channel", "displayName": "Channel"}],
                    "with": {"method": "POST", "url": "https://slack.example/{{ config.channel }}",
                             "credential": "slack"}}]})
    user_id = make_user()
    started = start(client, user_id)
    assert started["credentials"] == [{"app": "slack", "connected": False,
                                       "credentialId": None}]
    assert started["data"][0]["app"] == "slack"
    created = client.post("/headless/credentials", json={
        "userId": user_id, "credential": {"type": "slack", "data": {"token": "t-1"}}})
    credential_id = created.json()["credentialId"]
    started = start(client, user_id, credentialIds=[credential_id])
    assert started["credentials"] == [{"app": "slack", "connected": True,
                                       "credentialId": credential_id}]
    assert complete(client, started["installationId"],
                    [fields(workflow_id, "post", channel="general")]).status_code == 200
    [item] = client.get("/installations").json()["data"]
    assert item["credentialIds"] == {"slack": credential_id}
    assert item["formData"] == []


def test_start_refuses_unknown_users_integrations_workflows_and_credentials_with_404(
    client: TestClient, notify: str, make_user: Callable[..., str]
) -> None:
    user_id = make_user()
    for body in ({"userId": "nobody", "integrationId": INTEGRATION},
                 {"userId": user_id, "integrationId": "Nothing"},
                 {"userId": user_id, "integrationId": INTEGRATION, "workflowIds": ["zzz"]},
                 {"userId": user_id, "integrationId": INTEGRATION, "credentialIds": ["c1"]}):
        response = client.post("/headless/startInstallation", json=body)
        assert response.status_code == 404, (body, response.text)
    response = complete(client, "0" * 24, [])
    assert response.status_code == 404


def test_install_url_serves_the_form_and_completes_without_an_api_key(
    client: TestClient, notify: str, make_user: Callable[..., str], clock: ManualClock
) -> None:
    user_id = make_user()
    response = client.get(f"/users/{user_id}/integrations/{INTEGRATION}/install-url")
    assert response.status_code == 200, response.text
    url = response.json()["url"]
    path = url[url.index("/install/"):]
    anonymous = {"authorization": ""}
    form = client.get(path, headers=anonymous)
    assert form.status_code == 200, form.text
    assert form.json()["data"][0]["blockId"] == "notify"
    done = client.post(path, headers=anonymous,
                       json={"data": [fields(notify, "notify", channel="#ops", token=TOKEN)]})
    assert done.status_code == 200, done.text
    assert run(client, notify, user_id).json()["output"]["channel"] == "#ops"
    assert client.get(path[:-4] + "AAAA", headers=anonymous).status_code == 404
    clock.advance(24 * 3600 + 1)
    assert client.get(path, headers=anonymous).status_code == 404
