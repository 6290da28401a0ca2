"""The users API beyond create and get: list (U2), update (U4), delete (U5), batch create
(U6), delete a user's logs (U8) and deactivate a user's workflows (U9)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.settings import Settings
from support import ORDER_SUMMARY, SlowTarget, wait_finished


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The slow local target reachable (a user's unfinished execution)."""
    return make_settings(http_allow_networks="127.0.0.0/8")


def batch(client: TestClient, *usernames: str, **kwargs: Any) -> Any:
    """POST /users/batch with these usernames."""
    return client.post("/users/batch",
                       json={"users": [{"username": u} for u in usernames]}, **kwargs)


def usernames(client: TestClient, **params: str) -> list[str]:
    """The usernames GET /users lists, in its order."""
    response = client.get("/users", params=params)
    assert response.status_code == 200, response.text
    return [u["username"] for u in response.json()["data"]]


def run(client: TestClient, workflow_id: str, user_id: str) -> Any:
    """POST /run/workflow, waiting for the end."""
    return client.post("/run/workflow", params={"wait": 10}, json={
        "workflowId": workflow_id, "userId": user_id, "data": {"orderId": 1}})


# -- U2 list -------------------------------------------------------------------------------


def test_list_users_answers_data_with_id_username_and_full_name_in_creation_order(
    client: TestClient,
) -> None:
    created = client.post("/users/batch", json={"users": [
        {"username": "c@example.com", "fullName": "C"}, {"username": "a@example.com"},
        {"username": "b@example.com", "fullName": "B"}]}).json()["data"]
    response = client.get("/users")
    assert response.status_code == 200, response.text
    assert response.json() == {"data": created}
    assert [u["username"] for u in created] == ["c@example.com", "a@example.com",
                                               "b@example.com"]
    assert created[1] == {"userId": created[1]["userId"], "username": "a@example.com",
                          "fullName": None}


def test_list_users_shows_only_the_callers_team(
    client: TestClient, make_user: Callable[..., str], other_team_headers: dict[str, str]
) -> None:
    make_user(username="mine@example.com")
    client.post("/users", json={"username": "theirs@example.com"}, headers=other_team_headers)
    assert usernames(client) == ["mine@example.com"]


@pytest.mark.parametrize("by_name", [False, True])
def test_list_users_of_a_parent_workflow_lists_only_its_installers(
    client: TestClient, make_user: Callable[..., str],
    installed: Callable[..., tuple[str, str]], install_for_new_user: Callable[..., str],
    by_name: bool,
) -> None:
    make_user(username="bystander@example.com")
    workflow_id, user_id = installed()
    second = install_for_new_user(workflow_id, "second@example.com")
    ref = ORDER_SUMMARY["name"] if by_name else workflow_id
    listed = client.get("/users", params={"parentWorkflowId": ref}).json()["data"]
    assert sorted(u["userId"] for u in listed) == sorted([user_id, second])


def test_list_users_of_an_unknown_workflow_answers_404(client: TestClient) -> None:
    response = client.get("/users", params={"parentWorkflowId": "no-such-workflow"})
    assert response.status_code == 404
    assert "no-such-workflow" in response.json()["message"]


# -- U4 update -----------------------------------------------------------------------------


def test_update_user_answers_the_user_as_get_does(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    user_id = make_user(username="old@example.com", full_name="Old Name")
    response = client.put(f"/users/{user_id}",
                          json={"username": "new@example.com", "fullName": "New Name"})
    assert response.status_code == 200, response.text
    expected = {"userId": user_id, "username": "new@example.com", "fullName": "New Name"}
    assert response.json() == expected
    assert client.get("/users/new@example.com").json() == expected
    assert client.get("/users/old@example.com").status_code == 404


def test_update_user_keeps_fields_left_out_and_clears_a_null_full_name(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    user_id = make_user(username="keep@example.com", full_name="Kept")
    renamed = client.put("/users/keep@example.com", json={"username": "kept@example.com"})
    assert renamed.json() == {"userId": user_id, "username": "kept@example.com",
                              "fullName": "Kept"}
    cleared = client.put(f"/users/{user_id}", json={"fullName": None})
    assert cleared.json() == {"userId": user_id, "username": "kept@example.com",
                              "fullName": None}


def test_update_user_to_a_taken_username_answers_409(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    make_user(username="taken@example.com")
    user_id = make_user(username="mover@example.com")
    response = client.put(f"/users/{user_id}", json={"username": "taken@example.com"})
    assert response.status_code == 409
    assert "taken@example.com" in response.json()["message"]
    assert client.get(f"/users/{user_id}").json()["username"] == "mover@example.com"


@pytest.mark.parametrize("body", [{"username": " padded"}, {"username": ""},
                                  {"username": "x" * 201}, {"nickname": "x"}])
def test_update_user_with_an_invalid_body_answers_422(
    client: TestClient, make_user: Callable[..., str], body: dict[str, Any]
) -> None:
    user_id = make_user()
    response = client.put(f"/users/{user_id}", json=body)
    assert response.status_code == 422, response.text


def test_update_of_an_unknown_or_another_teams_user_answers_404(
    client: TestClient, make_user: Callable[..., str], other_team_headers: dict[str, str]
) -> None:
    user_id = make_user()
    assert client.put("/users/nobody", json={"fullName": "x"}).status_code == 404
    theirs = client.put(f"/users/{user_id}", json={"fullName": "x"}, headers=other_team_headers)
    assert theirs.status_code == 404


# -- U5 delete -----------------------------------------------------------------------------


def test_deleted_user_is_gone_and_its_username_may_be_created_again(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    user_id = make_user(username="leaver@example.com")
    response = client.delete(f"/users/{user_id}")
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert client.get(f"/users/{user_id}").status_code == 404
    assert client.get("/users/leaver@example.com").status_code == 404
    assert usernames(client) == []
    assert client.delete(f"/users/{user_id}").status_code == 404
    again = make_user(username="leaver@example.com")
    assert again != user_id
    assert client.get("/users/leaver@example.com").json()["userId"] == again


def test_deleting_a_user_keeps_its_logs(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    run_finished: Callable[..., str],
) -> None:
    workflow_id, user_id = installed()
    execution_id = run_finished(workflow_id, user_id)
    assert client.delete(f"/users/{user_id}").status_code == 200
    assert client.get(f"/logs/{execution_id}").status_code == 200
    logs = client.get(f"/workflows/{workflow_id}/logs").json()["data"]
    assert execution_id in {item["executionId"] for item in logs}


def test_a_deleted_users_installation_no_longer_runs_even_from_the_cache(
    client: TestClient, installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed()
    assert run(client, workflow_id, user_id).status_code == 200  # the lookup is cached
    assert client.delete(f"/users/{user_id}").status_code == 200
    refused = run(client, workflow_id, user_id)
    assert refused.status_code == 404, refused.text


# -- U6 batch ------------------------------------------------------------------------------


def test_batch_creates_every_user_in_the_order_sent(client: TestClient) -> None:
    response = client.post("/users/batch", json={"users": [
        {"username": "one@example.com", "fullName": "One"}, {"username": "two@example.com"}]})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [(u["username"], u["fullName"]) for u in data] == [
        ("one@example.com", "One"), ("two@example.com", None)]
    for user in data:
        assert client.get(f"/users/{user['userId']}").json() == user


def test_an_empty_batch_creates_nothing(client: TestClient) -> None:
    response = client.post("/users/batch", json={"users": []})
    assert response.json() == {"data": []}


def test_batch_with_refused_items_creates_nothing_and_lists_each_of_them(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    make_user(username="taken@example.com")
    response = batch(client, "fine@example.com", "taken@example.com", " padded",
                     "twice@example.com", "twice@example.com")
    assert response.status_code == 422, response.text
    body = response.json()
    assert "none was created" in body["message"]
    assert [(p["index"], p["username"]) for p in body["problems"]] == [
        (1, "taken@example.com"), (2, " padded"), (3, "twice@example.com"),
        (4, "twice@example.com")]
    assert body["problems"][1]["path"] == "users[2].username"
    assert "taken" in body["problems"][0]["reason"]
    assert "more than once" in body["problems"][2]["reason"]
    assert usernames(client) == ["taken@example.com"]


def test_batch_with_a_too_long_full_name_names_that_field(client: TestClient) -> None:
    response = client.post("/users/batch", json={"users": [
        {"username": "ok@example.com"}, {"username": "long@example.com", "fullName": "x" * 201}]})
    assert response.status_code == 422
    [problem] = response.json()["problems"]
    assert (problem["index"], problem["path"]) == (1, "users[1].fullName")
    assert usernames(client) == []


def test_batch_of_more_than_1000_users_answers_422(client: TestClient) -> None:
    response = batch(client, *(f"u{i}" for i in range(1001)))
    assert response.status_code == 422
    assert usernames(client) == []


def test_batch_with_a_malformed_item_answers_422_by_path(client: TestClient) -> None:
    response = client.post("/users/batch", json={"users": [{"username": 7}]})
    assert response.status_code == 422
    assert response.json()["problems"][0]["path"] == "users[0].username"


# -- U8 delete a user's logs ----------------------------------------------------------------


@pytest.mark.parametrize("with_query", [False, True])
def test_delete_user_logs_deletes_only_that_users_executions(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    install_for_new_user: Callable[..., str], run_finished: Callable[..., str],
    with_query: bool,
) -> None:
    workflow_id, user_id = installed()
    other = install_for_new_user(workflow_id)
    mine = [run_finished(workflow_id, user_id) for _ in range(2)]
    kept = run_finished(workflow_id, other)
    params = {"userId": user_id} if with_query else {}
    response = client.delete(f"/users/{user_id}/logs", params=params)
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Success"}
    for execution_id in mine:
        assert client.get(f"/logs/{execution_id}").status_code == 404
        rerun = client.post(f"/workflows/{workflow_id}/rerun/{execution_id}")
        assert rerun.status_code == 404
    assert client.get(f"/logs/{kept}").status_code == 200


def test_delete_logs_with_a_different_user_in_the_query_answers_422(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    user_id = make_user()
    response = client.delete(f"/users/{user_id}/logs", params={"userId": "someone-else"})
    assert response.status_code == 422


def test_a_deleted_users_logs_can_be_deleted_by_its_id(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    run_finished: Callable[..., str],
) -> None:
    workflow_id, user_id = installed()
    execution_id = run_finished(workflow_id, user_id)
    assert client.delete(f"/users/{user_id}").status_code == 200
    assert client.delete(f"/users/{user_id}/logs").status_code == 200
    assert client.get(f"/logs/{execution_id}").status_code == 404


def test_delete_logs_of_an_unknown_user_answers_404(client: TestClient) -> None:
    assert client.delete("/users/nobody/logs").status_code == 404


def test_delete_logs_while_an_execution_runs_answers_409_and_deletes_nothing(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    run_finished: Callable[..., str], slow_target: SlowTarget,
) -> None:
    workflow_id, user_id = installed(slow_target.workflow())
    started = client.post("/run/workflow", json={"workflowId": workflow_id,
                                                 "userId": user_id, "data": {}})
    assert started.status_code == 200, started.text
    execution_id = started.json()["executionId"]
    refused = client.delete(f"/users/{user_id}/logs")
    assert refused.status_code == 409
    assert "still queued, running or waiting" in refused.json()["message"]
    slow_target.release.set()
    wait_finished(client, execution_id)
    assert client.delete(f"/users/{user_id}/logs").status_code == 200
    assert client.get(f"/logs/{execution_id}").status_code == 404


# -- U9 deactivate a user's workflows -------------------------------------------------------


def test_deactivate_workflows_stops_every_installation_of_the_user_at_once(
    client: TestClient, make_workflow: Callable[..., str],
    install_for_new_user: Callable[..., str],
) -> None:
    first = make_workflow()
    second = make_workflow(name="Second order sync")
    user_id = install_for_new_user(first)
    client.put("/workflows/activate", json={"userId": user_id, "workflowId": second})
    assert run(client, first, user_id).status_code == 200  # the lookup is cached
    response = client.put(f"/users/{user_id}/deactivate-workflows")
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Success"}
    for workflow_id in (first, second):
        refused = run(client, workflow_id, user_id)
        assert refused.status_code == 409, refused.text
        assert "not active" in refused.json()["message"]
    client.put("/workflows/activate", json={"userId": user_id, "workflowId": first})
    assert run(client, first, user_id).status_code == 200


def test_deactivate_workflows_of_an_unknown_user_answers_404(client: TestClient) -> None:
    assert client.put("/users/nobody/deactivate-workflows").status_code == 404


# -- versions in the path ------------------------------------------------------------------


def test_the_sdks_path_versioned_forms_reach_the_same_routes(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    user_id = make_user(username="sdk@example.com")
    for method, path, body in [
        ("GET", "/2024-03/users", None),
        ("PUT", f"/2024-03/users/{user_id}", {"fullName": "SDK"}),
        ("PUT", f"/2025-09/users/{user_id}/deactivate-workflows", None),
        ("DELETE", f"/2023-12/users/{user_id}/logs?userId={user_id}", None),
        ("POST", "/2024-03/users/batch", {"users": [{"username": "b@example.com"}]}),
        ("DELETE", f"/2024-03/users/{user_id}", None),
    ]:
        request = client.build_request(method, path, json=body)
        del request.headers["x-api-version"]
        response = client.send(request)
        assert response.status_code == 200, (path, response.text)
    assert usernames(client) == ["b@example.com"]
