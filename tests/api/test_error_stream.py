"""Error streaming (X1): a team's failed executions POSTed, signed, to its URL, from a
durable outbox, retried with backoff, never in an execution's way."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.clock import ManualClock
from reflow.domain.executions import ExecutionRecord, ExecutionStatus, TriggerMode
from reflow.ids import new_execution_id, now_ms
from reflow.services import Reflow
from reflow.settings import Settings
from support import (
    ORDER_DATA,
    ORDER_SUMMARY,
    Receiver,
    free_port,
    receiving,
    serving_reflow,
    wait_finished,
)

FAILING: dict[str, Any] = {
    "name": "Failing order sync",
    "trigger": {"type": "api"},
    "blocks": [
        {"id": "check", "type": "transform", "with": {"value": "{{ trigger.data.orderId }}"}},
        {"id": "boom", "type": "fail",
         "with": {"message": "order {{ trigger.data.orderId }} is invalid"}},
    ],
}
ALLOY_HEADERS = ("x-alloy-workflowid", "x-alloy-userid", "x-alloy-blockname",
                 "x-alloy-blocktype", "x-alloy-executionuuid")


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The local receivers reachable (the outbound guard allows 127.0.0.0/8 here only)."""
    return make_settings(http_allow_networks="127.0.0.0/8", error_stream_timeout=2)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as found:
        yield found


# -- helpers ---------------------------------------------------------------------------------


def verify(secret: str, header: str, body: bytes, now_s: float, tolerance: float = 300) -> bool:
    """docs/api.md's verification, as a receiver writes it."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(now_s - timestamp) <= tolerance


def stream_to(client: TestClient, url: str, **body: Any) -> dict[str, Any]:
    response = client.put("/settings/error-stream", json={"url": url, **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def fail_run(client: TestClient, workflow_id: str, user_id: str, order: int = 7) -> str:
    response = client.post("/run/workflow", params={"wait": 10}, json={
        "workflowId": workflow_id, "userId": user_id, "data": {"orderId": order}})
    assert response.status_code == 200, response.text
    execution_id: str = response.json()["executionId"]
    assert wait_finished(client, execution_id)["status"] == "failed"
    return execution_id


def deliver(client: TestClient, reflow: Reflow) -> int:
    """Run the error stream job once (after any round the background loop is in)."""
    portal = client.portal
    assert portal is not None
    delivered: int = portal.call(reflow.periodic.run_once, "error stream")
    return delivered


def stream_state(client: TestClient, **kwargs: Any) -> dict[str, Any]:
    response = client.get("/settings/error-stream", **kwargs)
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


# -- the setting -----------------------------------------------------------------------------


def test_put_sets_the_url_and_answers_a_new_secret_that_get_shows_again(
    client: TestClient, receiver: Receiver
) -> None:
    assert stream_state(client)["url"] is None
    answer = stream_to(client, receiver.url)
    assert answer["url"] == receiver.url
    assert answer["secret"].startswith("rfes_") and len(answer["secret"]) > 40
    assert answer["signatureHeader"] == "X-Reflow-Signature"
    assert stream_state(client) == answer
    assert {k: answer[k] for k in ("pending", "delivered", "dead", "lastDeliveredAt",
                                   "lastFailure")} == {
        "pending": 0, "delivered": 0, "dead": 0, "lastDeliveredAt": None, "lastFailure": None}


def test_a_new_url_keeps_the_secret_and_rotate_secret_replaces_it(client: TestClient) -> None:
    first = stream_to(client, "https://errors.example.com/a")
    moved = stream_to(client, "https://errors.example.com/b")
    rotated = stream_to(client, "https://errors.example.com/b", rotateSecret=True)
    assert moved["secret"] == first["secret"] and moved["url"].endswith("/b")
    assert rotated["secret"] != first["secret"]
    assert stream_state(client)["secret"] == rotated["secret"]


def test_the_secret_is_stored_sealed_not_in_the_clear(client: TestClient, reflow: Reflow) -> None:
    secret = stream_to(client, "https://errors.example.com/x")["secret"]
    portal = client.portal
    assert portal is not None
    team = portal.call(reflow.keys.team, None)
    stored = portal.call(reflow.store.get_error_stream, team.id)
    assert stored is not None and stored.sealed_secret is not None
    assert secret not in stored.sealed_secret


def test_delete_stops_the_stream_and_a_later_put_makes_a_new_secret(client: TestClient) -> None:
    first = stream_to(client, "https://errors.example.com/x")
    response = client.delete("/settings/error-stream")
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Success"}
    assert stream_state(client)["url"] is None and stream_state(client)["secret"] is None
    assert client.delete("/settings/error-stream").status_code == 200  # none: still 200
    assert stream_to(client, "https://errors.example.com/x")["secret"] != first["secret"]


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"url": "ftp://errors.example.com/x"}, "url: must start with http:// or https://"),
    ({"url": "errors.example.com/x"}, "url: must start with http:// or https://"),
    ({"url": ""}, "url: must not be empty"),
    ({"url": "https://"}, "url: "),
    ({"url": "https://ops:pw@errors.example.com/x"}, "url: must not carry a user name"),
    ({"url": "https://errors.example.com/a b"}, "url: must not contain spaces"),
    ({"url": "https://errors.example.com/x#top"}, "url: must not have a #fragment"),
    ({"url": "http://10.1.2.3/x"}, "url: 10.1.2.3 is a private address"),
    ({"url": "http://169.254.169.254/latest"}, "url: 169.254.169.254 is a"),
    ({"url": "https://x.example.com/" + "a" * 2100}, "url: longer than 2048 characters"),
    ({"url": "https://x.example.com:99999/"}, "url: port 99999 is not between 1 and 65535"),
    ({"url": "https://xn--/"}, "url: not a valid URL"),
    ({}, "url: Field required"),
    ({"url": 5}, "url: "),
    ({"url": "https://errors.example.com", "rotateSecret": "often"}, "rotateSecret: "),
    ({"url": "https://errors.example.com", "events": ["all"]}, "events: unknown field"),
]


def test_put_refuses_a_bad_url_or_body_with_a_422_naming_it_and_changes_nothing(
    client: TestClient,
) -> None:
    before = stream_to(client, "https://errors.example.com/kept")
    for body, says in BAD_BODIES:
        response = client.put("/settings/error-stream", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["message"].startswith(says), (body, response.json())
    assert stream_state(client) == before


def test_the_settings_routes_answer_in_the_path_versioned_forms(client: TestClient) -> None:
    for version in ("2023-12", "2024-03", "2025-09"):
        url = f"https://errors.example.com/{version}"
        response = client.put(f"/{version}/settings/error-stream", json={"url": url},
                              headers={"x-api-version": ""})
        assert response.status_code == 200, response.text
        assert client.get(f"/{version}/settings/error-stream").json()["url"] == url
    assert client.delete("/2024-03/settings/error-stream").status_code == 200
    assert stream_state(client)["url"] is None


def test_the_settings_routes_need_a_key(client: TestClient) -> None:
    response = client.get("/settings/error-stream", headers={"authorization": ""})
    assert response.status_code == 401


# -- delivery --------------------------------------------------------------------------------


def test_a_failed_run_is_posted_once_with_the_alloy_headers_a_body_and_a_valid_signature(
    client: TestClient, reflow: Reflow, clock: ManualClock, receiver: Receiver,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(FAILING)
    secret = stream_to(client, receiver.url)["secret"]
    execution_id = fail_run(client, workflow_id, user_id)
    deliver(client, reflow)
    deliver(client, reflow)  # nothing left: still one POST

    assert len(receiver.received) == 1
    post = receiver.received[0]
    assert {h: post.headers[h] for h in ALLOY_HEADERS} == {
        "x-alloy-workflowid": workflow_id, "x-alloy-userid": user_id,
        "x-alloy-blockname": "boom", "x-alloy-blocktype": "fail",
        "x-alloy-executionuuid": execution_id}
    assert post.headers["content-type"] == "application/json"
    assert post.headers["x-reflow-attempt"] == "1"
    assert verify(secret, post.headers["x-reflow-signature"], post.body,
                  clock.now_ms() / 1000)
    assert not verify(secret, post.headers["x-reflow-signature"], post.body + b" ",
                      clock.now_ms() / 1000)
    body = post.json
    assert body == {
        "event": "execution.failed", "executionId": execution_id,
        "executionUuid": execution_id, "workflowId": workflow_id,
        "workflowName": "Failing order sync", "installationId": body["installationId"],
        "workflowVersion": 1, "userId": user_id, "blockName": "boom", "blockType": "fail",
        "error": {"message": "order 7 is invalid", "blockId": "boom"}, "mode": "api",
        "startedAt": body["startedAt"], "stoppedAt": body["stoppedAt"],
    }
    assert body["startedAt"] <= body["stoppedAt"] and body["stoppedAt"].endswith("Z")
    state = stream_state(client)
    assert (state["pending"], state["delivered"], state["dead"]) == (0, 1, 0)
    assert state["lastDeliveredAt"] is not None


def test_a_failure_wakes_delivery_at_once_without_waiting_for_the_interval(
    client: TestClient, receiver: Receiver, installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(FAILING)
    stream_to(client, receiver.url)
    fail_run(client, workflow_id, user_id)
    # The test clock stands still, so only the wake can have started this POST.
    assert receiver.arrived.wait(10)


def test_secret_values_of_the_trigger_never_reach_the_stream(
    client: TestClient, reflow: Reflow, receiver: Receiver,
    installed: Callable[..., tuple[str, str]],
) -> None:
    leaky = {**FAILING, "name": "Leaky", "blocks": [
        {"id": "boom", "type": "fail", "with": {
            "message": "login with {{ trigger.data.apiToken }} failed"}}]}
    workflow_id, user_id = installed(leaky)
    stream_to(client, receiver.url)
    response = client.post("/run/workflow", params={"wait": 10}, json={
        "workflowId": workflow_id, "userId": user_id,
        "data": {"apiToken": "tok-very-secret-123"}})
    assert response.status_code == 200, response.text
    deliver(client, reflow)
    assert len(receiver.received) == 1
    post = receiver.received[0]
    assert b"tok-very-secret-123" not in post.body
    assert "tok-very-secret-123" not in str(post.headers)
    assert post.json["error"]["message"] == "login with [redacted] failed"


def test_succeeded_runs_and_runs_before_the_stream_was_set_are_not_posted(
    client: TestClient, reflow: Reflow, receiver: Receiver,
    installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str],
) -> None:
    workflow_id, user_id = installed(FAILING)
    fail_run(client, workflow_id, user_id)  # no stream yet: no notification is written
    stream_to(client, receiver.url)
    ok_workflow, ok_user = installed(ORDER_SUMMARY)
    run_finished(ok_workflow, ok_user, ORDER_DATA)
    assert deliver(client, reflow) == 0
    assert receiver.received == []
    state = stream_state(client)
    assert (state["pending"], state["delivered"], state["dead"]) == (0, 0, 0)


def test_a_receiver_that_is_down_loses_nothing_and_gets_it_after_the_backoff(
    client: TestClient, reflow: Reflow, clock: ManualClock, receiver: Receiver,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(FAILING)
    stream_to(client, receiver.url)
    receiver.status = 503
    execution_id = fail_run(client, workflow_id, user_id)
    deliver(client, reflow)
    assert len(receiver.received) == 1
    state = stream_state(client)
    assert (state["pending"], state["delivered"]) == (1, 0)
    assert state["lastFailure"]["executionId"] == execution_id
    assert state["lastFailure"]["error"] == "attempt 1: answered HTTP 503"

    receiver.status = 200
    deliver(client, reflow)  # not due yet: the first retry is 30 s later
    assert len(receiver.received) == 1
    clock.advance(31)
    # Moving the clock also wakes the app's own loop, which may deliver first: count
    # what arrived, not what this round did.
    deliver(client, reflow)
    assert len(receiver.received) == 2
    assert receiver.received[1].headers["x-reflow-attempt"] == "2"
    assert receiver.received[1].json == receiver.received[0].json
    state = stream_state(client)
    assert (state["pending"], state["delivered"], state["lastFailure"]) == (0, 1, None)


def test_while_a_receiver_is_down_its_teams_later_failures_wait_for_the_same_retry(
    client: TestClient, reflow: Reflow, clock: ManualClock, receiver: Receiver,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(FAILING)
    stream_to(client, receiver.url)
    receiver.status = 503
    fail_run(client, workflow_id, user_id, order=1)
    deliver(client, reflow)
    fail_run(client, workflow_id, user_id, order=2)
    deliver(client, reflow)
    assert len(receiver.received) == 1  # the second waits for the first's retry time
    receiver.status = 200
    clock.advance(31)
    deliver(client, reflow)  # or the app's loop, woken by the clock, did (as above)
    assert len(receiver.received) == 3
    messages = sorted(r.json["error"]["message"] for r in receiver.received[1:])
    assert messages == ["order 1 is invalid", "order 2 is invalid"]


def test_a_notification_is_given_up_after_the_maximum_age_and_shown_dead(
    make_settings: Callable[..., Settings], clock: ManualClock,
) -> None:
    settings = make_settings(http_allow_networks="127.0.0.0/8", error_stream_max_age="2m")
    with receiving() as receiver, serving_reflow(settings, clock) as (reflow, client):
        workflow_id, user_id = install(client, FAILING)
        stream_to(client, receiver.url)
        receiver.status = 500
        fail_run(client, workflow_id, user_id)
        deliver(client, reflow)  # attempt 1; retry in 30 s
        clock.advance(31)
        deliver(client, reflow)  # attempt 2; retry in 60 s
        clock.advance(61)
        deliver(client, reflow)  # attempt 3; a retry in 120 s would pass 2 minutes: dead
        clock.advance(3600)
        deliver(client, reflow)
        assert [r.headers["x-reflow-attempt"] for r in receiver.received] == ["1", "2", "3"]
        state = stream_state(client)
        assert (state["pending"], state["delivered"], state["dead"]) == (0, 0, 1)
        assert state["lastFailure"]["error"] == "attempt 3: answered HTTP 500"


def test_delivered_notifications_are_purged_after_the_log_retention(
    client: TestClient, reflow: Reflow, clock: ManualClock, receiver: Receiver,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(FAILING)
    stream_to(client, receiver.url)
    fail_run(client, workflow_id, user_id)
    deliver(client, reflow)
    assert stream_state(client)["delivered"] == 1
    clock.advance(8 * 24 * 3600)
    deliver(client, reflow)
    assert stream_state(client)["delivered"] == 0


def test_a_receiver_that_hangs_does_not_delay_runs(
    client: TestClient, reflow: Reflow, receiver: Receiver,
    installed: Callable[..., tuple[str, str]], run_finished: Callable[..., str],
) -> None:
    workflow_id, user_id = installed(FAILING)
    ok_workflow, ok_user = installed(ORDER_SUMMARY)
    stream_to(client, receiver.url)
    receiver.hang = True
    fail_run(client, workflow_id, user_id)
    assert receiver.arrived.wait(10)  # the POST is in flight, and stays there
    started = time.monotonic()
    for order in range(10):
        fail_run(client, workflow_id, user_id, order=order)
        run_finished(ok_workflow, ok_user, ORDER_DATA)
    elapsed = time.monotonic() - started
    # 20 runs to their end while the receiver holds its answer (for up to 10 s).
    assert elapsed < 5, elapsed
    assert not receiver.release.is_set()
    receiver.release.set()


def test_another_teams_stream_and_failures_stay_its_own(
    client: TestClient, reflow: Reflow, receiver: Receiver,
    installed: Callable[..., tuple[str, str]], other_team_headers: dict[str, str],
) -> None:
    a_stream = stream_to(client, receiver.url)
    b_state = stream_state(client, headers=other_team_headers)
    assert b_state["url"] is None and b_state["secret"] is None
    with receiving() as b_receiver:
        b = client.put("/settings/error-stream", json={"url": b_receiver.url},
                       headers=other_team_headers)
        assert b.status_code == 200, b.text
        assert b.json()["secret"] != a_stream["secret"]
        assert stream_state(client) == a_stream
        # B's failing run goes to B's receiver only.
        b_workflow = client.post("/workflows", json=FAILING, headers=other_team_headers)
        b_user = client.post("/users", json={"username": "b@example.com"},
                             headers=other_team_headers)
        b_workflow_id, b_user_id = b_workflow.json()["workflowId"], b_user.json()["userId"]
        activated = client.put("/workflows/activate", headers=other_team_headers,
                               json={"userId": b_user_id, "workflowId": b_workflow_id})
        assert activated.status_code == 200, activated.text
        run = client.post("/run/workflow", params={"wait": 10}, headers=other_team_headers,
                          json={"workflowId": b_workflow_id, "userId": b_user_id,
                                "data": {"orderId": 9}})
        assert run.status_code == 200, run.text
        deliver(client, reflow)
        assert receiver.received == []
        assert [r.headers["x-alloy-executionuuid"] for r in b_receiver.received] == [
            run.json()["executionId"]]
        assert verify(b.json()["secret"], b_receiver.received[0].headers["x-reflow-signature"],
                      b_receiver.received[0].body, time.time())
        # B clearing its stream leaves A's.
        assert client.delete("/settings/error-stream",
                             headers=other_team_headers).status_code == 200
        assert stream_state(client) == a_stream


def test_an_execution_failed_by_the_resume_limit_is_posted_too(
    client: TestClient, reflow: Reflow, receiver: Receiver,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(FAILING)
    stream_to(client, receiver.url)
    portal = client.portal
    assert portal is not None
    team = portal.call(reflow.keys.team, None)
    installation = portal.call(reflow.store.get_installation, team.id, workflow_id, user_id)
    assert installation is not None
    # Abandoned by a dead process as often as allowed: the next claim fails it.
    record = ExecutionRecord(
        id=new_execution_id(), team_id=team.id, workflow_id=workflow_id,
        installation_id=installation.id, user_id=user_id, version=1, mode=TriggerMode.API,
        trigger=b'{"data": {"orderId": 1}}', status=ExecutionStatus.RUNNING,
        created_at=now_ms(), started_at=now_ms(), lease_owner="gone:1:x", lease_expires=1,
        resumes=reflow.settings.max_resumes)
    portal.call(reflow.store.insert_execution, record)
    portal.call(reflow.worker.wake)
    assert wait_finished(client, record.id)["status"] == "failed"
    deliver(client, reflow)
    assert len(receiver.received) == 1
    post = receiver.received[0]
    assert post.headers["x-alloy-executionuuid"] == record.id
    assert post.headers["x-alloy-blockname"] == "" and post.json["blockName"] is None
    assert "it is not resumed again" in post.json["error"]["message"]


# -- restart ---------------------------------------------------------------------------------


def install(client: TestClient, definition: dict[str, Any]) -> tuple[str, str]:
    workflow = client.post("/workflows", json=definition)
    user = client.post("/users", json={"username": f"u{time.monotonic_ns()}@example.com"})
    workflow_id, user_id = workflow.json()["workflowId"], user.json()["userId"]
    activated = client.put("/workflows/activate",
                           json={"userId": user_id, "workflowId": workflow_id})
    assert activated.status_code == 200, activated.text
    return workflow_id, user_id


def test_a_restart_loses_no_notification(
    make_settings: Callable[..., Settings], clock: ManualClock,
) -> None:
    settings = make_settings(http_allow_networks="127.0.0.0/8", error_stream_timeout=2)
    port = free_port()  # nothing listens there yet: the receiver is down
    url = f"http://127.0.0.1:{port}/errors"
    with serving_reflow(settings, clock) as (reflow, client):
        workflow_id, user_id = install(client, FAILING)
        secret = stream_to(client, url)["secret"]
        execution_id = fail_run(client, workflow_id, user_id)
        deliver(client, reflow)
        assert stream_state(client)["lastFailure"]["error"].startswith(
            "attempt 1: connection failed")
    # A new process on the same database, once the receiver is back.
    with receiving(port) as receiver, serving_reflow(settings, clock) as (reflow, client):
        clock.advance(31)
        deliver(client, reflow)  # or the app's loop, woken by the clock, did
        assert [r.headers["x-alloy-executionuuid"] for r in receiver.received] == [execution_id]
        assert verify(secret, receiver.received[0].headers["x-reflow-signature"],
                      receiver.received[0].body, clock.now_ms() / 1000)
