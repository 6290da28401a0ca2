"""POST /executions/{executionId}/cancel: a cancelled execution stops before its next block."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from reflow.settings import Settings
from support import SlowTarget, execution_log, wait_finished


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The slow local target reachable."""
    return make_settings(http_allow_networks="127.0.0.0/8")


def _start_slow(client: TestClient, installed: Callable[..., tuple[str, str]],
                slow_target: SlowTarget) -> str:
    workflow_id, user_id = installed(slow_target.workflow())
    response = client.post("/run/workflow", json={"workflowId": workflow_id, "userId": user_id,
                                                  "data": {}})
    assert response.status_code == 200, response.text
    execution_id: str = response.json()["executionId"]
    return execution_id


def test_cancel_of_a_running_execution_stops_it_before_its_next_block(
    client: TestClient, installed: Callable[..., tuple[str, str]], slow_target: SlowTarget,
) -> None:
    execution_id = _start_slow(client, installed, slow_target)
    response = client.post(f"/executions/{execution_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "success", "executionId": execution_id,
                               "status": "running", "cancelRequested": True}
    slow_target.release.set()  # the block in flight finishes; "done" never runs
    data = wait_finished(client, execution_id)
    assert data["status"] == "cancelled"
    assert [r["connectorId"] for r in data["results"]] == ["fetch"]
    assert data["error"] == {"message": "cancelled before block 'done' ran", "blockId": "done"}
    again = client.post(f"/executions/{execution_id}/cancel")
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"


def test_cancel_of_a_finished_execution_answers_409(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    run_finished: Callable[..., str],
) -> None:
    execution_id = run_finished(*installed())
    response = client.post(f"/executions/{execution_id}/cancel")
    assert response.status_code == 409
    assert "already succeeded" in response.json()["message"]
    assert execution_log(client, execution_id)["status"] == "succeeded"


def test_cancel_of_another_teams_or_an_unknown_execution_answers_404(
    client: TestClient, installed: Callable[..., tuple[str, str]], slow_target: SlowTarget,
    other_team_headers: dict[str, str],
) -> None:
    execution_id = _start_slow(client, installed, slow_target)
    theirs = client.post(f"/executions/{execution_id}/cancel", headers=other_team_headers)
    assert theirs.status_code == 404
    assert client.post("/executions/0VcNoSuchExecution000/cancel").status_code == 404
    slow_target.release.set()
    assert wait_finished(client, execution_id)["status"] == "succeeded"  # untouched
