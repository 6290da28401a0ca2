"""Fixtures the API tests share: the backend, finished runs, a second team, a slow server.

Every API test runs on both backends (``database_backend``): SQLite, and PostgreSQL when
REFLOW_TEST_POSTGRES_URL names a server. A test that reads the SQLite file past reflow is
marked ``sqlite_only`` and runs on SQLite alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.services import Reflow
from support import ORDER_DATA, SlowTarget, json_handler, serving


@pytest.fixture(params=["sqlite", "postgres"])
def database_backend(request: pytest.FixtureRequest) -> str:
    """Both backends, for every API test."""
    backend: str = request.param
    return backend


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Drop the PostgreSQL variant of tests marked ``sqlite_only``."""
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        on_postgres = params is not None and params.params.get("database_backend") == "postgres"
        (dropped if on_postgres and item.get_closest_marker("sqlite_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


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
