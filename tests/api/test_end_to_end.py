"""A SaaS team's backend, through the HTTP API only (plus the test clock): batch-create
users, list integrations, activate, fire an event, let a schedule fire, call a webhook URL
(valid and invalid signature, a duplicate delivery), search the logs, fix and rerun a
failure, receive the streamed error, and delete a user's logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from reflow.clock import ManualClock
from reflow.settings import Settings
from support import Receiver, receiving, wait_finished

PUBLIC_URL = "https://hooks.example.test"
SHOP_SECRET = "shop-signing-secret-0123"
INTEGRATION = {"kind": "integration", "name": "Shop", "app": "Shop",
               "description": "Orders from the shop",
               "icon": "https://cdn.example.test/shop.png"}


def workflow(name: str, trigger: dict[str, Any], *blocks: dict[str, Any]) -> dict[str, Any]:
    """A definition of the Shop integration."""
    return {"name": name, "integration": "Shop", "trigger": trigger, "blocks": list(blocks)}


def echo(block_id: str = "done") -> dict[str, Any]:
    return {"id": block_id, "type": "respond", "with": {"body": "{{ trigger.data }}"}}


ON_PAID = workflow("Paid order", {"type": "event", "event": "order.paid"}, echo())
NIGHTLY = workflow("Every minute", {"type": "schedule", "cron": "* * * * *"}, echo())
HOOK = workflow("Shop webhook", {
    "type": "webhook",
    "verify": {"header": "X-Shop-Signature", "secret": "shopSecret", "prefix": "sha256="},
    "dedupe": {"header": "X-Shop-Delivery"},
}, echo())
FAILING = workflow("Sync order", {"type": "api"},
                   {"id": "check", "type": "transform", "with": {"value": "{{ trigger.data }}"}},
                   {"id": "push", "type": "fail", "with": {"message": "order rejected"}})
FIXED = workflow("Sync order", {"type": "api"},
                 {"id": "check", "type": "transform", "with": {"value": "{{ trigger.data }}"}},
                 {"id": "push", "type": "respond", "with": {"body": {"pushed": True}}})


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Webhook URLs under a public address; the local error receiver reachable."""
    return make_settings(public_url=PUBLIC_URL + "/", http_allow_networks="127.0.0.0/8")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as found:
        yield found


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll the API until ``condition`` gives something true (the app's loops run it)."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{what}: not seen in {timeout:g} s"
        time.sleep(0.01)
    return found


def logs(client: TestClient, *filters: tuple[str, str, str], **params: Any) -> Any:
    """GET /logs with the reference's filters JSON."""
    encoded = json.dumps([{"columns": {"value": c}, "operators": {"value": o},
                           "userinput": {"value": v}, "condition": {"value": "and"}}
                          for c, o, v in filters])
    return ok(client.get("/logs", params={"filters": encoded, **params}))


def signed_call(client: TestClient, url: str, body: bytes, delivery: str,
                secret: str = SHOP_SECRET) -> Any:
    """POST to a webhook URL as the shop does: signed, no API key."""
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = client.build_request(
        "POST", urlsplit(url).path, content=body,
        headers={"content-type": "application/json", "x-shop-delivery": delivery,
                 "x-shop-signature": f"sha256={signature}"})
    del request.headers["authorization"], request.headers["x-api-version"]
    return client.send(request)


def test_a_backend_drives_every_trigger_and_the_logs_through_the_api_alone(
    client: TestClient, clock: ManualClock, receiver: Receiver,
) -> None:
    # Setup: the team's env holds the webhook secret; errors stream to the receiver.
    ok(client.put("/env", json={"env": {"shopSecret": SHOP_SECRET}}))
    stream = ok(client.put("/settings/error-stream", json={"url": receiver.url}))
    ok(client.post("/integrations", json=INTEGRATION))
    ids = {d["name"]: ok(client.post("/workflows", json=d))["workflowId"]
           for d in (ON_PAID, NIGHTLY, HOOK, FAILING)}

    # Users, all or none.
    users = ok(client.post("/users/batch", json={"users": [
        {"username": "jane@example.com", "fullName": "Jane"},
        {"username": "omar@example.com", "fullName": "Omar"}]}))["data"]
    jane, omar = (u["userId"] for u in users)

    # The integration lists every workflow, none installed yet; then Jane installs them.
    [shop] = ok(client.get("/integrations", params={"userId": jane}))["data"]
    assert (shop["name"], shop["installed"]) == ("Shop", False)
    assert sorted(w["name"] for w in shop["workflows"]) == sorted(ids)
    for workflow_id in ids.values():
        assert ok(client.put("/workflows/activate",
                             json={"userId": jane, "workflowId": workflow_id}))["activated"]
    shop = ok(client.get(f"/integrations/{shop['integrationId']}", params={"userId": jane}))
    assert all(w["installed"] and w["active"] for w in shop["data"]["workflows"])
    [grouped] = ok(client.get("/installations"))["data"]
    assert (grouped["userId"], sorted(grouped["workflowIds"])) == (jane, sorted(ids.values()))

    # An event starts Jane's subscribed copy; Omar has none.
    fired = ok(client.post("/run/event", json={"event": "order.paid", "userId": jane,
                                               "data": {"orderId": 1}}))
    [paid] = fired["executionIds"]
    assert wait_finished(client, paid)["output"] == {"orderId": 1}
    assert ok(client.post("/run/event", json={"event": "order.paid", "userId": omar,
                                              "data": {}}))["executionIds"] == []

    # The schedule fires when the clock passes the next minute.
    clock.advance(61)
    scheduled = until(lambda: logs(client, workflowId=ids["Every minute"])["data"],
                      "the scheduled execution")
    assert wait_finished(client, scheduled[0]["data"]["executionId"])["status"] == "succeeded"

    # The webhook: a signed delivery runs once, its retry is a duplicate, a forgery is 401.
    hook = ok(client.get(f"/workflows/{ids['Shop webhook']}", params={"userId": jane}))
    url = hook["data"]["webhookUrl"]
    assert url.startswith(f"{PUBLIC_URL}/webhooks/")
    body = b'{"orderId": 2}'
    first = ok(signed_call(client, url, body, "delivery-1"))
    again = ok(signed_call(client, url, body, "delivery-1"))
    assert (again["executionId"], again.get("duplicate")) == (first["executionId"], True)
    assert signed_call(client, url, body, "delivery-2", secret="forged").status_code == 401
    assert wait_finished(client, first["executionId"])["output"] == {"orderId": 2}

    # A failure: in the logs search, and streamed, signed, with the X-Alloy headers.
    failed = ok(client.post("/run/workflow", params={"wait": 10}, json={
        "workflowId": ids["Sync order"], "userId": jane, "data": {"orderId": 3}}))
    failed_id = failed["executionId"]
    assert wait_finished(client, failed_id)["status"] == "failed"
    found = logs(client, ("message", "equals", "executionError"),
                 ("forgeWorkflowId", "equals", ids["Sync order"]), associatedUserId=jane)
    assert [n["data"]["executionId"] for n in found["notifications"]] == [failed_id]
    assert found["pagination"]["totalItems"] == 1
    until(lambda: receiver.received, "the streamed error")
    [streamed] = receiver.received
    assert streamed.headers["x-alloy-executionuuid"] == failed_id
    assert streamed.headers["x-alloy-workflowid"] == ids["Sync order"]
    assert streamed.headers["x-alloy-userid"] == jane
    assert streamed.headers["x-alloy-blockname"] == "push"
    timestamp, signature = (part.split("=", 1)[1] for part in
                            streamed.headers["x-reflow-signature"].split(","))
    expected = hmac.new(stream["secret"].encode(), f"{timestamp}.".encode() + streamed.body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)

    # Fix the workflow and rerun from the failed block on the latest version.
    ok(client.put(f"/workflows/{ids['Sync order']}/definition", json=FIXED))
    rerun = ok(client.post(f"/workflows/{ids['Sync order']}/rerun/{failed_id}",
                           params={"userId": jane},
                           json={"from": "failed", "version": "latest", "wait": 10}))
    assert (rerun["status"], rerun["output"]) == ("succeeded", {"pushed": True})
    assert wait_finished(client, rerun["executionId"])["rerunOf"] == failed_id

    # Jane's logs go in one call; her executions are gone from every view.
    # the event, the schedule, the webhook, the failure and its rerun
    assert len(logs(client, associatedUserId=jane)["notifications"]) == 5
    ok(client.delete(f"/users/{jane}/logs"))
    assert logs(client, associatedUserId=jane)["notifications"] == []
    assert client.get(f"/logs/{failed_id}").status_code == 404
    assert client.post(f"/workflows/{ids['Sync order']}/rerun/{failed_id}",
                       params={"userId": jane}).status_code == 404
