"""``POST /workflows/{workflowId}/rerun/{executionId}``: lineage, replay, and every refusal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.clock import ManualClock
from reflow.ids import new_execution_id
from reflow.services import Reflow
from reflow.settings import Settings
from support import (
    ORDER_OUTPUT,
    ORDER_SUMMARY,
    ORDER_SUMMARY_V2,
    SlowTarget,
    execution_log,
    wait_finished,
)

DAY_MS = 86_400_000


@pytest.fixture
def settings(make_settings: Callable[..., Settings], request: pytest.FixtureRequest) -> Settings:
    """Test settings reaching the local slow server, plus a test's indirect overrides."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    return make_settings(http_allow_networks="127.0.0.0/8", **overrides)


def rerun(client: TestClient, workflow_id: str, execution_id: str, **kwargs: Any) -> Any:
    """POST the rerun."""
    return client.post(f"/workflows/{workflow_id}/rerun/{execution_id}", **kwargs)


def assert_not_found(response: Any) -> None:
    """A 404 with only a message."""
    assert response.status_code == 404, response.text
    assert list(response.json()) == ["message"]


# -- success -------------------------------------------------------------------------------


def test_rerun_answers_success_and_a_new_execution_id(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
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
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    new = rerun(client, workflow_id, source).json()["executionId"]
    rerun_data = wait_finished(client, new)
    assert rerun_data["mode"] == "rerun"
    assert rerun_data["rerunOf"] == source
    assert rerun_data["userId"] == user_id
    assert rerun_data["reruns"] == []
    original = execution_log(client, source)
    assert original["reruns"] == [new]
    assert original["mode"] == "api"
    assert original["rerunOf"] is None
    items = client.get(f"/workflows/{workflow_id}/logs", params={"userId": user_id}).json()
    by_id = {item["executionId"]: item for item in items["data"]}
    assert by_id[source]["reruns"] == [new]
    assert by_id[new]["rerunOf"] == source


def test_rerun_replays_the_original_trigger_payload(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    data = {"label": "replayed", "values": [10, 20]}
    source = run_finished(workflow_id, user_id, data)
    new = rerun(client, workflow_id, source).json()["executionId"]
    finished = wait_finished(client, new)
    assert finished["status"] == "succeeded"
    assert finished["trigger"] == execution_log(client, source)["trigger"]
    assert finished["trigger"]["data"] == data
    assert finished["output"] == {"label_upper": "REPLAYED", "value_count": 2, "total": 30}


def test_rerun_runs_the_original_version_after_a_new_one_is_stored(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    stored = client.put(f"/workflows/{workflow_id}/definition", json=ORDER_SUMMARY_V2)
    assert stored.json()["version"] == 2
    new = rerun(client, workflow_id, source).json()["executionId"]
    finished = wait_finished(client, new)
    assert finished["workflowVersion"] == execution_log(client, source)["workflowVersion"] == 1
    assert finished["output"] == ORDER_OUTPUT


def test_rerun_of_a_failed_execution_runs_it_again(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    failing = {"name": "Fails", "trigger": {"type": "api"},
               "blocks": [{"id": "stop", "type": "fail", "with": {"message": "still broken"}}]}
    workflow_id, user_id = installed(failing)
    source = run_finished(workflow_id, user_id, {})
    assert execution_log(client, source)["status"] == "failed"
    response = rerun(client, workflow_id, source)
    assert response.status_code == 200, response.text
    finished = wait_finished(client, response.json()["executionId"])
    assert finished["status"] == "failed"
    assert finished["rerunOf"] == source


def test_every_rerun_is_listed_on_the_original(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    first = rerun(client, workflow_id, source).json()["executionId"]
    wait_finished(client, first)
    second = rerun(client, workflow_id, source).json()["executionId"]
    wait_finished(client, second)
    assert sorted(execution_log(client, source)["reruns"]) == sorted([first, second])
    # A rerun of a rerun points at the rerun, not at the first execution.
    third = rerun(client, workflow_id, first).json()["executionId"]
    assert wait_finished(client, third)["rerunOf"] == first


@pytest.mark.parametrize("user_ref", ["id", "username"])
def test_rerun_with_the_sources_user_id_as_the_sdks_send_it(
    client: TestClient, make_workflow: Callable[..., str],
    install_for_new_user: Callable[..., str], run_finished: Callable[..., str], user_ref: str,
) -> None:
    workflow_id = make_workflow()
    user_id = install_for_new_user(workflow_id, "jane@example.com")
    source = run_finished(workflow_id, user_id)
    ref = user_id if user_ref == "id" else "jane@example.com"
    response = rerun(client, workflow_id, source, params={"userId": ref})
    assert response.status_code == 200, response.text
    assert response.json()["executionId"] != source


def test_rerun_through_the_installation_id(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    installation_id = execution_log(client, source)["installationId"]
    response = rerun(client, installation_id, source)
    assert response.status_code == 200, response.text
    assert wait_finished(client, response.json()["executionId"])["rerunOf"] == source


def test_rerun_with_the_version_in_the_path(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
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
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str],
    other_team_headers: dict[str, str],
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    assert_not_found(rerun(client, workflow_id, source, headers=other_team_headers))
    theirs = client.post("/workflows", json=ORDER_SUMMARY, headers=other_team_headers)
    their_id = theirs.json()["workflowId"]
    assert_not_found(rerun(client, their_id, source, headers=other_team_headers))
    assert execution_log(client, source)["reruns"] == []


def test_rerun_under_another_workflows_path_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
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
    install_for_new_user: Callable[..., str], run_finished: Callable[..., str],
) -> None:
    workflow_id, jane = installed()
    joe = install_for_new_user(workflow_id)
    janes = run_finished(workflow_id, jane)
    joes_installation = execution_log(client, run_finished(workflow_id, joe))["installationId"]
    assert_not_found(rerun(client, joes_installation, janes))


def test_rerun_with_a_user_id_other_than_the_sources_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    install_for_new_user: Callable[..., str], run_finished: Callable[..., str],
) -> None:
    workflow_id, jane = installed()
    joe = install_for_new_user(workflow_id)
    source = run_finished(workflow_id, jane)
    assert_not_found(rerun(client, workflow_id, source, params={"userId": joe}))


def test_rerun_with_an_unknown_user_id_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str]
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
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str],
) -> None:
    workflow_id, user_id = installed()
    source = run_finished(workflow_id, user_id)
    clock.advance(0.4)
    portal = client.portal
    assert portal is not None
    assert portal.call(reflow.purge_once) == 1
    assert client.get(f"/logs/{source}").status_code == 404
    response = rerun(client, workflow_id, source)
    assert_not_found(response)
    assert "logs are kept for" in response.json()["message"]


def test_rerun_of_a_running_execution_answers_409(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    slow_target: SlowTarget,
) -> None:
    workflow_id, user_id = installed(slow_target.workflow())
    started = client.post("/run/workflow",
                          json={"workflowId": workflow_id, "userId": user_id, "data": {}})
    source = started.json()["executionId"]
    response = rerun(client, workflow_id, source)
    assert response.status_code == 409, response.text
    assert list(response.json()) == ["message"]
    assert "running" in response.json()["message"]
    # Once it finished, the same rerun is accepted.
    slow_target.release.set()
    wait_finished(client, source)
    assert rerun(client, workflow_id, source).status_code == 200
