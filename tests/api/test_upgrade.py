"""Upgrading a user's installation to the latest version (what `serve --demo-user` does)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from reflow.services import Reflow
from support import ORDER_DATA, ORDER_SUMMARY


def _run_version(client: TestClient, workflow_id: str, user_id: str) -> Any:
    response = client.post("/run/workflow?wait=5",
                           json={"workflowId": workflow_id, "userId": user_id,
                                 "data": ORDER_DATA})
    return client.get(f"/logs/{response.json()['executionId']}").json()["data"]["workflowVersion"]


def test_upgrade_moves_the_users_copy_to_the_latest_version_and_runs_use_it(
    client: TestClient, reflow: Reflow, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed()
    changed = {**ORDER_SUMMARY, "description": "version two"}
    assert client.put(f"/workflows/{workflow_id}/definition", json=changed).json()["version"] == 2
    assert _run_version(client, workflow_id, user_id) == 1

    portal = client.portal
    assert portal is not None
    team = portal.call(reflow.keys.first_team)
    assert team is not None
    upgraded = portal.call(reflow.workflows.upgrade, team, user_id, workflow_id)
    assert upgraded.installed_version == 2
    assert _run_version(client, workflow_id, user_id) == 2
    again = portal.call(reflow.workflows.upgrade, team, user_id, workflow_id)
    assert again == upgraded
