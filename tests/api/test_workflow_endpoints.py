"""A user's view of workflows: list (W1), get (W2), deactivate (W5), upgrade (W7), the
users of a parent workflow (W8), and its error log (W10)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import ORDER_DATA, ORDER_SUMMARY, ORDER_SUMMARY_V2

# Fails when the trigger asks it to, so one workflow has both outcomes.
MAY_FAIL: dict[str, Any] = {
    "name": "May fail",
    "trigger": {"type": "api"},
    "blocks": [
        {"id": "check", "type": "branch", "with": {
            "if": "{{ trigger.data.fail = true }}",
            "then": [{"id": "stop", "type": "fail", "with": {"message": "asked to fail"}}],
        }},
        {"id": "done", "type": "respond", "with": {"body": {"n": "{{ trigger.data.n }}"}}},
    ],
}
ITEM_FIELDS = {"workflowId", "installationId", "name", "createdAt", "updatedAt", "installed",
               "active", "version", "installedVersion", "integrationId"}
PREFIXES = ["", "/2024-03"]


def installation_id(client: TestClient, workflow_id: str, user_id: str) -> str:
    """The user's installation id, as W2 reports it."""
    body = client.get(f"/workflows/{workflow_id}", params={"userId": user_id}).json()
    found: str = body["data"]["installationId"]
    return found


# -- W1 list -------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_list_answers_the_users_installations_as_workflow_items(
    client: TestClient, make_workflow: Callable[..., str],
    install_for_new_user: Callable[..., str], prefix: str
) -> None:
    workflow_id = make_workflow()
    make_workflow(ORDER_SUMMARY, name="Not installed")
    user_id = install_for_new_user(workflow_id)
    response = client.get(f"{prefix}/workflows", params={"userId": user_id})
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert set(item) == ITEM_FIELDS
    assert item["workflowId"] == workflow_id
    assert item["installationId"] != workflow_id
    assert (item["name"], item["installed"], item["active"]) == ("Order summary", True, True)
    assert (item["version"], item["installedVersion"]) == (1, 1)


def test_list_of_a_user_without_installations_is_empty(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    response = client.get("/workflows", params={"userId": make_user()})
    assert response.status_code == 200
    assert response.json() == {"data": []}


def test_list_of_an_unknown_user_answers_404_and_without_user_id_422(client: TestClient) -> None:
    assert client.get("/workflows", params={"userId": "nobody"}).status_code == 404
    assert client.get("/workflows").status_code == 422


# -- W2 get --------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_get_answers_the_item_with_the_installed_versions_blocks_as_connectors(
    client: TestClient, installed: Callable[..., tuple[str, str]], prefix: str
) -> None:
    workflow_id, user_id = installed()
    assert client.put(f"/workflows/{workflow_id}/definition",
                      json=ORDER_SUMMARY_V2).status_code == 200
    response = client.get(f"{prefix}/workflows/{workflow_id}", params={"userId": user_id})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == ITEM_FIELDS | {"connectors", "webhookUrl"}
    assert (data["version"], data["installedVersion"]) == (2, 1)
    assert data["connectors"] == [
        {"connectorId": b["id"], "connectorName": b["id"], "connector": b["type"],
         "id": b["id"], "name": b["id"], "icon": None, "subtitle": b["type"]}
        for b in ORDER_SUMMARY["blocks"]
    ]


def test_get_by_installation_id_answers_the_same_workflow(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed()
    copy_id = installation_id(client, workflow_id, user_id)
    data = client.get(f"/workflows/{copy_id}", params={"userId": user_id}).json()["data"]
    assert (data["workflowId"], data["installationId"]) == (workflow_id, copy_id)


def test_get_for_a_user_without_it_answers_not_installed_with_the_latest_blocks(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    workflow_id = make_workflow(MAY_FAIL)
    data = client.get(f"/workflows/{workflow_id}", params={"userId": make_user()}).json()["data"]
    assert (data["installed"], data["active"], data["installedVersion"]) == (False, False, None)
    assert [c["connectorId"] for c in data["connectors"]] == ["check", "stop", "done"]


def test_get_of_an_unknown_workflow_or_user_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed()
    assert client.get("/workflows/nope", params={"userId": user_id}).status_code == 404
    assert client.get(f"/workflows/{workflow_id}", params={"userId": "nope"}).status_code == 404
    assert client.get(f"/workflows/{workflow_id}").status_code == 422


# -- W5 deactivate -------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_deactivate_refuses_runs_until_activated_again(
    client: TestClient, installed: Callable[..., tuple[str, str]], prefix: str
) -> None:
    workflow_id, user_id = installed()
    body = {"userId": user_id, "workflowName": "Order summary"}
    for _ in range(2):  # deactivating twice is not an error
        response = client.put(f"{prefix}/workflows/deactivate", json=body)
        assert response.status_code == 200, response.text
        assert response.json() == {"deactivated": True}
    run = {"workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA}
    refused = client.post("/run/workflow", json=run)
    assert refused.status_code == 409
    assert "not active" in refused.json()["message"]
    listed = client.get("/workflows", params={"userId": user_id}).json()["data"]
    assert [(i["installed"], i["active"]) for i in listed] == [(True, False)]
    assert client.put("/workflows/activate",
                      json={"userId": user_id, "workflowId": workflow_id}).status_code == 200
    assert client.post("/run/workflow", params={"wait": 10}, json=run).status_code == 200


def test_deactivate_of_a_workflow_not_installed_answers_404(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    response = client.put("/workflows/deactivate",
                          json={"userId": make_user(), "workflowId": workflow_id})
    assert response.status_code == 404
    assert "not installed" in response.json()["message"]
    assert client.put("/workflows/deactivate", json={"userId": "x"}).status_code == 422


# -- W7 upgrade ----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_upgrade_moves_to_the_latest_and_answers_false_when_already_there(
    client: TestClient, installed: Callable[..., tuple[str, str]], prefix: str
) -> None:
    workflow_id, user_id = installed()
    client.put(f"/workflows/{workflow_id}/definition", json=ORDER_SUMMARY_V2)
    url = f"{prefix}/workflows/{workflow_id}/upgrade"
    first = client.put(url, params={"userId": user_id})
    assert first.status_code == 200, first.text
    assert first.json() == {"upgraded": True, "previousVersion": 1, "installedVersion": 2}
    again = client.put(url, params={"userId": user_id})
    assert again.json() == {"upgraded": False, "previousVersion": 2, "installedVersion": 2}


def test_upgrade_for_a_user_without_it_answers_404(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    url = f"/workflows/{workflow_id}/upgrade"
    assert client.put(url, params={"userId": make_user()}).status_code == 404
    assert client.put("/workflows/nope/upgrade", params={"userId": "x"}).status_code == 404
    assert client.put(url).status_code == 422


# -- W8 users ------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_users_of_a_workflow_are_those_with_an_installation_active_or_not(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str],
    install_for_new_user: Callable[..., str], prefix: str
) -> None:
    workflow_id = make_workflow()
    first = install_for_new_user(workflow_id, "first@example.com")
    second = install_for_new_user(workflow_id, "second@example.com")
    make_user("bystander@example.com")
    client.put("/workflows/deactivate", json={"userId": second, "workflowId": workflow_id})
    response = client.get(f"{prefix}/workflows/{workflow_id}/users")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [(u["userId"], u["username"], u["workflowActive"]) for u in data] == [
        (first, "first@example.com", True), (second, "second@example.com", False)]
    assert set(data[0]) == {"userId", "username", "fullName", "workflowActive",
                            "installedVersion", "installedAt"}
    assert data[0]["installedVersion"] == 1


def test_users_of_an_unknown_workflow_answer_404(client: TestClient) -> None:
    assert client.get("/workflows/nope/users").status_code == 404


# -- W10 errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_errors_list_failed_executions_newest_first_with_the_failing_block(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    run_finished: Callable[..., str], prefix: str
) -> None:
    workflow_id, user_id = installed(MAY_FAIL)
    failed = [run_finished(workflow_id, user_id, {"fail": True, "n": n}) for n in range(3)]
    run_finished(workflow_id, user_id, {"fail": False, "n": 9})
    url = f"{prefix}/workflows/{workflow_id}/errors"
    response = client.get(url, params={"userId": user_id})
    assert response.status_code == 200, response.text
    errors = response.json()["errors"]
    assert [e["executionId"] for e in errors] == failed[::-1]
    first = errors[0]
    assert (first["blockId"], first["blockType"]) == ("stop", "fail")
    assert "asked to fail" in first["error"]
    assert first["workflowId"] == workflow_id
    assert first["createdAt"].endswith("Z")
    limited = client.get(url, params={"userId": user_id, "limit": 1}).json()["errors"]
    assert [e["executionId"] for e in limited] == failed[-1:]


def test_errors_of_another_user_and_by_installation_id(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    install_for_new_user: Callable[..., str], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed(MAY_FAIL)
    other = install_for_new_user(workflow_id)
    failed = run_finished(workflow_id, user_id, {"fail": True, "n": 1})
    url = f"/workflows/{workflow_id}/errors"
    assert client.get(url, params={"userId": other}).json() == {"errors": []}
    copy_id = installation_id(client, workflow_id, user_id)
    by_copy = client.get(f"/workflows/{copy_id}/errors").json()["errors"]
    assert [e["executionId"] for e in by_copy] == [failed]


def test_errors_answer_404_for_unknown_or_not_installed_and_422_for_a_bad_limit(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    url = f"/workflows/{workflow_id}/errors"
    assert client.get(url, params={"userId": make_user()}).status_code == 404
    assert client.get("/workflows/nope/errors").status_code == 404
    assert client.get(url, params={"limit": 0}).status_code == 422
    assert client.get(url, params={"limit": 101}).status_code == 422


# -- W9 analytics --------------------------------------------------------------------------

# Calls an address the http block refuses (a failed app action) when asked to.
MAY_FETCH: dict[str, Any] = {
    "name": "May fetch",
    "trigger": {"type": "api"},
    "blocks": [
        {"id": "check", "type": "branch", "with": {
            "if": "{{ trigger.data.fetch = true }}",
            "then": [{"id": "fetch", "type": "http",
                      "with": {"method": "GET", "url": "http://127.0.0.1:9/"}}],
        }},
        {"id": "done", "type": "respond", "with": {"body": {"n": "{{ trigger.data.n }}"}}},
    ],
}


@pytest.mark.parametrize("prefix", PREFIXES)
def test_analytics_count_runs_errors_and_http_steps_of_a_users_copy_or_every_copy(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    install_for_new_user: Callable[..., str], run_finished: Callable[..., str], prefix: str
) -> None:
    workflow_id, user_id = installed(MAY_FETCH)
    other = install_for_new_user(workflow_id)
    for n in range(2):
        run_finished(workflow_id, user_id, {"fetch": False, "n": n})
    run_finished(workflow_id, user_id, {"fetch": True, "n": 2})
    run_finished(workflow_id, other, {"fetch": True, "n": 3})
    url = f"{prefix}/workflows/{workflow_id}/analytics"
    response = client.get(url, params={"userId": user_id})
    assert response.status_code == 200, response.text
    assert response.json() == {"totalAppActions": 1, "totalWorkflowRuns": 3, "totalErrors": 1}
    everyone = client.get(url).json()
    assert everyone == {"totalAppActions": 2, "totalWorkflowRuns": 4, "totalErrors": 2}
    copy_id = installation_id(client, workflow_id, other)
    by_copy = client.get(f"/workflows/{copy_id}/analytics").json()
    assert by_copy == {"totalAppActions": 1, "totalWorkflowRuns": 1, "totalErrors": 1}


def test_analytics_of_a_new_workflow_are_zero_and_unknown_ones_404(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    url = f"/workflows/{workflow_id}/analytics"
    assert client.get(url).json() == {"totalAppActions": 0, "totalWorkflowRuns": 0,
                                      "totalErrors": 0}
    assert client.get(url, params={"userId": make_user()}).status_code == 404
    assert client.get("/workflows/nope/analytics").status_code == 404
