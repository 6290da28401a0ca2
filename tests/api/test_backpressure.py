"""Runs started beyond the worker's concurrency are committed as queued, then run."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from reflow.settings import Settings
from support import SlowTarget, execution_log


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """One execution at a time, and the slow local server reachable."""
    return make_settings(http_allow_networks="127.0.0.0/8", worker_concurrency=1)


def test_runs_past_the_concurrency_are_queued_then_all_run_to_the_end(
    client: TestClient, installed: Callable[..., tuple[str, str]], slow_target: SlowTarget
) -> None:
    workflow_id, user_id = installed(slow_target.workflow())
    body = {"workflowId": workflow_id, "userId": user_id, "data": {}}
    ids = [client.post("/run/workflow", json=body).json()["executionId"] for _ in range(3)]
    statuses = [execution_log(client, i)["status"] for i in ids]
    assert statuses == ["running", "queued", "queued"]

    slow_target.release.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logs = [execution_log(client, i) for i in ids]
        if all(log["finished"] for log in logs):
            break
        time.sleep(0.05)
    assert [log["status"] for log in logs] == ["succeeded"] * 3
    assert all(log["output"] == {"slow": "done"} for log in logs)
