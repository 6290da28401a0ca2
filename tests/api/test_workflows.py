"""``/workflows``: definitions (JSON or YAML), versions, validation problems, activation."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import ORDER_SUMMARY

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")

ORDER_SUMMARY_YAML = """\
name: Order summary (YAML)
trigger: {type: api}
blocks:
  - id: total
    type: transform
    with: {value: "{{ $sum(trigger.data.values) }}"}
  - id: done
    type: respond
    with:
      body: {total: "{{ total }}"}
"""


def changed(definition: dict[str, Any], total: str) -> dict[str, Any]:
    """A copy of ``definition`` whose ``total`` block computes ``total`` instead."""
    new = copy.deepcopy(definition)
    for block in new["blocks"]:
        if block["id"] == "total":
            block["with"]["value"] = total
    return new


# ORDER_SUMMARY changed enough to make a new version.
MAX_INSTEAD_OF_SUM = changed(ORDER_SUMMARY, "{{ $max(trigger.data.values) }}")


def activate(client: TestClient, **body: str) -> None:
    """``PUT /workflows/activate``, asserting the reference's answer for success."""
    response = client.put("/workflows/activate", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"activated": True}


def installed_version(client: TestClient, workflow_id: str, user_id: str) -> int | None:
    """The version of the workflow the user has installed, as ``/versions`` reports it."""
    versions = client.get(f"/workflows/{workflow_id}/versions", params={"userId": user_id})
    version: int | None = versions.json()["installedVersion"]
    return version


def assert_problems(response: Any, expected: dict[str, str]) -> None:
    """A 422 whose ``message`` and ``problems`` name every expected path (with a reason word)."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert isinstance(body["message"], str)
    paths = {p["path"]: p["reason"] for p in body["problems"]}
    for path, word in expected.items():
        assert path in paths, f"{path} missing from {sorted(paths)}"
        assert word in paths[path]
        assert f"{path}: " in body["message"]


# -- create --------------------------------------------------------------------------------


def test_create_workflow_from_json_answers_version_1_created(client: TestClient) -> None:
    response = client.post("/workflows", json=ORDER_SUMMARY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"workflowId": body["workflowId"], "version": 1, "created": True}
    assert OBJECT_ID.match(body["workflowId"])


@pytest.mark.parametrize("content_type", ["application/yaml", "application/x-yaml", "text/yaml"])
def test_create_workflow_from_yaml_by_content_type(client: TestClient, content_type: str) -> None:
    response = client.post("/workflows", content=ORDER_SUMMARY_YAML.encode(),
                           headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 1
    assert body["created"] is True
    versions = client.get(f"/workflows/{body['workflowId']}/versions").json()
    assert versions["name"] == "Order summary (YAML)"
    assert [b["id"] for b in versions["data"][0]["definition"]["blocks"]] == ["total", "done"]


def test_duplicate_workflow_name_answers_409(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    response = client.post("/workflows", json=ORDER_SUMMARY)
    assert response.status_code == 409
    body = response.json()
    assert list(body) == ["message"]
    assert ORDER_SUMMARY["name"] in body["message"]
    assert workflow_id in body["message"]


def test_same_workflow_name_in_another_team_is_allowed(
    client: TestClient, make_workflow: Callable[..., str], other_team_headers: dict[str, str]
) -> None:
    mine = make_workflow()
    response = client.post("/workflows", json=ORDER_SUMMARY, headers=other_team_headers)
    assert response.status_code == 200, response.text
    assert response.json()["workflowId"] != mine


# -- validation ----------------------------------------------------------------------------


def test_invalid_definition_answers_422_listing_every_problem_by_path(client: TestClient) -> None:
    definition = {
        "name": "Broken",
        "trigger": {"type": "api"},
        "blocks": [
            {"id": "first", "type": "transform", "with": {"value": 1}},
            {"id": "second", "type": "no_such_type", "with": {}},
            {"id": "fetch", "type": "http", "with": {"method": "GET"}},
            {"id": "first", "type": "transform", "with": {"value": 2}},
        ],
    }
    response = client.post("/workflows", json=definition)
    assert_problems(response, {
        "blocks[1].type": "no_such_type",
        "blocks[2].with.url": "required",
        "blocks[3].id": "first",
    })
    assert client.get("/workflows/Broken/versions").status_code == 404


def test_template_syntax_error_is_reported_by_path(client: TestClient) -> None:
    definition = {
        "name": "Bad template",
        "trigger": {"type": "api"},
        "blocks": [
            {"id": "ok", "type": "transform", "with": {"value": "{{ trigger.data }}"}},
            {"id": "fetch", "type": "http",
             "with": {"method": "GET", "url": "https://shop.example/{{ ( }}"}},
            {"id": "out", "type": "respond", "with": {"body": {"x": "{{ $sum( }}"}}},
        ],
    }
    response = client.post("/workflows", json=definition)
    assert_problems(response, {"blocks[1].with.url": "", "blocks[2].with.body.x": ""})


def test_template_errors_are_listed_together_with_structural_problems(client: TestClient) -> None:
    # "Every problem" in one round trip: a bad template elsewhere must not wait for the
    # structural problems to be fixed first.
    definition = {
        "name": "Both kinds",
        "trigger": {"type": "api"},
        "blocks": [
            {"id": "fetch", "type": "http", "with": {"method": "GET"}},
            {"id": "calc", "type": "transform", "with": {"value": "{{ ( }}"}},
        ],
    }
    response = client.post("/workflows", json=definition)
    assert_problems(response, {"blocks[0].with.url": "required", "blocks[1].with.value": ""})


def test_invalid_yaml_definition_answers_422_with_the_line(client: TestClient) -> None:
    response = client.post("/workflows", content=b"name: x\nblocks: [unclosed\n",
                           headers={"content-type": "application/yaml"})
    assert response.status_code == 422, response.text
    body = response.json()
    assert "line" in body["message"]
    assert body["problems"][0]["path"] == ""


@pytest.mark.parametrize(("content", "content_type"), [
    (b"{not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b"", "application/yaml"),
    (b"\xff\xfe\x00", "application/yaml"),
    (b"just a string", "text/plain"),
])
def test_definition_that_is_not_a_mapping_answers_422(
    client: TestClient, content: bytes, content_type: str
) -> None:
    response = client.post("/workflows", content=content, headers={"content-type": content_type})
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["message"], str)


# -- versions ------------------------------------------------------------------------------


def test_put_changed_definition_creates_version_2(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    response = client.put(f"/workflows/{workflow_id}/definition", json=MAX_INSTEAD_OF_SUM)
    assert response.status_code == 200, response.text
    assert response.json() == {"workflowId": workflow_id, "version": 2, "created": True}


def test_put_unchanged_definition_keeps_the_version_and_creates_nothing(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    response = client.put(f"/workflows/{workflow_id}/definition", json=ORDER_SUMMARY)
    assert response.status_code == 200, response.text
    assert response.json() == {"workflowId": workflow_id, "version": 1, "created": False}
    assert len(client.get(f"/workflows/{workflow_id}/versions").json()["data"]) == 1


def test_put_definition_as_yaml_adds_a_version(client: TestClient) -> None:
    created = client.post("/workflows", content=ORDER_SUMMARY_YAML.encode(),
                          headers={"content-type": "application/yaml"}).json()
    changed_yaml = ORDER_SUMMARY_YAML.replace("$sum", "$max")
    response = client.put(f"/workflows/{created['workflowId']}/definition",
                          content=changed_yaml.encode(),
                          headers={"content-type": "application/yaml"})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2


def test_put_invalid_definition_answers_422_and_keeps_the_version(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    response = client.put(f"/workflows/{workflow_id}/definition",
                          json=changed(ORDER_SUMMARY, "{{ $sum( }}"))
    assert_problems(response, {"blocks[1].with.value": ""})
    assert client.get(f"/workflows/{workflow_id}/versions").json()["version"] == 1


def test_put_definition_of_unknown_workflow_answers_404(client: TestClient) -> None:
    response = client.put("/workflows/0123456789abcdef01234567/definition", json=ORDER_SUMMARY)
    assert response.status_code == 404
    assert list(response.json()) == ["message"]


def test_put_definition_renamed_to_a_taken_name_answers_409(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    make_workflow(name="Taken")
    workflow_id = make_workflow(name="Mine")
    response = client.put(f"/workflows/{workflow_id}/definition", json={**ORDER_SUMMARY,
                                                                       "name": "Taken"})
    assert response.status_code == 409
    assert "Taken" in response.json()["message"]


def test_versions_lists_every_version_oldest_first(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    client.put(f"/workflows/{workflow_id}/definition", json=MAX_INSTEAD_OF_SUM)
    response = client.get(f"/workflows/{workflow_id}/versions")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["workflowId"] == workflow_id
    assert body["name"] == ORDER_SUMMARY["name"]
    assert body["version"] == 2
    assert body["installedVersion"] is None
    assert [v["version"] for v in body["data"]] == [1, 2]
    assert body["data"][0]["definition"] == ORDER_SUMMARY
    assert body["data"][1]["definition"]["blocks"][1]["with"]["value"] == (
        "{{ $max(trigger.data.values) }}"
    )
    for item in body["data"]:
        assert {"version", "createdAt", "definition"} <= set(item)


def test_versions_with_user_id_shows_the_installed_version(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed()
    client.put(f"/workflows/{workflow_id}/definition", json=MAX_INSTEAD_OF_SUM)
    body = client.get(f"/workflows/{workflow_id}/versions", params={"userId": user_id}).json()
    assert body["version"] == 2
    assert body["installedVersion"] == 1


def test_versions_for_a_user_without_the_workflow_has_no_installed_version(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    body = client.get(f"/workflows/{workflow_id}/versions",
                      params={"userId": make_user()}).json()
    assert body["version"] == 1
    assert body["installedVersion"] is None


def test_versions_of_unknown_workflow_or_user_answers_404(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    assert client.get("/workflows/0123456789abcdef01234567/versions").status_code == 404
    workflow_id = make_workflow()
    response = client.get(f"/workflows/{workflow_id}/versions", params={"userId": "nobody"})
    assert response.status_code == 404
    assert list(response.json()) == ["message"]


def test_another_teams_workflow_answers_404(
    client: TestClient, make_workflow: Callable[..., str], other_team_headers: dict[str, str]
) -> None:
    workflow_id = make_workflow()
    versions = client.get(f"/workflows/{workflow_id}/versions", headers=other_team_headers)
    assert versions.status_code == 404
    put = client.put(f"/workflows/{workflow_id}/definition",
                     json=changed(ORDER_SUMMARY, "{{ 1 }}"), headers=other_team_headers)
    assert put.status_code == 404
    assert client.get(f"/workflows/{workflow_id}/versions").json()["version"] == 1


# -- activation ----------------------------------------------------------------------------


def test_activate_by_id_installs_the_latest_version(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    client.put(f"/workflows/{workflow_id}/definition", json=MAX_INSTEAD_OF_SUM)
    user_id = make_user()
    activate(client, userId=user_id, workflowId=workflow_id)
    assert installed_version(client, workflow_id, user_id) == 2


def test_activate_by_workflow_name_and_username(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str]
) -> None:
    workflow_id = make_workflow()
    user_id = make_user(username="named@example.com")
    activate(client, userId="named@example.com", workflowName=ORDER_SUMMARY["name"])
    assert installed_version(client, workflow_id, user_id) == 1


def test_activating_again_keeps_the_installed_version(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed()
    client.put(f"/workflows/{workflow_id}/definition", json=MAX_INSTEAD_OF_SUM)
    activate(client, userId=user_id, workflowId=workflow_id)
    assert installed_version(client, workflow_id, user_id) == 1


def test_activate_without_workflow_id_or_name_answers_422(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    response = client.put("/workflows/activate", json={"userId": make_user()})
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert "workflowId" in message
    assert "workflowName" in message


@pytest.mark.parametrize(("body", "field"), [
    ({"workflowId": "abc"}, "userId"),
    ({"userId": "u", "workflowId": "abc", "version": 2}, "version"),
    ({"userId": 5, "workflowId": "abc"}, "userId"),
])
def test_invalid_activate_body_answers_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.put("/workflows/activate", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["message"]


def test_activate_for_unknown_user_answers_404(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    response = client.put("/workflows/activate",
                          json={"userId": "nobody", "workflowId": make_workflow()})
    assert response.status_code == 404
    assert "nobody" in response.json()["message"]


@pytest.mark.parametrize("field", ["workflowId", "workflowName"])
def test_activate_unknown_workflow_answers_404(
    client: TestClient, make_user: Callable[..., str], field: str
) -> None:
    response = client.put("/workflows/activate",
                          json={"userId": make_user(), field: "0123456789abcdef01234567"})
    assert response.status_code == 404
    assert list(response.json()) == ["message"]


def test_activate_another_teams_workflow_answers_404(
    client: TestClient, make_workflow: Callable[..., str], other_team_headers: dict[str, str]
) -> None:
    workflow_id = make_workflow()
    user = client.post("/users", json={"username": "theirs"}, headers=other_team_headers)
    response = client.put("/workflows/activate",
                          json={"userId": user.json()["userId"], "workflowId": workflow_id},
                          headers=other_team_headers)
    assert response.status_code == 404
