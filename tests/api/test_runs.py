"""``POST /run/workflow``: committed before the answer, ``?wait=``, and every refusal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.settings import Settings
from support import (
    ORDER_DATA,
    ORDER_OUTPUT,
    ORDER_SUMMARY,
    ORDER_SUMMARY_V2,
    SlowTarget,
    wait_finished,
)

FAILING: dict[str, Any] = {
    "name": "Always fails",
    "trigger": {"type": "api"},
    "blocks": [{"id": "stop", "type": "fail", "with": {"message": "asked to fail"}}],
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Test settings that let the http block reach the local slow server."""
    return make_settings(http_allow_networks="127.0.0.0/8")


def run(client: TestClient, body: dict[str, Any], **params: Any) -> Any:
    """POST /run/workflow."""
    return client.post("/run/workflow", json=body, params=params)


# -- success -------------------------------------------------------------------------------


def test_run_answers_success_and_an_execution_that_is_already_committed(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed()
    response = run(client, {"workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"message": "success", "executionId": body["executionId"]}
    assert len(body["executionId"]) == 21
    # A 200 means the row exists: readable at once, whatever the run's progress.
    assert client.get(f"/logs/{body['executionId']}").status_code == 200


def test_run_executes_in_the_background_to_the_respond_body(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed()
    response = run(client, {"workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA})
    execution = wait_finished(client, response.json()["executionId"])
    assert execution["status"] == "succeeded"
    assert execution["output"] == ORDER_OUTPUT
    assert execution["mode"] == "api"
    assert execution["workflowVersion"] == 1
    assert execution["userId"] == user_id
    assert execution["trigger"]["data"] == ORDER_DATA


def test_run_by_workflow_name_and_username(
    client: TestClient, make_workflow: Callable[..., str],
    install_for_new_user: Callable[..., str],
) -> None:
    workflow_id = make_workflow()
    user_id = install_for_new_user(workflow_id, "jane@example.com")
    response = run(client, {"workflowName": ORDER_SUMMARY["name"], "userId": "jane@example.com",
                            "data": ORDER_DATA}, wait=10)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == ORDER_OUTPUT
    execution = client.get(f"/logs/{response.json()['executionId']}").json()["data"]
    assert execution["workflowId"] == workflow_id
    assert execution["userId"] == user_id


def test_run_with_wait_answers_status_and_the_respond_body(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed()
    response = run(client, {"workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA},
                   wait=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "success"
    assert body["status"] == "succeeded"
    assert body["output"] == ORDER_OUTPUT
    assert client.get(f"/logs/{body['executionId']}").json()["data"]["finished"] is True


def test_run_with_wait_of_a_failing_workflow_answers_status_failed(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed(FAILING)
    response = run(client, {"workflowId": workflow_id, "userId": user_id, "data": {}}, wait=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert body["output"] is None
    assert "asked to fail" in str(body["error"])


def test_run_still_running_at_the_wait_deadline_answers_202_running(
    client: TestClient, installed: Callable[..., tuple[str, str]], slow_target: SlowTarget
) -> None:
    workflow_id, user_id = installed(slow_target.workflow())
    started = time.monotonic()
    response = run(client, {"workflowId": workflow_id, "userId": user_id, "data": {}}, wait=0.3)
    assert time.monotonic() - started < 5
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["message"] == "success"
    assert body["status"] == "running"
    assert body["output"] is None
    # Acknowledged, so committed: readable while it still runs, and it finishes later.
    running = client.get(f"/logs/{body['executionId']}").json()["data"]
    assert running["finished"] is False
    slow_target.release.set()
    finished = wait_finished(client, body["executionId"])
    assert finished["status"] == "succeeded"
    assert finished["output"] == {"slow": "done"}


def test_run_of_a_webhook_triggered_workflow_is_accepted(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed(ORDER_SUMMARY, trigger={"type": "webhook"})
    response = run(client, {"workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA},
                   wait=10)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == ORDER_OUTPUT


def test_run_with_the_version_in_the_path_as_the_sdks_send_it(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed()
    request = client.build_request(
        "POST", "/2024-03/run/workflow",
        json={"workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA},
    )
    del request.headers["x-api-version"]
    response = client.send(request)
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "success"


# -- refusals ------------------------------------------------------------------------------


def test_run_of_a_workflow_not_installed_for_the_user_answers_404(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    response = run(client, {"workflowId": workflow_id, "userId": make_user(), "data": {}})
    assert response.status_code == 404
    assert list(response.json()) == ["message"]


@pytest.mark.parametrize("field", ["workflowId", "workflowName"])
def test_run_of_an_unknown_workflow_answers_404(
    client: TestClient, make_user: Callable[..., str], field: str
) -> None:
    response = run(client, {field: "0123456789abcdef01234567", "userId": make_user(),
                            "data": {}})
    assert response.status_code == 404
    assert list(response.json()) == ["message"]


def test_run_for_an_unknown_user_answers_404(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    response = run(client, {"workflowId": make_workflow(), "userId": "nobody", "data": {}})
    assert response.status_code == 404
    assert "nobody" in response.json()["message"]


def test_run_of_another_teams_workflow_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    other_team_headers: dict[str, str],
) -> None:
    workflow_id, user_id = installed()
    response = client.post("/run/workflow",
                           json={"workflowId": workflow_id, "userId": user_id, "data": {}},
                           headers=other_team_headers)
    assert response.status_code == 404


def test_run_of_an_event_triggered_workflow_answers_409(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed(ORDER_SUMMARY,
                                     trigger={"type": "event", "event": "order.paid"})
    response = run(client, {"workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA})
    assert response.status_code == 409
    assert "order.paid" in response.json()["message"]


@pytest.mark.parametrize("missing", ["data", "userId"])
def test_run_without_a_required_field_answers_422_naming_it(
    client: TestClient, missing: str
) -> None:
    body = {"workflowId": "w", "userId": "u", "data": {}}
    del body[missing]
    response = run(client, body)
    assert response.status_code == 422, response.text
    assert missing in response.json()["message"]


def test_run_without_workflow_id_or_name_answers_422(client: TestClient) -> None:
    response = run(client, {"userId": "u", "data": {}})
    assert response.status_code == 422, response.text
    assert "workflowId" in response.json()["message"]


def test_run_with_an_unknown_field_answers_422_naming_it(client: TestClient) -> None:
    response = run(client, {"workflowId": "w", "userId": "u", "data": {}, "dta": {"x": 1}})
    assert response.status_code == 422, response.text
    assert "dta" in response.json()["message"]


@pytest.mark.parametrize(("body", "field"), [
    ({"workflowId": "w", "userId": "u", "data": [1, 2]}, "data"),
    ({"workflowId": "w", "userId": "u", "data": "text"}, "data"),
    ({"workflowId": "w", "userId": "u", "data": None}, "data"),
    ({"workflowId": "w", "userId": 7, "data": {}}, "userId"),
    ({"workflowId": ["w"], "userId": "u", "data": {}}, "workflowId"),
    ({"workflowName": {"n": 1}, "userId": "u", "data": {}}, "workflowName"),
])
def test_run_with_a_wrong_type_answers_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = run(client, body)
    assert response.status_code == 422, response.text
    assert field in response.json()["message"]


@pytest.mark.parametrize("content", [
    b"{",
    b'{"userId": "u",}',
    b"not json",
    b"[]",
    b"",
    # Not JSON (RFC 8259 has no NaN); accepting it would silently store null instead.
    b'{"workflowId": "w", "userId": "u", "data": {"x": NaN}}',
])
def test_run_with_a_malformed_body_answers_422(client: TestClient, content: bytes) -> None:
    response = client.post("/run/workflow", content=content,
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["message"], str)


@pytest.mark.parametrize("wait", ["0", "-1", "soon", "301"])
def test_run_with_an_invalid_wait_answers_422(
    client: TestClient, installed: Callable[..., tuple[str, str]], wait: str
) -> None:
    workflow_id, user_id = installed()
    response = client.post("/run/workflow", params={"wait": wait},
                           json={"workflowId": workflow_id, "userId": user_id, "data": {}})
    assert response.status_code == 422, response.text
    assert "wait" in response.json()["message"]


def test_run_uses_the_users_installed_version_not_the_latest(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed()
    newer = client.put(f"/workflows/{workflow_id}/definition", json=ORDER_SUMMARY_V2)
    assert newer.json()["version"] == 2
    response = run(client, {"workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA},
                   wait=10)
    assert response.json()["output"] == ORDER_OUTPUT
    execution = client.get(f"/logs/{response.json()['executionId']}").json()["data"]
    assert execution["workflowVersion"] == 1
