"""Fixtures the API tests share: finished runs, a second team, and a slow local server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.services import Reflow
from support import ORDER_DATA, SlowTarget, json_handler, serving


@pytest.fixture
def run_finished(client: TestClient) -> Callable[..., str]:
    """Run a workflow for a user (``ORDER_DATA`` by default) to its end; its executionId."""

    def run(workflow_id: str, user_id: str, data: dict[str, Any] | None = None) -> str:
        response = client.post("/run/workflow", params={"wait": 10}, json={
            "workflowId": workflow_id, "userId": user_id,
            "data": ORDER_DATA if data is None else data,
        })
        assert response.status_code == 200, response.text
        # Ids order by the millisecond they were minted: keep each run in its own.
        time.sleep(0.002)
        execution_id: str = response.json()["executionId"]
        return execution_id

    return run


@pytest.fixture
def other_team_headers(client: TestClient, reflow: Reflow) -> dict[str, str]:
    """Authorization for a second team with its own key."""
    portal = client.portal
    assert portal is not None
    team = portal.call(reflow.keys.create_team, "other team")
    created = portal.call(reflow.keys.create_key, team, "other key")
    return {"authorization": f"bearer {created.raw}"}


@pytest.fixture
def slow_target(client: TestClient) -> Iterator[SlowTarget]:
    """A slow local server; released before ``client`` closes (it depends on it for that).

    The http block reaches it only where the module's settings allow 127.0.0.0/8.
    """
    release = threading.Event()
    handler = json_handler(lambda _: release.wait(10), body=b'{"slow": "done"}')
    with serving(handler) as base:
        try:
            yield SlowTarget(f"{base}/slow", release)
        finally:
            release.set()
