"""Custom events: ``GET /events`` lists what workflows declare, ``POST /run/event`` fans out
to each of the user's active subscribed copies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import ORDER_DATA, ORDER_OUTPUT, ORDER_SUMMARY, ORDER_SUMMARY_V2, wait_finished

PAID_EXAMPLE = {"label": "x", "values": [1]}


def on_event(name: str, event: str, **trigger: Any) -> dict[str, Any]:
    """ORDER_SUMMARY named ``name``, triggered by ``event``."""
    return {**ORDER_SUMMARY, "name": name, "trigger": {"type": "event", "event": event,
                                                       **trigger}}


def fire(client: TestClient, event: str, user_id: str, data: Any = None) -> Any:
    """POST /run/event."""
    return client.post("/run/event", json={
        "event": event, "userId": user_id, "data": ORDER_DATA if data is None else data})


# -- GET /events ---------------------------------------------------------------------------


def test_events_lists_each_declared_event_once_by_name_with_description_and_example(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    make_workflow(on_event("Paid one", "order.paid", schema=PAID_EXAMPLE),
                  description="Runs when an order is paid")
    make_workflow(on_event("Paid two", "order.paid"))
    make_workflow(on_event("Created", "customer.created"))
    make_workflow(ORDER_SUMMARY)  # an api trigger declares no event
    response = client.get("/events")
    assert response.status_code == 200, response.text
    assert response.json() == {"data": [
        {"name": "customer.created", "description": None, "body": {}},
        {"name": "order.paid", "description": "Runs when an order is paid",
         "body": PAID_EXAMPLE},
    ]}


def test_events_reads_each_workflows_latest_version_only(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    workflow_id = make_workflow(on_event("Renamed", "old.name"))
    response = client.put(f"/workflows/{workflow_id}/definition",
                          json=on_event("Renamed", "new.name"))
    assert response.status_code == 200, response.text
    assert [e["name"] for e in client.get("/events").json()["data"]] == ["new.name"]


def test_events_with_a_known_user_lists_the_teams_events_and_an_unknown_one_answers_404(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    make_workflow(on_event("Paid", "order.paid"))
    user_id = make_user()
    assert client.get("/events").json() == client.get(
        "/events", params={"userId": user_id}).json()
    response = client.get("/events", params={"userId": "nobody"})
    assert response.status_code == 404
    assert "nobody" in response.json()["message"]


def test_events_of_a_team_without_event_workflows_is_an_empty_list(
    client: TestClient, make_workflow: Callable[..., str],
    other_team_headers: dict[str, str],
) -> None:
    make_workflow(on_event("Paid", "order.paid"))
    response = client.get("/events", headers=other_team_headers)
    assert response.status_code == 200
    assert response.json() == {"data": []}


# -- POST /run/event -----------------------------------------------------------------------


def test_fire_starts_one_committed_event_execution_per_subscribed_copy(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    user_id = make_user()
    subscribed = [make_workflow(on_event(f"Paid {i}", "order.paid")) for i in range(3)]
    other = make_workflow(on_event("Created", "customer.created"))
    for workflow_id in [*subscribed, other]:
        assert client.put("/workflows/activate", json={
            "userId": user_id, "workflowId": workflow_id}).status_code == 200
    response = fire(client, "order.paid", user_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Event successfully triggered"
    assert len(body["executionIds"]) == len(set(body["executionIds"])) == 3
    # A 200 means every row exists, whatever the runs' progress.
    assert all(client.get(f"/logs/{i}").status_code == 200 for i in body["executionIds"])
    ran = {}
    for execution_id in body["executionIds"]:
        execution = wait_finished(client, execution_id)
        assert execution["mode"] == "event"
        assert execution["status"] == "succeeded"
        assert execution["output"] == ORDER_OUTPUT
        assert execution["trigger"]["data"] == ORDER_DATA
        assert execution["userId"] == user_id
        ran[execution["workflowId"]] = execution_id
    assert len(ran) == 3 and other not in ran


def test_fire_skips_inactive_copies(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    user_id = make_user()
    first = make_workflow(on_event("Paid one", "order.paid"))
    second = make_workflow(on_event("Paid two", "order.paid"))
    for workflow_id in (first, second):
        client.put("/workflows/activate", json={"userId": user_id, "workflowId": workflow_id})
    assert client.put(f"/users/{user_id}/deactivate-workflows").status_code == 200
    assert fire(client, "order.paid", user_id).json()["executionIds"] == []
    client.put("/workflows/activate", json={"userId": user_id, "workflowId": second})
    ids = fire(client, "order.paid", user_id).json()["executionIds"]
    assert [wait_finished(client, i)["workflowId"] for i in ids] == [second]


def test_fire_follows_the_installed_version_not_the_latest(
    client: TestClient, make_workflow: Callable[..., str],
    install_for_new_user: Callable[..., str],
) -> None:
    workflow_id = make_workflow(on_event("Moving", "old.name"))
    user_id = install_for_new_user(workflow_id)
    response = client.put(f"/workflows/{workflow_id}/definition",
                          json={**ORDER_SUMMARY_V2, "name": "Moving",
                                "trigger": {"type": "event", "event": "new.name"}})
    assert response.status_code == 200, response.text
    # The user's copy is still on version 1: the old name still reaches it...
    ids = fire(client, "old.name", user_id).json()["executionIds"]
    assert len(ids) == 1
    assert wait_finished(client, ids[0])["workflowVersion"] == 1
    # ...and the new one is declared, but not to this copy.
    response = fire(client, "new.name", user_id)
    assert response.status_code == 200
    assert response.json()["executionIds"] == []


def test_fire_for_a_user_with_nothing_subscribed_answers_an_empty_list(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    make_workflow(on_event("Paid", "order.paid"))
    response = fire(client, "order.paid", make_user())
    assert response.status_code == 200
    assert response.json() == {"message": "Event successfully triggered", "executionIds": []}


def test_fire_of_an_event_no_workflow_declares_answers_404_naming_it(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    make_workflow(on_event("Paid", "order.paid"))
    response = fire(client, "order.refunded", make_user())
    assert response.status_code == 404
    assert "order.refunded" in response.json()["message"]


def test_fire_for_an_unknown_user_answers_404(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    make_workflow(on_event("Paid", "order.paid"))
    response = fire(client, "order.paid", "nobody")
    assert response.status_code == 404
    assert "nobody" in response.json()["message"]


def test_fire_does_not_see_another_teams_events(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    other_team_headers: dict[str, str],
) -> None:
    _, user_id = installed(on_event("Paid", "order.paid"))
    response = client.post("/run/event", headers=other_team_headers,
                           json={"event": "order.paid", "userId": user_id, "data": {}})
    assert response.status_code == 404


@pytest.mark.parametrize("missing", ["event", "userId", "data"])
def test_fire_without_a_required_field_answers_422_naming_it(
    client: TestClient, missing: str
) -> None:
    body: dict[str, Any] = {"event": "e", "userId": "u", "data": {}}
    del body[missing]
    response = client.post("/run/event", json=body)
    assert response.status_code == 422, response.text
    assert missing in response.json()["message"]


@pytest.mark.parametrize("data", [[1, 2], "text", 3, None])
def test_fire_with_data_that_is_not_an_object_answers_422(
    client: TestClient, data: Any
) -> None:
    response = client.post("/run/event", json={"event": "e", "userId": "u", "data": data})
    assert response.status_code == 422, response.text
    assert "data" in response.json()["message"]


def test_run_workflow_on_an_event_workflow_points_to_run_event(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed(on_event("Paid", "order.paid"))
    response = client.post("/run/workflow", json={
        "workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA})
    assert response.status_code == 409
    message = response.json()["message"]
    assert "POST /run/event" in message and "order.paid" in message


def test_fired_executions_read_the_event_name_as_trigger_event(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    _, user_id = installed({
        "name": "Echo", "trigger": {"type": "event", "event": "order.paid"},
        "blocks": [{"id": "done", "type": "respond",
                    "with": {"body": {"event": "{{ trigger.event }}"}}}],
    })
    ids = fire(client, "order.paid", user_id).json()["executionIds"]
    execution = wait_finished(client, ids[0])
    assert execution["output"] == {"event": "order.paid"}
    assert execution["trigger"]["event"] == "order.paid"


def test_run_event_naming_a_workflow_of_another_trigger_points_to_run_workflow(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    _, user_id = installed(ORDER_SUMMARY)
    response = fire(client, ORDER_SUMMARY["name"], user_id)
    assert response.status_code == 404
    message = response.json()["message"]
    assert "no workflow declares it" in message and "POST /run/workflow" in message
    assert "triggered by api" in message
