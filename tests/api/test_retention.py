"""Retention through the API: the team's window (/settings/retention), a workflow's own
``retention``, reruns of purged executions and of executions whose steps were dropped, and
runs going on while a purge runs (docs/operations.md "Retention")."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from reflow.clock import ManualClock
from reflow.domain.executions import (
    ExecutionRecord,
    ExecutionStatus,
    StepRecord,
    StepStatus,
    TriggerMode,
)
from reflow.ids import new_execution_id
from reflow.services import Reflow
from reflow.settings import Settings
from support import SlowTarget, wait_finished

DAY_MS = 86_400_000


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Test settings reaching the local slow server."""
    return make_settings(http_allow_networks="127.0.0.0/8")


def _purge(client: TestClient, reflow: Reflow) -> int:
    portal = client.portal
    assert portal is not None
    return portal.call(reflow.purge_once)


def test_a_team_sets_reads_and_resets_its_retention_window(client: TestClient) -> None:
    assert client.get("/settings/retention").json() == {
        "window": "7 days", "windowSeconds": 604800.0, "inherited": True}
    put = client.put("/2025-09/settings/retention", json={"window": "30d"})
    assert put.status_code == 200, put.text
    assert put.json() == {"window": "30 days", "windowSeconds": 2592000.0, "inherited": False}
    assert client.get("/settings/retention").json()["window"] == "30 days"
    reset = client.put("/settings/retention", json={"window": None})
    assert reset.json()["inherited"] is True


@pytest.mark.parametrize(("body", "needle"), [
    ({"window": "soon"}, "window:"),
    ({"window": 0}, "window: must be from 1 second"),
    ({"window": "11000d"}, "10 years"),
    ({"windw": "3d"}, "windw"),
])
def test_a_bad_retention_window_answers_422_naming_it(
    client: TestClient, body: dict[str, Any], needle: str
) -> None:
    response = client.put("/settings/retention", json=body)
    assert response.status_code == 422, response.text
    assert needle in response.json()["message"]


def test_a_definition_with_a_bad_retention_answers_422_naming_each_path(
    client: TestClient, make_workflow: Callable[..., str]
) -> None:
    response = client.post("/workflows", json={
        "name": "Bad retention", "trigger": {"type": "api"},
        "blocks": [{"id": "t", "type": "transform", "with": {"value": 1}}],
        "retention": {"window": "-1d", "keep": 0, "keepSteps": "some"},
    })
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    for path in ("retention.window", "retention.keep", "retention.keepSteps"):
        assert path in message


def test_a_workflow_window_purges_its_executions_before_the_teams_window(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str],
) -> None:
    short_id, short_user = installed(name="Short-lived", retention="1h")
    team_id, team_user = installed(name="Team window")
    short = run_finished(short_id, short_user)
    kept = run_finished(team_id, team_user)
    clock.advance(2 * 3600)
    # Two hours also wake the app's own purge loop (hourly here), which may purge first:
    # check what is left, not what this round deleted.
    _purge(client, reflow)
    assert client.get(f"/logs/{short}").status_code == 404
    assert client.get(f"/logs/{kept}").status_code == 200


def test_a_rerun_started_before_its_source_is_purged_still_completes(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]], slow_target: SlowTarget,
) -> None:
    workflow_id, user_id = installed(slow_target.workflow())
    slow_target.release.set()
    source = client.post("/run/workflow", params={"wait": 10},
                         json={"workflowId": workflow_id, "userId": user_id, "data": {}})
    source_id = source.json()["executionId"]
    slow_target.release.clear()
    started = client.post(f"/workflows/{workflow_id}/rerun/{source_id}")
    assert started.status_code == 200, started.text
    new_id = started.json()["executionId"]
    client.put("/settings/retention", json={"window": "1s"})
    clock.advance(5)
    assert _purge(client, reflow) == 1  # the source; the running rerun is untouched
    assert client.get(f"/logs/{source_id}").status_code == 404
    slow_target.release.set()
    finished = wait_finished(client, new_id)
    assert finished["status"] == "succeeded"
    assert finished["rerunOf"] == source_id


KEEP_FAILED_STEPS = {
    "name": "Quiet sync", "trigger": {"type": "api"},
    "retention": {"keepSteps": "failed"},
    "blocks": [
        {"id": "total", "type": "transform", "with": {"value": "{{ trigger.data.n + 1 }}"}},
        {"id": "done", "type": "respond", "with": {"body": {"total": "{{ total }}"}}},
    ],
}


def test_a_succeeded_execution_whose_steps_were_dropped_reruns_from_start_but_not_from_a_block(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str],
) -> None:
    workflow_id, user_id = installed(KEEP_FAILED_STEPS)
    source = run_finished(workflow_id, user_id, {"n": 1})
    assert client.get(f"/logs/{source}").json()["data"]["results"]
    clock.advance(120)  # past the step pass's lag
    assert _purge(client, reflow) == 0  # no execution deleted: only its steps
    log = client.get(f"/logs/{source}")
    assert log.status_code == 200
    assert log.json()["data"]["status"] == "succeeded"
    assert log.json()["data"]["results"] == []
    refused = client.post(f"/workflows/{workflow_id}/rerun/{source}", json={"from": "done"})
    assert refused.status_code == 422, refused.text
    assert "step data" in refused.json()["message"]
    assert "from 'start'" in refused.json()["message"]
    again = client.post(f"/workflows/{workflow_id}/rerun/{source}", params={"wait": 10})
    assert again.status_code == 200, again.text
    assert wait_finished(client, again.json()["executionId"])["status"] == "succeeded"


def _expired(team_id: str, workflow_id: str, installation_id: str, user_id: str,
             n: int, at: int) -> ExecutionRecord:
    steps = [StepRecord(seq, f"b{seq}", StepStatus.SUCCEEDED, 1, at, at, b"{}", b"{}")
             for seq in range(3)]
    return ExecutionRecord(
        id=new_execution_id(at - 1_000 + n % 1_000), team_id=team_id, workflow_id=workflow_id,
        installation_id=installation_id, user_id=user_id, version=1, mode=TriggerMode.API,
        trigger=orjson.dumps({"data": {"n": n}}), status=ExecutionStatus.SUCCEEDED,
        created_at=at - 10, started_at=at - 5, stopped_at=at, steps=steps)


def test_a_run_completes_while_a_large_purge_is_in_progress(
    client: TestClient, reflow: Reflow, installed: Callable[..., tuple[str, str]],
    run_finished: Callable[..., str],
) -> None:
    workflow_id, user_id = installed()
    first = run_finished(workflow_id, user_id)
    portal = client.portal
    assert portal is not None
    team = portal.call(reflow.keys.first_team)
    assert team is not None
    record = portal.call(reflow.store.get_execution, team.id, first)
    assert record is not None
    old = reflow.clock.now_ms() - 30 * DAY_MS
    total = 3_000

    async def fill() -> None:
        for chunk in range(0, total, 100):
            await asyncio.gather(*(reflow.store.insert_execution(_expired(
                record.team_id, record.workflow_id, record.installation_id, record.user_id,
                n, old + n)) for n in range(chunk, chunk + 100)))

    portal.call(fill)
    purged: list[int] = []
    purge = portal.start_task_soon(lambda: reflow.retention.purge(
        batch=30, share=0.2, progress=lambda _step, n: purged.append(n)))
    while not purged:  # the purge has begun
        portal.call(asyncio.sleep, 0.001)
    during = run_finished(workflow_id, user_id)
    done_then = sum(purged)
    report = purge.result(timeout=60)
    assert report.executions == total
    assert done_then < total  # the run finished while the purge still had batches to go
    assert client.get(f"/logs/{during}").json()["data"]["status"] == "succeeded"

