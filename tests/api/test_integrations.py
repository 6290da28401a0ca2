"""Integrations (declared, or made by the workflows naming them), listed for a user (I1),
one by id or name (I2), installations as the reference groups them (I3), a user's
installation deleted (W6), and installation ids taken wherever a workflowId is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.settings import Settings
from support import ORDER_DATA, ORDER_SUMMARY, ORDER_SUMMARY_V2, SlowTarget, wait_finished

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ICON = "https://cdn.example.com/icons/crm.png"
CRM = {"name": "CRM", "app": "HubSpot", "description": "Contacts and deals.", "icon": ICON}
# An http block with a literal credential and a templated one (known only when run).
SYNC: dict[str, Any] = {
    "name": "Sync contacts",
    "integration": "CRM",
    "trigger": {"type": "api"},
    "blocks": [
        {"id": "fetch", "type": "http", "with": {
            "method": "get", "url": "https://crm.example/contacts", "credential": "hubspot"}},
        {"id": "push", "type": "http", "with": {
            "method": "POST", "url": "https://crm.example/push",
            "credential": "{{ trigger.data.key }}"}},
        {"id": "done", "type": "respond", "with": {"body": {"ok": True}}},
    ],
}
CONNECTOR_KEYS = {"id", "name", "connectorId", "connectorName", "connector", "icon", "subtitle"}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The slow local target reachable (W6 while an execution runs)."""
    return make_settings(http_allow_networks="127.0.0.0/8")


def declare(client: TestClient, body: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """POST /integrations (asserting a 200); its answer."""
    response = client.post(f"{prefix}/integrations", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def integrations_for(client: TestClient, user_id: str) -> dict[str, dict[str, Any]]:
    """GET /integrations?userId= (asserting a 200), by integration name."""
    response = client.get("/integrations", params={"userId": user_id})
    assert response.status_code == 200, response.text
    return {item["name"]: item for item in response.json()["data"]}


def activate(client: TestClient, user_id: str, workflow: str) -> None:
    response = client.put("/workflows/activate", json={"userId": user_id, "workflowId": workflow})
    assert response.status_code == 200, response.text


def installation_id(client: TestClient, workflow_id: str, user_id: str) -> str:
    found: str = client.get(f"/workflows/{workflow_id}",
                            params={"userId": user_id}).json()["data"]["installationId"]
    return found


# -- declaring -----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/2024-03"])
def test_declaring_creates_then_is_unchanged_then_updates_by_name(
    client: TestClient, prefix: str
) -> None:
    created = declare(client, CRM, prefix)
    same = declare(client, CRM, prefix)
    changed = declare(client, {**CRM, "description": "Contacts."}, prefix)

    assert (created["name"], created["created"], created["changed"]) == ("CRM", True, True)
    assert (same["created"], same["changed"]) == (False, False)
    assert (changed["created"], changed["changed"]) == (False, True)
    assert created["integrationId"] == same["integrationId"] == changed["integrationId"]
    user = client.post("/users", json={"username": "i@example.com"}).json()["userId"]
    item = integrations_for(client, user)["CRM"]
    assert (item["app"], item["primaryConnector"], item["description"], item["icon"]) == (
        "HubSpot", "HubSpot", "Contacts.", ICON)


def test_a_declaration_is_taken_as_yaml_and_left_out_keys_take_their_defaults(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    declare(client, CRM)
    response = client.post("/integrations", content="kind: integration\nname: CRM\n",
                           headers={"content-type": "application/yaml"})
    assert response.status_code == 200, response.text
    assert response.json()["changed"] is True
    item = integrations_for(client, make_user())["CRM"]
    assert (item["app"], item["description"], item["icon"]) == ("CRM", "", None)


def test_an_invalid_declaration_answers_422_listing_every_problem_and_stores_nothing(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    response = client.post("/integrations", json={
        "kind": "workflow", "app": 3, "icon": "ftp://x/y.png", "descripton": "typo"})
    assert response.status_code == 422
    body = response.json()
    assert body["message"].startswith("invalid integration declaration: ")
    reasons = {p["path"]: p["reason"] for p in body["problems"]}
    assert reasons["name"] == "required"
    assert reasons["app"] == "must be a string"
    assert reasons["icon"] == "must be an absolute http or https URL"
    assert reasons["kind"].startswith("must be 'integration'")
    assert reasons["descripton"] == "unknown key; did you mean 'description'?"
    assert client.post("/integrations", content="name: [unclosed",
                       headers={"content-type": "application/yaml"}).status_code == 422
    assert integrations_for(client, make_user()) == {}


def test_a_workflow_naming_an_undeclared_integration_creates_it_with_the_defaults(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    workflow_id = make_workflow(integration="Billing")
    make_workflow(name="No integration")  # belongs to none: listed under none
    user_id = make_user()

    [item] = integrations_for(client, user_id).values()
    declared = declare(client, {"name": "Billing", "icon": ICON})
    again = integrations_for(client, user_id)["Billing"]

    assert (item["name"], item["app"], item["description"], item["icon"]) == (
        "Billing", "Billing", "", None)
    assert [w["workflowId"] for w in item["workflows"]] == [workflow_id]
    assert (declared["created"], declared["integrationId"]) == (False, item["integrationId"])
    assert again["icon"] == ICON and len(again["workflows"]) == 1


def test_a_new_version_naming_another_integration_moves_the_workflow(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    workflow_id = make_workflow(integration="Old")
    response = client.put(f"/workflows/{workflow_id}/definition",
                          json={**ORDER_SUMMARY, "integration": "New"})
    assert response.status_code == 200, response.text
    found = integrations_for(client, make_user())
    assert found["Old"]["workflows"] == []
    assert [w["workflowId"] for w in found["New"]["workflows"]] == [workflow_id]


# -- I1 and I2 -----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/2025-09"])
def test_list_shows_each_workflow_as_the_user_sees_it_with_connectors_and_credentials(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str],
    prefix: str,
) -> None:
    declare(client, CRM)
    sync_id = make_workflow(SYNC)
    other_id = make_workflow(name="Order summary in CRM", integration="CRM")
    user_id = make_user("lister@example.com")
    activate(client, user_id, sync_id)
    assert client.put(f"/workflows/{sync_id}/definition",
                      json={**SYNC, "description": "v2"}).status_code == 200

    response = client.get(f"{prefix}/integrations", params={"userId": "lister@example.com"})

    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert set(item) == {"integrationId", "name", "app", "primaryConnector", "description",
                         "icon", "installed", "workflows", "credentials"}
    assert (item["installed"], item["credentials"]) == (True, ["hubspot"])
    by_id = {w["workflowId"]: w for w in item["workflows"]}
    sync, other = by_id[sync_id], by_id[other_id]
    assert (sync["installed"], sync["active"], sync["version"], sync["installedVersion"]) == (
        True, True, 2, 1)
    assert sync["integrationId"] == item["integrationId"]
    assert (other["installed"], other["active"], other["installedVersion"]) == (
        False, False, None)
    fetch = sync["connectors"][0]
    assert set(fetch) == CONNECTOR_KEYS
    assert (fetch["id"], fetch["name"], fetch["connector"]) == ("fetch", "fetch", "http")
    assert (fetch["subtitle"], fetch["icon"]) == ("GET https://crm.example/contacts", ICON)
    done = sync["connectors"][2]
    assert (done["connector"], done["subtitle"], done["icon"]) == ("respond", "respond", None)


def test_list_needs_a_known_user(client: TestClient) -> None:
    assert client.get("/integrations").status_code == 422
    response = client.get("/integrations", params={"userId": "nobody"})
    assert response.status_code == 404
    assert "nobody" in response.json()["message"]


@pytest.mark.parametrize("prefix", ["", "/2023-12"])
def test_get_answers_one_integration_by_id_or_by_name(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str],
    prefix: str,
) -> None:
    integration_id = declare(client, CRM)["integrationId"]
    make_workflow(SYNC)
    user_id = make_user()
    listed = integrations_for(client, user_id)["CRM"]

    by_id = client.get(f"{prefix}/integrations/{integration_id}", params={"userId": user_id})
    by_name = client.get(f"{prefix}/integrations/CRM", params={"userId": user_id})

    assert by_id.status_code == 200, by_id.text
    assert by_id.json() == by_name.json() == {"data": listed}
    assert listed["installed"] is False


def test_get_of_an_unknown_integration_or_user_answers_404(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    declare(client, CRM)
    user_id = make_user()
    assert client.get("/integrations/Nope", params={"userId": user_id}).status_code == 404
    assert client.get("/integrations/CRM", params={"userId": "nobody"}).status_code == 404
    assert client.get("/integrations/CRM").status_code == 422


def test_the_workflow_endpoints_name_the_integration_by_its_id(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed(SYNC)
    integration_id = integrations_for(client, user_id)["CRM"]["integrationId"]
    one = client.get(f"/workflows/{workflow_id}", params={"userId": user_id}).json()["data"]
    [listed] = client.get("/workflows", params={"userId": user_id}).json()["data"]
    assert one["integrationId"] == listed["integrationId"] == integration_id
    assert set(one["connectors"][0]) == CONNECTOR_KEYS


# -- I3 ------------------------------------------------------------------------------------


def test_installations_group_a_users_workflows_by_integration(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    integration_id = declare(client, CRM)["integrationId"]
    sync_id = make_workflow(SYNC)
    other_id = make_workflow(name="Order summary in CRM", integration="CRM")
    loose_id = make_workflow(name="Loose")  # names no integration
    first, second = make_user(), make_user()
    for workflow in (sync_id, other_id, loose_id):
        activate(client, first, workflow)
    activate(client, second, sync_id)
    assert client.put("/workflows/deactivate",
                      json={"userId": second, "workflowId": sync_id}).status_code == 200

    response = client.get("/2024-03/installations")

    assert response.status_code == 200, response.text
    items = response.json()["data"]
    by_key = {(i["userId"], i["integrationId"]): i for i in items}
    assert len(items) == 3
    crm = by_key[first, integration_id]
    # Oldest first; installed in the same millisecond, the order between them is by id.
    assert sorted(crm["workflowIds"]) == sorted([sync_id, other_id])
    assert (crm["credentialIds"], crm["formData"], crm["enabled"]) == ({}, [], True)
    assert [w["workflowId"] for w in crm["workflows"]] == crm["workflowIds"]
    assert {w["installationId"] for w in crm["workflows"]} == {
        installation_id(client, sync_id, first), installation_id(client, other_id, first)}
    assert crm["installedAt"] == min(w["installedAt"] for w in crm["workflows"])
    assert by_key[first, None]["workflowIds"] == [loose_id]
    assert by_key[second, integration_id]["enabled"] is False
    assert len({i["installationId"] for i in items}) == 3
    assert client.get("/installations").json() == response.json()  # stable ids


def test_installations_leave_out_deleted_installations_and_deleted_users(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    install_for_new_user: Callable[..., str],
) -> None:
    workflow_id, kept = installed(SYNC)
    deleted_user = install_for_new_user(workflow_id)
    uninstalled = install_for_new_user(workflow_id)
    assert client.delete(f"/users/{deleted_user}").status_code == 200
    assert client.delete(f"/workflows/{workflow_id}",
                         params={"userId": uninstalled}).status_code == 200
    assert [i["userId"] for i in client.get("/installations").json()["data"]] == [kept]


# -- W6 delete a user's workflow -----------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/2025-09"])
def test_delete_removes_only_that_users_installation_and_keeps_its_logs(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    install_for_new_user: Callable[..., str], run_finished: Callable[..., str], prefix: str,
) -> None:
    workflow_id, user_id = installed()
    other_user = install_for_new_user(workflow_id)
    copy_id = installation_id(client, workflow_id, user_id)
    execution_id = run_finished(workflow_id, user_id)

    response = client.delete(f"{prefix}/workflows/{workflow_id}", params={"userId": user_id})

    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": True}
    assert client.get("/workflows", params={"userId": user_id}).json() == {"data": []}
    seen = client.get(f"/workflows/{workflow_id}", params={"userId": user_id}).json()["data"]
    assert (seen["installed"], seen["installationId"]) == (False, None)
    run = client.post("/run/workflow", json={"workflowId": workflow_id, "userId": user_id,
                                             "data": ORDER_DATA})
    assert run.status_code == 404 and "not installed" in run.json()["message"]
    assert client.get(f"/logs/{execution_id}").status_code == 200
    for ref, params in ((workflow_id, {"userId": user_id}), (copy_id, {}), (workflow_id, {})):
        logs = client.get(f"/workflows/{ref}/logs", params=params)
        assert logs.status_code == 200, logs.text
        assert [e["executionId"] for e in logs.json()["data"]] == [execution_id]
    assert run_finished(workflow_id, other_user)  # the other user's copy is untouched
    again = client.delete(f"/workflows/{workflow_id}", params={"userId": user_id})
    assert again.status_code == 404


def test_a_rerun_of_a_deleted_installations_execution_answers_409_until_reinstalled(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    run_finished: Callable[..., str],
) -> None:
    workflow_id, user_id = installed()
    copy_id = installation_id(client, workflow_id, user_id)
    execution_id = run_finished(workflow_id, user_id)
    assert client.put(f"/workflows/{workflow_id}/definition",
                      json=ORDER_SUMMARY_V2).status_code == 200
    assert client.delete(f"/workflows/{copy_id}").status_code == 200

    for ref in (workflow_id, copy_id):
        refused = client.post(f"/workflows/{ref}/rerun/{execution_id}")
        assert refused.status_code == 409, refused.text
        assert "was deleted" in refused.json()["message"]
        assert "PUT /workflows/activate" in refused.json()["message"]
    activate(client, user_id, workflow_id)
    revived = client.get(f"/workflows/{workflow_id}", params={"userId": user_id}).json()["data"]
    rerun = client.post(f"/workflows/{copy_id}/rerun/{execution_id}", params={"wait": 10})

    assert (revived["installationId"], revived["installedVersion"]) == (copy_id, 2)
    assert rerun.status_code == 200, rerun.text
    assert rerun.json()["status"] == "succeeded"
    logs = client.get(f"/workflows/{copy_id}/logs").json()["data"]
    assert [e["executionId"] for e in logs] == [rerun.json()["executionId"], execution_id]


def test_delete_by_installation_id_needs_no_user_and_refuses_another_users(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    make_user: Callable[..., str],
) -> None:
    workflow_id, user_id = installed()
    copy_id = installation_id(client, workflow_id, user_id)
    stranger = make_user()
    assert client.delete(f"/workflows/{copy_id}", params={"userId": stranger}).status_code == 404
    not_given = client.delete(f"/workflows/{workflow_id}")
    assert not_given.status_code == 404 and "userId" in not_given.json()["message"]
    assert client.delete(f"/workflows/{workflow_id}",
                         params={"userId": stranger}).status_code == 404
    assert client.delete("/workflows/nope", params={"userId": user_id}).status_code == 404
    assert client.delete(f"/workflows/{copy_id}").json() == {"deleted": True}


def test_delete_while_an_execution_runs_answers_409_and_deletes_nothing(
    client: TestClient, installed: Callable[..., tuple[str, str]], slow_target: SlowTarget,
) -> None:
    workflow_id, user_id = installed(slow_target.workflow())
    started = client.post("/run/workflow", json={"workflowId": workflow_id, "userId": user_id,
                                                 "data": {}})
    assert started.status_code == 200, started.text

    refused = client.delete(f"/workflows/{workflow_id}", params={"userId": user_id})
    slow_target.release.set()
    wait_finished(client, started.json()["executionId"])
    still = client.get(f"/workflows/{workflow_id}", params={"userId": user_id}).json()["data"]
    deleted = client.delete(f"/workflows/{workflow_id}", params={"userId": user_id})

    assert refused.status_code == 409
    assert refused.json()["message"].startswith("1 execution(s) of this installation are still")
    assert (still["installed"], still["active"]) == (True, True)
    assert deleted.status_code == 200


# -- installation ids wherever a workflowId is taken ---------------------------------------


def test_activate_and_deactivate_take_the_installation_id(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    make_user: Callable[..., str],
) -> None:
    workflow_id, user_id = installed()
    copy_id = installation_id(client, workflow_id, user_id)
    body = {"userId": user_id, "workflowId": copy_id}

    assert client.put("/workflows/deactivate", json=body).json() == {"deactivated": True}
    refused = client.post("/run/workflow", json={**body, "data": ORDER_DATA})
    assert refused.status_code == 409 and "not active" in refused.json()["message"]
    assert client.put("/2024-03/workflows/activate", json=body).json() == {"activated": True}
    ran = client.post("/run/workflow", params={"wait": 10}, json={**body, "data": ORDER_DATA})
    assert ran.status_code == 200 and ran.json()["status"] == "succeeded"
    stranger = {"userId": make_user(), "workflowId": copy_id}
    assert client.put("/workflows/deactivate", json=stranger).status_code == 404
    assert client.put("/workflows/activate", json=stranger).status_code == 404


def test_a_rerun_of_a_deactivated_installation_answers_409(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    run_finished: Callable[..., str],
) -> None:
    workflow_id, user_id = installed()
    execution_id = run_finished(workflow_id, user_id)
    assert client.put("/workflows/deactivate",
                      json={"userId": user_id, "workflowId": workflow_id}).status_code == 200
    refused = client.post(f"/workflows/{workflow_id}/rerun/{execution_id}")
    assert refused.status_code == 409
    assert "not active" in refused.json()["message"]


def test_a_version_added_through_an_installation_id_goes_to_the_parent(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed()
    copy_id = installation_id(client, workflow_id, user_id)
    response = client.put(f"/workflows/{copy_id}/definition", json=ORDER_SUMMARY_V2)
    assert response.status_code == 200, response.text
    assert (response.json()["workflowId"], response.json()["version"]) == (workflow_id, 2)


# -- the examples --------------------------------------------------------------------------


def test_the_example_declaration_names_the_shop_integration_its_workflow_joins(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    for name in ("shop.integration.yaml", "ship-order.yaml", "route-ticket.yaml"):
        path = "/integrations" if name.endswith(".integration.yaml") else "/workflows"
        response = client.post(path, content=(EXAMPLES / name).read_text(),
                               headers={"content-type": "application/yaml"})
        assert response.status_code == 200, (name, response.text)
    found = integrations_for(client, make_user())
    assert [w["name"] for w in found["Shop"]["workflows"]] == ["Ship paid order"]
    assert found["Shop"]["icon"].startswith("https://")
    assert [w["name"] for w in found["Helpdesk"]["workflows"]] == ["Route support ticket"]
