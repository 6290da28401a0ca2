"""``POST /workflows/{workflowId}/rerun/{executionId}``: lineage, replay, and every refusal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import ORDER_SUMMARY
from reflow.ids import new_execution_id
from reflow.services import Reflow
from reflow.settings import Settings

ORDER_DATA = {"label": "abc", "values": [1, 2, 3]}
ORDER_OUTPUT = {"label_upper": "ABC", "value_count": 3, "total": 6}
DAY_MS = 86_400_000
VERSION_2 = {**ORDER_SUMMARY, "blocks": [
    {"id": "done", "type": "respond", "with": {"body": {"version": 2}}},
]}

Runner = Callable[..., str]


@pytest.fixture
def settings(make_settings: Callable[..., Settings], request: pytest.FixtureRequest) -> Settings:
    """Test settings reaching the local slow server, plus a test's indirect overrides."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    return make_settings(http_allow_networks="127.0.0.0/8", **overrides)


@pytest.fixture
def slow_url(client: TestClient) -> Iterator[tuple[str, threading.Event]]:
    """A local URL that answers once the event is set; set before ``client`` closes."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(10)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/slow", release
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def other_team_headers(client: TestClient, reflow: Reflow) -> dict[str, str]:
    """Authorization for a second team with its own key."""
    portal = client.portal
    assert portal is not None
    team = portal.call(reflow.keys.create_team, "other team")
    created = portal.call(reflow.keys.create_key, team, "other key")
    return {"authorization": f"bearer {created.raw}"}


@pytest.fixture
def run_finished(client: TestClient) -> Runner:
    """Run a workflow for a user and wait for its end; returns the executionId."""

    def run(workflow_id: str, user_id: str, data: dict[str, Any] | None = None) -> str:
        response = client.post("/run/workflow", params={"wait": 10}, json={
            "workflowId": workflow_id, "userId": user_id,
            "data": ORDER_DATA if data is None else data,
        })
        assert response.status_code == 200, response.text
        execution_id: str = response.json()["executionId"]
        return execution_id

    return run


def execution(client: TestClient, execution_id: str) -> dict[str, Any]:
    """``GET /logs/{id}``'s data (asserting a 200)."""
    response = client.get(f"/logs/{execution_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def wait_finished(client: TestClient, execution_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Poll until the execution finished (bounded in time and count)."""
    deadline = time.monotonic() + timeout
    for _ in range(2000):
        data = execution(client, execution_id)
        if data["finished"] or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert data["finished"], f"execution {execution_id} still {data['status']}"
    return data


def rerun(client: TestClient, workflow_id: str, execution_id: str, **kwargs: Any) -> Any:
    """POST the rerun."""
    return client.post(f"/workflows/{workflow_id}/rerun/{execution_id}", **kwargs)


def assert_not_found(response: Any) -> None:
    """A 404 with only a message."""
    assert response.status_code == 404, response.text
    assert list(response.json()) == ["message"]


# -- success -------------------------------------------------------------------------------


def test_rerun_answers_success_and_a_new_execution_id(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Runner
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    response = rerun(client, workflow_id, source)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"message": "success", "executionId": body["executionId"]}
    assert body["executionId"] != source
    assert len(body["executionId"]) == 21
    # Committed before the answer: readable at once.
    assert client.get(f"/logs/{body['executionId']}").status_code == 200


def test_rerun_is_a_new_execution_with_lineage_both_ways(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Runner
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    new = rerun(client, workflow_id, source).json()["executionId"]
    rerun_data = wait_finished(client, new)
    assert rerun_data["mode"] == "rerun"
    assert rerun_data["rerunOf"] == source
    assert rerun_data["userId"] == user_id
    assert rerun_data["reruns"] == []
    original = execution(client, source)
    assert original["reruns"] == [new]
    assert original["mode"] == "api"
    assert original["rerunOf"] is None
    items = client.get(f"/workflows/{workflow_id}/logs", params={"userId": user_id}).json()
    by_id = {item["executionId"]: item for item in items["data"]}
    assert by_id[source]["reruns"] == [new]
    assert by_id[new]["rerunOf"] == source


def test_rerun_replays_the_original_trigger_payload(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Runner
) -> None:
    workflow_id, user_id = installed()
    data = {"label": "replayed", "values": [10, 20]}
    source = run_finished(workflow_id, user_id, data)
    new = rerun(client, workflow_id, source).json()["executionId"]
    finished = wait_finished(client, new)
    assert finished["status"] == "succeeded"
    assert finished["trigger"] == execution(client, source)["trigger"]
    assert finished["trigger"]["data"] == data
    assert finished["output"] == {"label_upper": "REPLAYED", "value_count": 2, "total": 30}


def test_rerun_runs_the_original_version_after_a_new_one_is_stored(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Runner
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    stored = client.put(f"/workflows/{workflow_id}/definition", json=VERSION_2)
    assert stored.json()["version"] == 2
    new = rerun(client, workflow_id, source).json()["executionId"]
    finished = wait_finished(client, new)
    assert finished["workflowVersion"] == execution(client, source)["workflowVersion"] == 1
    assert finished["output"] == ORDER_OUTPUT


def test_rerun_of_a_failed_execution_runs_it_again(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Runner
) -> None:
    failing = {"name": "Fails", "trigger": {"type": "api"},
               "blocks": [{"id": "stop", "type": "fail", "with": {"message": "still broken"}}]}
    workflow_id, user_id = installed(failing)
    source = run_finished(workflow_id, user_id, {})
    assert execution(client, source)["status"] == "failed"
    response = rerun(client, workflow_id, source)
    assert response.status_code == 200, response.text
    finished = wait_finished(client, response.json()["executionId"])
    assert finished["status"] == "failed"
    assert finished["rerunOf"] == source


def test_every_rerun_is_listed_on_the_original(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Runner
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    first = rerun(client, workflow_id, source).json()["executionId"]
    wait_finished(client, first)
    second = rerun(client, workflow_id, source).json()["executionId"]
    wait_finished(client, second)
    assert sorted(execution(client, source)["reruns"]) == sorted([first, second])
    # A rerun of a rerun points at the rerun, not at the first execution.
    third = rerun(client, workflow_id, first).json()["executionId"]
    assert wait_finished(client, third)["rerunOf"] == first


@pytest.mark.parametrize("user_ref", ["id", "username"])
def test_rerun_with_the_sources_user_id_as_the_sdks_send_it(
    client: TestClient, make_workflow: Callable[..., str], make_user: Callable[..., str],
    run_finished: Runner, user_ref: str,
) -> None:
    workflow_id = make_workflow()
    user_id = make_user(username="jane@example.com")
    client.put("/workflows/activate", json={"userId": user_id, "workflowId": workflow_id})
    source = run_finished(workflow_id, user_id)
    ref = user_id if user_ref == "id" else "jane@example.com"
    response = rerun(client, workflow_id, source, params={"userId": ref})
    assert response.status_code == 200, response.text
    assert response.json()["executionId"] != source


def test_rerun_through_the_installation_id(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Runner
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    installation_id = execution(client, source)["installationId"]
    response = rerun(client, installation_id, source)
    assert response.status_code == 200, response.text
    assert wait_finished(client, response.json()["executionId"])["rerunOf"] == source


def test_rerun_with_the_version_in_the_path(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Runner
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    request = client.build_request(
        "POST", f"/2024-03/workflows/{workflow_id}/rerun/{source}", params={"userId": user_id}
    )
    del request.headers["x-api-version"]
    response = client.send(request)
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "success"


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("make_id", [new_execution_id, lambda: "not-an-execution"],
                         ids=["well-formed", "malformed"])
def test_rerun_of_an_unknown_execution_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    make_id: Callable[[], str],
) -> None:
    workflow_id, _ = installed()
    response = rerun(client, workflow_id, make_id())
    assert_not_found(response)
    assert "kept" not in response.json()["message"]


def test_rerun_of_another_teams_execution_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Runner,
    other_team_headers: dict[str, str],
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    assert_not_found(rerun(client, workflow_id, source, headers=other_team_headers))
    theirs = client.post("/workflows", json=ORDER_SUMMARY, headers=other_team_headers)
    their_id = theirs.json()["workflowId"]
    assert_not_found(rerun(client, their_id, source, headers=other_team_headers))
    assert execution(client, source)["reruns"] == []


def test_rerun_under_another_workflows_path_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Runner
) -> None:
    workflow_id, user_id = installed()
    other_id = client.post("/workflows", json={**ORDER_SUMMARY, "name": "Other"}).json()
    client.put("/workflows/activate",
               json={"userId": user_id, "workflowId": other_id["workflowId"]})
    source = run_finished(workflow_id, user_id)
    assert_not_found(rerun(client, other_id["workflowId"], source))
    assert_not_found(rerun(client, other_id["workflowId"], source, params={"userId": user_id}))


def test_rerun_under_another_users_installation_id_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    make_user: Callable[..., str], run_finished: Runner,
) -> None:
    workflow_id, jane = installed()
    joe = make_user()
    client.put("/workflows/activate", json={"userId": joe, "workflowId": workflow_id})
    janes = run_finished(workflow_id, jane)
    joes_installation = execution(client, run_finished(workflow_id, joe))["installationId"]
    assert_not_found(rerun(client, joes_installation, janes))


def test_rerun_with_a_user_id_other_than_the_sources_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    make_user: Callable[..., str], run_finished: Runner,
) -> None:
    workflow_id, jane = installed()
    joe = make_user()
    client.put("/workflows/activate", json={"userId": joe, "workflowId": workflow_id})
    source = run_finished(workflow_id, jane)
    assert_not_found(rerun(client, workflow_id, source, params={"userId": joe}))


def test_rerun_with_an_unknown_user_id_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Runner
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    assert_not_found(rerun(client, workflow_id, source, params={"userId": "nobody"}))


def test_rerun_of_an_execution_older_than_retention_answers_404_with_retention_message(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, _ = installed()
    eight_days_ago = time.time_ns() // 1_000_000 - 8 * DAY_MS
    response = rerun(client, workflow_id, new_execution_id(now_ms=eight_days_ago))
    assert_not_found(response)
    message = response.json()["message"]
    assert "kept for 7 days" in message


@pytest.mark.parametrize("settings", [{"log_retention": "300ms"}], indirect=True)
def test_rerun_of_a_purged_execution_answers_404_with_retention_message(
    client: TestClient, reflow: Reflow, installed: Callable[..., tuple[str, str]],
    run_finished: Runner,
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    time.sleep(0.4)
    portal = client.portal
    assert portal is not None
    assert portal.call(reflow.purge_once) == 1
    assert client.get(f"/logs/{source}").status_code == 404
    response = rerun(client, workflow_id, source)
    assert_not_found(response)
    assert "logs are kept for" in response.json()["message"]


def test_rerun_of_a_running_execution_answers_409(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    slow_url: tuple[str, threading.Event],
) -> None:
    url, release = slow_url
    workflow_id, user_id = installed({
        "name": "Slow", "trigger": {"type": "api"},
        "blocks": [{"id": "fetch", "type": "http", "with": {"method": "GET", "url": url}}],
    })
    started = client.post("/run/workflow",
                          json={"workflowId": workflow_id, "userId": user_id, "data": {}})
    source = started.json()["executionId"]
    response = rerun(client, workflow_id, source)
    assert response.status_code == 409, response.text
    assert list(response.json()) == ["message"]
    assert "running" in response.json()["message"]
    # Once it finished, the same rerun is accepted.
    release.set()
    wait_finished(client, source)
    assert rerun(client, workflow_id, source).status_code == 200
