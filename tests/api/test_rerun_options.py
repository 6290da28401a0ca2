"""Rerun beyond the reference: from a block, on another version, with edited data,
waiting for the result, and with an Idempotency-Key."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

# `check` fails unless trigger.data.ok; `prep` shows whether it ran again or was reused.
CHECKED: dict[str, Any] = {
    "name": "Checked order",
    "trigger": {"type": "api"},
    "blocks": [
        {"id": "prep", "type": "transform", "with": {"value": "{{ trigger.data.n * 2 }}"}},
        {"id": "check", "type": "transform",
         "with": {"value": "{{ trigger.data.ok ? 'fine' : $error('order is not ok') }}"}},
        {"id": "done", "type": "respond",
         "with": {"body": {"prep": "{{ prep }}", "check": "{{ check }}"}}},
    ],
}


def _run(client: TestClient, workflow_id: str, user_id: str, data: dict[str, Any]) -> Any:
    response = client.post("/run/workflow?wait=5",
                           json={"workflowId": workflow_id, "userId": user_id, "data": data})
    assert response.status_code == 200, response.text
    return response.json()


def _execution(client: TestClient, execution_id: str) -> Any:
    deadline = time.monotonic() + 5
    while True:
        data = client.get(f"/logs/{execution_id}").json()["data"]
        if data["finished"] or time.monotonic() > deadline:
            return data
        time.sleep(0.02)


@pytest.fixture
def failed(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> tuple[str, str, str]:
    """A Checked order execution that failed at `check`: (workflowId, userId, executionId)."""
    workflow_id, user_id = installed(CHECKED)
    result = _run(client, workflow_id, user_id, {"n": 1, "ok": False})
    assert result["status"] == "failed"
    return workflow_id, user_id, result["executionId"]


def test_rerun_from_failed_reuses_the_steps_before_the_failed_block(
    client: TestClient, failed: tuple[str, str, str]
) -> None:
    workflow_id, _, source = failed
    response = client.post(f"/workflows/{workflow_id}/rerun/{source}",
                           json={"from": "failed", "data": {"n": 50, "ok": True}, "wait": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded"
    # prep was copied from the source (n = 1), check ran on the edited data.
    assert body["output"] == {"prep": 2, "check": "fine"}
    steps = _execution(client, body["executionId"])["steps"]
    assert [(s["blockId"], s["reused"]) for s in steps] == [
        ("prep", True), ("check", False), ("done", False)]
    assert [s["seq"] for s in steps] == [0, 1, 2]


def test_rerun_from_a_block_id_reuses_what_ran_before_it(
    client: TestClient, failed: tuple[str, str, str]
) -> None:
    workflow_id, _, source = failed
    response = client.post(f"/workflows/{workflow_id}/rerun/{source}",
                           json={"from": "check", "data": {"n": 7, "ok": True}, "wait": 5})
    assert response.json()["output"] == {"prep": 2, "check": "fine"}


def test_rerun_from_start_with_edited_data_runs_every_block_on_the_new_data(
    client: TestClient, failed: tuple[str, str, str]
) -> None:
    workflow_id, _, source = failed
    response = client.post(f"/workflows/{workflow_id}/rerun/{source}",
                           json={"data": {"n": 7, "ok": True}, "wait": 5})
    body = response.json()
    assert body["output"] == {"prep": 14, "check": "fine"}
    detail = _execution(client, body["executionId"])
    assert detail["trigger"] == {"data": {"n": 7, "ok": True}}
    assert detail["rerunOf"] == source and detail["mode"] == "rerun"
    assert not any(s["reused"] for s in detail["steps"])


def test_rerun_with_an_empty_body_is_a_plain_rerun(
    client: TestClient, failed: tuple[str, str, str]
) -> None:
    workflow_id, _, source = failed
    response = client.post(f"/workflows/{workflow_id}/rerun/{source}", json={})
    assert response.status_code == 200
    assert set(response.json()) == {"message", "executionId"}
    detail = _execution(client, response.json()["executionId"])
    assert detail["status"] == "failed" and detail["trigger"] == {"data": {"n": 1, "ok": False}}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"from": "nowhere"}, "has no block 'nowhere'"),
        ({"from": "done"}, "did not run"),
        ({"version": "newest"}, "version"),
        ({"wait": 0}, "wait"),
        ({"data": [1, 2]}, "data"),
        ({"form": "failed"}, "form: unknown field"),
    ],
)
def test_rerun_with_an_invalid_body_answers_422_naming_the_problem(
    client: TestClient, failed: tuple[str, str, str], body: dict[str, Any], needle: str
) -> None:
    workflow_id, _, source = failed
    response = client.post(f"/workflows/{workflow_id}/rerun/{source}", json=body)
    assert response.status_code == 422, response.text
    assert needle in response.json()["message"]


def test_rerun_from_failed_of_a_succeeded_execution_answers_422(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed(CHECKED)
    source = _run(client, workflow_id, user_id, {"n": 1, "ok": True})["executionId"]
    response = client.post(f"/workflows/{workflow_id}/rerun/{source}", json={"from": "failed"})
    assert response.status_code == 422
    assert "has no failed step" in response.json()["message"]


def test_rerun_on_the_latest_version_runs_it_while_original_and_installed_keep_version_1(
    client: TestClient, failed: tuple[str, str, str]
) -> None:
    workflow_id, _, source = failed
    fixed = {**CHECKED, "blocks": [*CHECKED["blocks"][:1],
                                   {"id": "check", "type": "transform", "with": {"value": "ok"}},
                                   CHECKED["blocks"][2]]}
    assert client.put(f"/workflows/{workflow_id}/definition", json=fixed).json()["version"] == 2
    answers = {
        choice: client.post(f"/workflows/{workflow_id}/rerun/{source}",
                            json={"version": choice, "wait": 5}).json()
        for choice in ("original", "installed", "latest")
    }
    versions = {c: _execution(client, a["executionId"])["workflowVersion"]
                for c, a in answers.items()}
    assert versions == {"original": 1, "installed": 1, "latest": 2}
    assert answers["latest"]["status"] == "succeeded"
    assert answers["latest"]["output"] == {"prep": 2, "check": "ok"}
    assert answers["original"]["status"] == "failed"


def test_the_same_idempotency_key_gives_back_the_same_rerun(
    client: TestClient, failed: tuple[str, str, str]
) -> None:
    workflow_id, _, source = failed
    headers = {"Idempotency-Key": "retry-42"}
    first = client.post(f"/workflows/{workflow_id}/rerun/{source}", headers=headers)
    second = client.post(f"/workflows/{workflow_id}/rerun/{source}", headers=headers,
                         json={"wait": 5})
    other = client.post(f"/workflows/{workflow_id}/rerun/{source}",
                        headers={"Idempotency-Key": "retry-43"})
    assert first.status_code == second.status_code == other.status_code == 200
    assert first.json()["executionId"] == second.json()["executionId"]
    assert other.json()["executionId"] != first.json()["executionId"]
    assert second.json()["status"] == "failed"  # waited for the first one's end
    reruns = _execution(client, source)["reruns"]
    assert sorted(reruns) == sorted([first.json()["executionId"], other.json()["executionId"]])


def test_an_idempotency_key_reused_for_another_rerun_answers_422(
    client: TestClient, failed: tuple[str, str, str]
) -> None:
    workflow_id, _, source = failed
    headers = {"Idempotency-Key": "retry-7"}
    first = client.post(f"/workflows/{workflow_id}/rerun/{source}", headers=headers)
    assert first.status_code == 200
    edited = client.post(f"/workflows/{workflow_id}/rerun/{source}", headers=headers,
                         json={"data": {"n": 3, "ok": True}})
    assert edited.status_code == 422
    assert "was used for a different rerun" in edited.json()["message"]
    elsewhere = client.post(f"/workflows/nowhere/rerun/{source}", headers=headers)
    assert elsewhere.status_code == 404  # the request is checked before the key


def test_an_empty_idempotency_key_answers_422(
    client: TestClient, failed: tuple[str, str, str]
) -> None:
    workflow_id, _, source = failed
    response = client.post(f"/workflows/{workflow_id}/rerun/{source}",
                           headers={"Idempotency-Key": ""})
    assert response.status_code == 422
