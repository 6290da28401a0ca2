"""``GET /workflows/{workflowId}/logs`` and ``GET /logs/{executionId}``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import ORDER_DATA

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
REFERENCE_ITEM_FIELDS = {"executionId", "startedAt", "stoppedAt", "finished", "results", "inputs"}
REFLOW_ITEM_FIELDS = {"status", "workflowVersion", "userId", "mode", "rerunOf", "reruns"}
RESULT_FIELDS = {"connectorId", "startedAt", "stoppedAt", "data"}

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

def logs(client: TestClient, workflow_id: str, **params: Any) -> list[dict[str, Any]]:
    """The items of one page of a workflow's logs (asserting a 200)."""
    response = client.get(f"/workflows/{workflow_id}/logs", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["data"]
    items: list[dict[str, Any]] = body["data"]
    return items


def ids(items: list[dict[str, Any]]) -> list[str]:
    """The executionIds of log items, in order."""
    return [item["executionId"] for item in items]


# -- item shape ----------------------------------------------------------------------------


def test_log_item_has_the_reference_fields_and_reflows_additions(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    execution_id = run_finished(workflow_id, user_id)
    [item] = logs(client, workflow_id, userId=user_id)
    assert REFERENCE_ITEM_FIELDS | REFLOW_ITEM_FIELDS <= set(item)
    assert item["executionId"] == execution_id
    assert ISO.match(item["startedAt"])
    assert ISO.match(item["stoppedAt"])
    assert item["startedAt"] <= item["stoppedAt"]
    assert item["finished"] is True
    assert item["status"] == "succeeded"
    assert item["workflowVersion"] == 1
    assert item["userId"] == user_id
    assert item["mode"] == "api"
    assert item["rerunOf"] is None
    assert item["reruns"] == []


def test_log_results_hold_each_blocks_output_as_an_array_of_arrays(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    run_finished(workflow_id, user_id)
    [item] = logs(client, workflow_id, userId=user_id)
    assert [r["connectorId"] for r in item["results"]] == ["label", "total", "done"]
    for result in item["results"]:
        assert RESULT_FIELDS <= set(result)
        assert ISO.match(result["startedAt"])
        assert ISO.match(result["stoppedAt"])
    outputs = [r["data"][0][0]["json"] for r in item["results"]]
    assert outputs == [
        {"label_upper": "ABC", "value_count": 3},
        6,
        {"label_upper": "ABC", "value_count": 3, "total": 6},
    ]


def test_log_inputs_hold_each_blocks_resolved_input(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    run_finished(workflow_id, user_id)
    [item] = logs(client, workflow_id, userId=user_id)
    assert item["inputs"] == [
        {"connectorId": "label", "data": {"value": {"label_upper": "ABC", "value_count": 3}}},
        {"connectorId": "total", "data": {"value": 6}},
        {"connectorId": "done",
         "data": {"body": {"label_upper": "ABC", "value_count": 3, "total": 6}}},
    ]


def test_failed_execution_log_shows_the_failing_step(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed(MAY_FAIL)
    run_finished(workflow_id, user_id, {"fail": True, "n": 1})
    [item] = logs(client, workflow_id, userId=user_id)
    assert item["finished"] is True
    assert item["status"] == "failed"
    assert [r["connectorId"] for r in item["results"]] == ["check", "stop"]
    assert "asked to fail" in item["results"][-1]["error"]


def test_workflow_logs_need_the_api_version(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, _ = installed()
    request = client.build_request("GET", f"/workflows/{workflow_id}/logs")
    del request.headers["x-api-version"]
    response = client.send(request)
    assert response.status_code == 400
    assert "2025-09" in response.json()["message"]


# -- paging and filters --------------------------------------------------------------------


def test_logs_default_to_10_items_newest_first(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    made = [run_finished(workflow_id, user_id) for _ in range(12)]
    assert ids(logs(client, workflow_id, userId=user_id)) == made[::-1][:10]


def test_logs_limit_up_to_30_is_honoured(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    made = [run_finished(workflow_id, user_id) for _ in range(4)]
    assert ids(logs(client, workflow_id, userId=user_id, limit=3)) == made[::-1][:3]
    assert ids(logs(client, workflow_id, userId=user_id, limit=30)) == made[::-1]


@pytest.mark.parametrize("limit", ["31", "100", "0", "-1"])
def test_logs_limit_out_of_range_answers_422_not_a_silent_clamp(
    client: TestClient, installed: Callable[..., tuple[str, str]], limit: str
) -> None:
    workflow_id, user_id = installed()
    response = client.get(f"/workflows/{workflow_id}/logs",
                          params={"userId": user_id, "limit": limit})
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert "limit" in message
    assert "30" in message


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "ten"}, "limit"),
    ({"page": "two"}, "page"),
    ({"page": "-1"}, "page"),
    ({"order": "sideways"}, "order"),
    ({"error": "maybe"}, "error"),
])
def test_logs_invalid_query_answers_422_naming_the_parameter(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    params: dict[str, str], field: str,
) -> None:
    workflow_id, _ = installed()
    response = client.get(f"/workflows/{workflow_id}/logs", params=params)
    assert response.status_code == 422, response.text
    assert field in response.json()["message"]


def test_logs_pages_follow_each_other_without_overlap(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    made = [run_finished(workflow_id, user_id) for _ in range(5)]
    newest_first = made[::-1]
    assert ids(logs(client, workflow_id, userId=user_id, limit=2, page=1)) == newest_first[:2]
    assert ids(logs(client, workflow_id, userId=user_id, limit=2, page=2)) == newest_first[2:4]
    assert ids(logs(client, workflow_id, userId=user_id, limit=2, page=3)) == newest_first[4:]
    assert logs(client, workflow_id, userId=user_id, limit=2, page=4) == []


def test_logs_order_asc_and_desc(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    made = [run_finished(workflow_id, user_id) for _ in range(3)]
    assert ids(logs(client, workflow_id, userId=user_id, order="asc")) == made
    assert ids(logs(client, workflow_id, userId=user_id, order="desc")) == made[::-1]
    assert ids(logs(client, workflow_id, userId=user_id, order="asc", limit=2, page=2)) == [
        made[2]
    ]


def test_logs_error_true_lists_only_failed_executions(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed(MAY_FAIL)
    outcomes = [False, True, False, True, False]
    made = [run_finished(workflow_id, user_id, {"fail": fail, "n": n})
            for n, fail in enumerate(outcomes)]
    failed = [e for e, fail in zip(made, outcomes, strict=True) if fail]
    items = logs(client, workflow_id, userId=user_id, error="true")
    assert ids(items) == failed[::-1]
    assert {item["status"] for item in items} == {"failed"}
    assert len(logs(client, workflow_id, userId=user_id, error="false")) == 5


def test_logs_user_id_filters_to_that_users_executions(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    install_for_new_user: Callable[..., str], run_finished: Callable[..., str],
) -> None:
    workflow_id, jane = installed()
    joe = install_for_new_user(workflow_id, "joe@example.com")
    janes = [run_finished(workflow_id, jane) for _ in range(2)]
    joes = [run_finished(workflow_id, joe) for _ in range(3)]
    assert ids(logs(client, workflow_id, userId=jane)) == janes[::-1]
    assert ids(logs(client, workflow_id, userId="joe@example.com")) == joes[::-1]
    assert ids(logs(client, workflow_id)) == (janes + joes)[::-1]


def test_logs_of_a_user_without_the_workflow_are_empty(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    make_user: Callable[..., str], run_finished: Callable[..., str],
) -> None:
    workflow_id, user_id = installed()
    run_finished(workflow_id, user_id)
    assert logs(client, workflow_id, userId=make_user()) == []


def test_installation_id_works_in_place_of_the_parent_id(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    install_for_new_user: Callable[..., str], run_finished: Callable[..., str],
) -> None:
    workflow_id, jane = installed()
    joe = install_for_new_user(workflow_id)
    janes = [run_finished(workflow_id, jane) for _ in range(2)]
    run_finished(workflow_id, joe)
    installation_id = client.get(f"/logs/{janes[0]}").json()["data"]["installationId"]
    assert installation_id != workflow_id
    assert ids(logs(client, installation_id)) == janes[::-1]
    assert ids(logs(client, installation_id, userId=jane)) == janes[::-1]


def test_installation_id_with_another_users_id_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    make_user: Callable[..., str], run_finished: Callable[..., str],
) -> None:
    workflow_id, jane = installed()
    execution_id = run_finished(workflow_id, jane)
    installation_id = client.get(f"/logs/{execution_id}").json()["data"]["installationId"]
    response = client.get(f"/workflows/{installation_id}/logs", params={"userId": make_user()})
    assert response.status_code == 404


def test_logs_of_an_unknown_workflow_or_user_answer_404(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    response = client.get("/workflows/0123456789abcdef01234567/logs")
    assert response.status_code == 404
    assert list(response.json()) == ["message"]
    workflow_id, _ = installed()
    response = client.get(f"/workflows/{workflow_id}/logs", params={"userId": "nobody"})
    assert response.status_code == 404


def test_logs_of_another_teams_workflow_answer_404(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str],
    other_team_headers: dict[str, str],
) -> None:
    workflow_id, user_id = installed()
    run_finished(workflow_id, user_id)
    response = client.get(f"/workflows/{workflow_id}/logs", headers=other_team_headers)
    assert response.status_code == 404


# -- one execution -------------------------------------------------------------------------


def test_one_execution_has_every_step_in_full(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    execution_id = run_finished(workflow_id, user_id)
    response = client.get(f"/logs/{execution_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["data"]
    data = body["data"]
    assert REFERENCE_ITEM_FIELDS | REFLOW_ITEM_FIELDS <= set(data)
    assert data["executionId"] == execution_id
    assert data["workflowId"] == workflow_id
    assert data["trigger"] == {"data": ORDER_DATA}
    assert data["output"] == {"label_upper": "ABC", "value_count": 3, "total": 6}
    steps = data["steps"]
    assert [s["blockId"] for s in steps] == ["label", "total", "done"]
    assert steps[1]["input"] == {"value": 6}
    assert steps[1]["output"] == 6
    assert [s["status"] for s in steps] == ["succeeded"] * 3
    assert [s["attempts"] for s in steps] == [1, 1, 1]
    assert all(ISO.match(s["startedAt"]) and ISO.match(s["stoppedAt"]) for s in steps)
    assert [r["connectorId"] for r in data["results"]] == ["label", "total", "done"]


def test_one_execution_of_another_team_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str],
    other_team_headers: dict[str, str],
) -> None:
    workflow_id, user_id = installed()
    execution_id = run_finished(workflow_id, user_id)
    response = client.get(f"/logs/{execution_id}", headers=other_team_headers)
    assert response.status_code == 404
    assert list(response.json()) == ["message"]


@pytest.mark.parametrize("execution_id", ["0VcGfGpVCXG66RTEXW1xr", "not-an-id", "x" * 300])
def test_unknown_execution_answers_404(client: TestClient, execution_id: str) -> None:
    response = client.get(f"/logs/{execution_id}")
    assert response.status_code == 404
    assert list(response.json()) == ["message"]



def test_one_execution_has_the_references_l4_keys(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    execution_id = run_finished(workflow_id, user_id)
    data = client.get(f"/logs/{execution_id}").json()["data"]
    # reflow has one id per execution: L4's `_id` and `executionUuid` are both it.
    assert data["_id"] == data["executionUuid"] == data["executionId"] == execution_id
    assert data["executionMode"] == "webhook"
    assert data["mode"] == "api"


def test_a_reruns_execution_mode_is_retry(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    rerun = client.post(f"/workflows/{workflow_id}/rerun/{source}", params={"wait": 10})
    assert rerun.status_code == 200, rerun.text
    data = client.get(f"/logs/{rerun.json()['executionId']}").json()["data"]
    assert (data["executionMode"], data["mode"], data["rerunOf"]) == ("retry", "rerun", source)


def test_the_l4_keys_are_in_the_api_document(client: TestClient) -> None:
    detail = client.get("/openapi.json").json()["components"]["schemas"]["ExecutionDetail"]
    assert {"_id", "executionUuid", "executionMode"} <= set(detail["required"])
    assert detail["properties"]["executionMode"]["enum"] == ["manual", "retry", "trigger",
                                                              "webhook"]
