"""The execution's output is stored redacted and capped; a waiting caller gets it whole."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from reflow.settings import Settings
from support import execution_log

SECRETIVE = {
    "name": "Login",
    "trigger": {"type": "api"},
    "blocks": [
        {"id": "done", "type": "respond", "with": {"body": {
            "user": "{{ trigger.data.user }}", "password": "{{ trigger.data.password }}",
            "padding": "{{ $pad('', 3000, 'x') }}",
        }}},
    ],
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """A small output cap so the capping shows."""
    return make_settings(step_output_cap=2048)


def test_stored_output_is_redacted_and_capped_while_the_waiting_caller_gets_it_whole(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed(SECRETIVE)
    response = client.post("/run/workflow?wait=5", json={
        "workflowId": workflow_id, "userId": user_id,
        "data": {"user": "ann", "password": "hunter22"},
    })
    answered = response.json()["output"]
    assert answered["password"] == "hunter22" and len(answered["padding"]) == 3000
    stored = execution_log(client, response.json()["executionId"])
    # The trigger is kept whole (a rerun replays it); what blocks made is redacted.
    assert "hunter22" not in str([stored["output"], stored["steps"], stored["results"]])
    assert stored["output"]["truncated"] is True
