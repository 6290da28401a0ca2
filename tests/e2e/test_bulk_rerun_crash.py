"""A real `reflow serve` killed with SIGKILL while a bulk rerun job is part way, restarted:
the job continues at once and ends with every execution rerun exactly once (docs/api.md
"Bulk rerun", "Restarts")."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import SERVE_HEADERS, CallCounter, SqliteServe, wait_all_finished

pytestmark = pytest.mark.e2e

FAILED = 60
RATE = 20  # reruns/s: the job takes about three seconds, so the kill lands part way


def _workflow(path: Path, target: str) -> None:
    """Each execution calls the target once (its own Idempotency-Key), then fails."""
    path.write_text(json.dumps({
        "name": "Flaky sync",
        "trigger": {"type": "api"},
        "blocks": [
            {"id": "call", "type": "http", "with": {
                "method": "POST", "url": f"{target}/sync", "json": {"n": "{{ trigger.data.n }}"}}},
            {"id": "check", "type": "transform",
             "with": {"value": "{{ $error('upstream down') }}"}},
        ],
    }))


def _job(base: str, job_id: str) -> Any:
    response = httpx.get(f"{base}/reruns/{job_id}", headers=SERVE_HEADERS, params={"limit": 1000})
    assert response.status_code == 200, response.text
    return response.json()


def _wait_job(base: str, job_id: str, done: int, timeout: float) -> Any:
    """The job once ``done`` items are recorded (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        job = _job(base, job_id)
        if job["done"] + job["failed"] >= done:
            return job
        counts = {k: job[k] for k in ("status", "done", "failed", "pending")}
        assert time.monotonic() < deadline, f"the job did not reach {done}: {counts}"
        time.sleep(0.05)


def test_a_bulk_job_killed_part_way_resumes_and_reruns_each_execution_once(
    tmp_path: Path, target: str, counter: CallCounter,
) -> None:
    workflow = tmp_path / "flaky.json"
    _workflow(workflow, target)
    serve = SqliteServe(tmp_path, ["--apply", str(workflow), "--demo-user", "sync@example.com"],
                        {"REFLOW_RERUN_RATE": str(RATE)})
    serve.start()
    base = serve.base
    failed = []
    for n in range(FAILED):
        response = httpx.post(f"{base}/run/workflow?wait=10", headers=SERVE_HEADERS, json={
            "workflowName": "Flaky sync", "userId": "sync@example.com", "data": {"n": n}})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "failed", response.text
        failed.append(response.json()["executionId"])
    first = httpx.get(f"{base}/logs/{failed[0]}", headers=SERVE_HEADERS).json()["data"]
    created = httpx.post(f"{base}/reruns", headers=SERVE_HEADERS, json={
        "filter": {"workflowId": first["workflowId"], "status": "failed", "since": "1h"}})
    assert created.status_code == 200, created.text
    job_id = created.json()["jobId"]
    assert created.json()["total"] == FAILED

    part_way = _wait_job(base, job_id, FAILED // 6, timeout=30)
    serve.kill()
    assert part_way["done"] < FAILED, "the job ended before the kill: raise FAILED"

    serve.start()
    try:
        # The new process takes the dead one's job at once (no lease to wait out).
        job = _wait_job(base, job_id, FAILED, timeout=20)
        reruns = [r["newExecutionId"] for r in job["results"]]
        wait_all_finished(base, SERVE_HEADERS, reruns, timeout=30)
        sources = {s: httpx.get(f"{base}/logs/{s}", headers=SERVE_HEADERS).json()["data"]
                   for s in failed}
    finally:
        serve.stop()
    assert (job["status"], job["done"], job["failed"], job["pending"]) == ("done", FAILED, 0, 0)
    assert {r["executionId"] for r in job["results"]} == set(failed)
    assert len(set(reruns)) == FAILED
    for source, detail in sources.items():
        shown = next(r["newExecutionId"] for r in job["results"] if r["executionId"] == source)
        assert detail["reruns"] == [shown], f"{source} was rerun {len(detail['reruns'])} times"
    # Every original and every rerun called the target, each under its own key: no third
    # execution of any source ever ran. A rerun whose call was in flight at the kill may
    # send it again when it resumes (the same key), nothing else repeats.
    calls = counter.snapshot()
    assert len(calls) == 2 * FAILED
    assert sum(n - 1 for n in calls.values()) <= RATE
