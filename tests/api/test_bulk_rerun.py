"""Bulk rerun jobs (docs/api.md "Bulk rerun"): POST /reruns resolves a filter once and a
runner reruns each execution at a bounded rate, recording a result per execution;
GET shows progress, DELETE cancels what has not started, and a job resumed after a crash
reruns no execution twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

import reflow.services.reruns as reruns_module
from reflow.clock import ManualClock
from reflow.dispatch import Started
from reflow.errors import NotFound
from reflow.services import Reflow
from reflow.services.reruns import PERIODIC_NAME
from reflow.services.runs import RerunOptions
from reflow.settings import Settings

# `check` fails unless trigger.data.ok (its message names the order); `prep` runs first.
CHECKED: dict[str, Any] = {
    "name": "Bulk checked order",
    "trigger": {"type": "api"},
    "blocks": [
        {"id": "prep", "type": "transform", "with": {"value": "{{ trigger.data.n * 2 }}"}},
        {"id": "check", "type": "transform",
         "with": {"value": "{{ trigger.data.ok ? 'fine' : $error('order ' & $string("
                           "trigger.data.n) & ' is not ok') }}"}},
        {"id": "done", "type": "respond", "with": {"body": {"check": "{{ check }}"}}},
    ],
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """A rate of 10 reruns/s: batches of one, so a test sees a job part way; the worker
    claims the reruns other Reflows queue within 50 ms (room for the next batch)."""
    return make_settings(rerun_rate=10, worker_poll_interval=0.05)


def _run(client: TestClient, workflow_id: str, user_id: str, data: dict[str, Any]) -> str:
    response = client.post("/run/workflow?wait=5",
                           json={"workflowId": workflow_id, "userId": user_id, "data": data})
    assert response.status_code == 200, response.text
    time.sleep(0.002)  # ids order by the millisecond they were minted
    execution_id: str = response.json()["executionId"]
    return execution_id


@pytest.fixture
def failed_runs(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> tuple[str, str, list[str]]:
    """Three failed executions and one that succeeded: (workflowId, userId, failed ids)."""
    workflow_id, user_id = installed(CHECKED)
    failed = [_run(client, workflow_id, user_id, {"n": n, "ok": False}) for n in (1, 2, 3)]
    _run(client, workflow_id, user_id, {"n": 4, "ok": True})
    return workflow_id, user_id, failed


def _create(client: TestClient, body: dict[str, Any], status: int = 200) -> Any:
    response = client.post("/reruns", json=body)
    assert response.status_code == status, response.text
    return response.json()


def _finish(client: TestClient, reflow: Reflow, job_id: str) -> Any:
    """Run the runner until the job ends; the job with all its results. A tick waits for
    the batch the background runner may be recording, so what it reads is final."""
    for _ in range(100):
        client.portal.call(reflow.periodic.run_once, PERIODIC_NAME)  # type: ignore[union-attr]
        job = client.get(f"/reruns/{job_id}", params={"limit": 1000}).json()
        if job["status"] in ("done", "cancelled") and not job["pending"]:
            return job
    raise AssertionError(f"job {job_id} did not end: {job}")


def _reruns_of(client: TestClient, execution_id: str) -> list[str]:
    response = client.get(f"/logs/{execution_id}")
    assert response.status_code == 200, response.text
    reruns: list[str] = response.json()["data"]["reruns"]
    return reruns


def test_bulk_rerun_reruns_each_failed_execution_of_the_window_once(
    client: TestClient, reflow: Reflow, failed_runs: tuple[str, str, list[str]]
) -> None:
    workflow_id, _, failed = failed_runs
    created = _create(client, {"filter": {"workflowId": workflow_id, "since": "1h"}})
    assert created["total"] == 3
    job = _finish(client, reflow, created["jobId"])
    assert (job["status"], job["done"], job["failed"], job["pending"]) == ("done", 3, 0, 0)
    assert [r["executionId"] for r in job["results"]] == failed
    for result in job["results"]:
        assert result["state"] == "done"
        assert _reruns_of(client, result["executionId"]) == [result["newExecutionId"]]
    assert job["filter"]["status"] == "failed"
    assert job["options"] == {"from": "start", "version": "original"}


def test_bulk_rerun_narrows_by_user_error_text_block_and_status(
    client: TestClient, reflow: Reflow, failed_runs: tuple[str, str, list[str]],
    install_for_new_user: Callable[..., str],
) -> None:
    workflow_id, user_id, failed = failed_runs
    other_user = install_for_new_user(workflow_id)
    _run(client, workflow_id, other_user, {"n": 9, "ok": False})
    # Reruns of the jobs made here (which fail again) come after the window.
    base = {"workflowId": workflow_id, "since": "1h", "until": int(time.time() * 1000) + 1}

    def total(**narrowed: Any) -> int:
        created = _create(client, {"filter": {**base, **narrowed}})
        client.delete(f"/reruns/{created['jobId']}")  # only its selection is looked at
        count: int = created["total"]
        return count

    assert total() == 4
    assert total(userId=user_id) == 3
    assert total(error="ORDER 2 IS") == 1
    assert total(blockId="check") == 4
    assert total(blockId="prep") == 0
    assert total(status="succeeded") == 1
    # Without a workflow: every workflow of the team.
    assert total(workflowId=None) == 4
    job = _create(client, {"filter": {**base, "error": "order 2"}})
    results = _finish(client, reflow, job["jobId"])["results"]
    assert [r["executionId"] for r in results] == [failed[1]]


def test_bulk_rerun_window_takes_iso_times_and_ends_at_until(
    client: TestClient, failed_runs: tuple[str, str, list[str]]
) -> None:
    workflow_id, _, _ = failed_runs
    past = {"workflowId": workflow_id, "since": "2020-01-01", "until": "2020-01-20T10:00Z"}
    assert _create(client, {"filter": past})["total"] == 0
    now_ms = int(time.time() * 1000)
    recent = {"workflowId": workflow_id, "since": now_ms - 3_600_000, "until": now_ms + 1000}
    assert _create(client, {"filter": recent})["total"] == 3


def test_bulk_rerun_from_failed_on_the_latest_version_reuses_the_steps_before_it(
    client: TestClient, reflow: Reflow, failed_runs: tuple[str, str, list[str]]
) -> None:
    workflow_id, _, _ = failed_runs
    created = _create(client, {"filter": {"workflowId": workflow_id, "since": "1h"},
                               "from": "failed", "version": "latest"})
    job = _finish(client, reflow, created["jobId"])
    assert job["options"] == {"from": "failed", "version": "latest"}
    new_id = job["results"][0]["newExecutionId"]
    steps = client.get(f"/logs/{new_id}").json()["data"]["steps"]
    assert [(s["blockId"], s["reused"]) for s in steps[:2]] == [("prep", True), ("check", False)]


def test_bulk_rerun_records_why_an_execution_was_refused(
    client: TestClient, reflow: Reflow, failed_runs: tuple[str, str, list[str]]
) -> None:
    workflow_id, user_id, failed = failed_runs
    deactivated = client.put("/workflows/deactivate",
                             json={"userId": user_id, "workflowId": workflow_id})
    assert deactivated.status_code == 200, deactivated.text
    created = _create(client, {"filter": {"workflowId": workflow_id, "since": "1h"}})
    job = _finish(client, reflow, created["jobId"])
    assert (job["status"], job["done"], job["failed"]) == ("done", 0, 3)
    assert all("not active" in r["error"] and "newExecutionId" not in r
               for r in job["results"])
    assert _reruns_of(client, failed[0]) == []


def test_a_batch_rerun_answers_in_order_and_a_key_stored_meanwhile_gives_back_its_run(
    client: TestClient, reflow: Reflow, failed_runs: tuple[str, str, list[str]]
) -> None:
    """RunService.rerun_many skips the key lookup (the runner's pending items made it):
    a key stored meanwhile is found by its insert, and no second execution is made."""
    _, _, failed = failed_runs
    portal = client.portal
    assert portal is not None
    team = portal.call(reflow.keys.team, None)
    batch = [(failed[0], "job-key-0"), ("0" * 20, "job-key-x"), (failed[1], "job-key-1")]
    first = portal.call(reflow.runs.rerun_many, team, batch, RerunOptions())
    assert isinstance(first[0], Started) and isinstance(first[2], Started)
    assert isinstance(first[1], NotFound) and "not found" in first[1].message
    again = portal.call(reflow.runs.rerun_many, team, batch[:1], RerunOptions())
    assert isinstance(again[0], Started)
    assert again[0].execution_id == first[0].execution_id
    assert _reruns_of(client, failed[0]) == [first[0].execution_id]
    assert _reruns_of(client, failed[1]) == [first[2].execution_id]


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"filter": {}}, "filter.since"),
    ({"filter": {"since": "yesterday"}}, "filter.since"),
    ({"filter": {"since": "40d"}}, "filter.since"),
    ({"filter": {"since": "2025-01-01", "until": "2025-03-01"}}, "filter.since"),
    ({"filter": {"since": "1h", "until": "2h"}}, "filter.until"),
    ({"filter": {"since": "1h", "status": "running"}}, "filter.status"),
    ({"filter": {"since": "1h", "error": ""}}, "filter.error"),
    ({"filter": {"since": "1h", "colour": "red"}}, "filter.colour"),
    ({"filter": {"since": "1h"}, "version": "newest"}, "version"),
    ({"filter": {"since": "1h"}, "from": ""}, "from"),
    ({}, "filter"),
]


def test_bulk_rerun_refuses_an_invalid_request_naming_the_field(client: TestClient) -> None:
    for body, field in INVALID:
        response = client.post("/reruns", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["message"].startswith(field), (body, response.json())
    assert client.get("/reruns").json()["data"] == []


def test_bulk_rerun_of_an_unknown_workflow_or_user_answers_404(
    client: TestClient, failed_runs: tuple[str, str, list[str]]
) -> None:
    workflow_id, _, _ = failed_runs
    for wrong in ({"workflowId": "no-such-workflow"},
                  {"workflowId": workflow_id, "userId": "no-such-user"}):
        response = client.post("/reruns", json={"filter": {"since": "1h", **wrong}})
        assert response.status_code == 404, response.text
    assert client.get("/reruns/0000000000000000000000").status_code == 404
    assert client.delete("/reruns/0000000000000000000000").status_code == 404


def test_bulk_rerun_refuses_more_executions_than_a_job_takes_naming_the_count(
    client: TestClient, failed_runs: tuple[str, str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workflow_id, _, _ = failed_runs
    monkeypatch.setattr(reruns_module, "MAX_ITEMS", 2)
    response = client.post("/reruns", json={"filter": {"workflowId": workflow_id,
                                                       "since": "1h"}})
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("filter: 3 executions match; a job reruns "
                                                 "at most 2")
    assert client.get("/reruns").json()["data"] == []


def test_cancel_stops_the_executions_not_yet_rerun(
    client: TestClient, reflow: Reflow, failed_runs: tuple[str, str, list[str]]
) -> None:
    workflow_id, _, failed = failed_runs
    created = _create(client, {"filter": {"workflowId": workflow_id, "since": "1h"}})
    cancelled = client.delete(f"/reruns/{created['jobId']}")
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["pending"] == 0
    assert body["done"] + body["cancelled"] == 3 and body["cancelled"] >= 1
    job = _finish(client, reflow, created["jobId"])
    assert job["status"] == "cancelled"
    rerun = [r for r in job["results"] if r["state"] == "done"]
    assert len(rerun) == job["done"]
    assert sum(len(_reruns_of(client, e)) for e in failed) == job["done"]
    # Cancelling again changes nothing.
    again = client.delete(f"/reruns/{created['jobId']}").json()
    assert (again["status"], again["cancelled"]) == ("cancelled", job["cancelled"])


def test_jobs_are_listed_newest_first_and_results_come_in_pages(
    client: TestClient, reflow: Reflow, failed_runs: tuple[str, str, list[str]]
) -> None:
    workflow_id, _, failed = failed_runs
    first = _create(client, {"filter": {"workflowId": workflow_id, "since": "1h"}})
    second = _create(client, {"filter": {"workflowId": workflow_id, "since": "30m"}})
    listed = client.get("/reruns").json()["data"]
    assert [j["jobId"] for j in listed] == [second["jobId"], first["jobId"]]
    older = client.get("/reruns", params={"before": second["jobId"]}).json()["data"]
    assert [j["jobId"] for j in older] == [first["jobId"]]
    _finish(client, reflow, first["jobId"])
    page = client.get(f"/reruns/{first['jobId']}", params={"limit": 2}).json()
    assert [r["executionId"] for r in page["results"]] == failed[:2]
    assert page["nextOffset"] == 2
    rest = client.get(f"/reruns/{first['jobId']}", params={"offset": 2, "limit": 2}).json()
    assert [r["executionId"] for r in rest["results"]] == failed[2:]
    assert rest["nextOffset"] is None


def test_bulk_rerun_answers_in_the_path_versioned_form(
    client: TestClient, reflow: Reflow, failed_runs: tuple[str, str, list[str]]
) -> None:
    workflow_id, _, _ = failed_runs
    response = client.post("/2025-09/reruns", json={"filter": {"workflowId": workflow_id,
                                                               "since": "1h"}},
                           headers={"x-api-version": ""})
    assert response.status_code == 200, response.text
    job_id = response.json()["jobId"]
    assert client.get(f"/2024-03/reruns/{job_id}").json()["total"] == 3


def test_another_teams_job_answers_404(
    client: TestClient, failed_runs: tuple[str, str, list[str]],
    other_team_headers: dict[str, str],
) -> None:
    workflow_id, _, _ = failed_runs
    job_id = _create(client, {"filter": {"workflowId": workflow_id, "since": "1h"}})["jobId"]
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/reruns/{job_id}", headers=other_team_headers)
        assert response.status_code == 404, response.text
    assert client.get("/reruns", headers=other_team_headers).json()["data"] == []
    refused = client.post("/reruns", headers=other_team_headers, json={
        "filter": {"workflowId": workflow_id, "since": "1h"}})
    assert refused.status_code == 404, refused.text


def test_a_job_killed_between_a_rerun_and_its_record_resumes_without_rerunning_twice(
    client: TestClient, failed_runs: tuple[str, str, list[str]], settings: Settings,
) -> None:
    """A runner dies after committing a rerun but before recording it; another process
    takes the job once the lease lapses and records that execution instead of a second."""
    workflow_id, _, failed = failed_runs
    portal = client.portal
    assert portal is not None
    first = Reflow.open(settings, ManualClock())
    team = portal.call(first.keys.team, None)
    job = portal.call(first.reruns.create, team, {"workflowId": workflow_id, "since": "1h"})
    assert portal.call(first.periodic.run_once, PERIODIC_NAME) == 1

    async def crash(*_: Any) -> None:
        raise RuntimeError("killed before recording")

    first.store.finish_rerun_items = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="killed"):
        portal.call(first.periodic.run_once, PERIODIC_NAME)
    portal.call(first.store.close)  # dies: its lease is not given back
    assert len(_reruns_of(client, failed[1])) == 1  # rerun, not recorded

    later = ManualClock()
    later.advance(settings.lease_seconds + 1)
    second = Reflow.open(settings, later)
    try:
        for _ in range(10):
            portal.call(second.periodic.run_once, PERIODIC_NAME)
        shown = client.get(f"/reruns/{job.id}").json()
    finally:
        portal.call(second.close)
    assert (shown["status"], shown["done"]) == ("done", 3)
    for result in shown["results"]:
        assert _reruns_of(client, result["executionId"]) == [result["newExecutionId"]]


def test_a_stopped_runner_gives_its_job_back_and_another_process_finishes_it(
    client: TestClient, failed_runs: tuple[str, str, list[str]], settings: Settings,
) -> None:
    workflow_id, _, failed = failed_runs
    portal = client.portal
    assert portal is not None
    first = Reflow.open(settings, ManualClock())
    team = portal.call(first.keys.team, None)
    job = portal.call(first.reruns.create, team, {"workflowId": workflow_id, "since": "1h"})
    portal.call(first.periodic.run_once, PERIODIC_NAME)
    portal.call(first.close)  # graceful: the lease is released
    second = Reflow.open(settings, ManualClock())
    try:
        for _ in range(5):
            portal.call(second.periodic.run_once, PERIODIC_NAME)
    finally:
        portal.call(second.close)
    shown = client.get(f"/reruns/{job.id}").json()
    assert (shown["status"], shown["done"]) == ("done", 3)
    assert sum(len(_reruns_of(client, e)) for e in failed) == 3
