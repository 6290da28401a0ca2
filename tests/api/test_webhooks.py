"""Webhook URLs: each copy of a webhook workflow has a secret URL that starts it without an
API key, optionally signed (HMAC-SHA256) and deduplicated on a delivery id header."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from reflow.clock import ManualClock
from reflow.services import Reflow
from reflow.services.webhooks import WebhookCall
from reflow.settings import Settings
from support import ORDER_DATA, ORDER_OUTPUT, ORDER_SUMMARY, SlowTarget, wait_finished

Installed = Callable[..., tuple[str, str]]
PUBLIC_URL = "https://hooks.example.com/reflow"
HOOK: dict[str, Any] = {**ORDER_SUMMARY, "name": "Order hook", "trigger": {"type": "webhook"}}
SECRET = "whsec_test_0123456789"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Webhook URLs under a public address; the slow local target reachable."""
    return make_settings(public_url=PUBLIC_URL + "/", http_allow_networks="127.0.0.0/8")


def hook(**trigger: Any) -> dict[str, Any]:
    """HOOK with more trigger options."""
    return {**HOOK, "trigger": {"type": "webhook", **trigger}}


def webhook_url(client: TestClient, workflow_id: str, user_id: str) -> str | None:
    """``webhookUrl`` of GET /workflows/{id}?userId=."""
    response = client.get(f"/workflows/{workflow_id}", params={"userId": user_id})
    assert response.status_code == 200, response.text
    url: str | None = response.json()["data"]["webhookUrl"]
    return url


def path_of(url: str | None) -> str:
    """The path to call on the test client for a webhook URL."""
    assert url is not None and url.startswith(PUBLIC_URL + "/webhooks/wh_"), url
    return urlsplit(url).path.removeprefix(urlsplit(PUBLIC_URL).path)


def call(client: TestClient, path: str, *,
         headers: dict[str, str] | list[tuple[str, str]] | None = None,
         **kwargs: Any) -> httpx.Response:
    """POST to a webhook path as another service would: no API key, no API version."""
    request = client.build_request("POST", path, headers=headers, **kwargs)
    sent = {name.lower() for name in (dict(headers) if headers else {})}
    for name in ("authorization", "x-api-version"):
        if name not in sent:
            del request.headers[name]
    return client.send(request)


def runs(client: TestClient, workflow_id: str, user_id: str) -> list[dict[str, Any]]:
    """The user's executions of the workflow, newest first."""
    response = client.get(f"/workflows/{workflow_id}/logs",
                          params={"userId": user_id, "limit": 30})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]
    return items


@pytest.fixture
def hooked(client: TestClient, installed: Installed) -> Callable[..., tuple[str, str, str]]:
    """A webhook workflow installed for a new user: (workflowId, userId, webhook path)."""

    def make(definition: dict[str, Any] | None = None) -> tuple[str, str, str]:
        workflow_id, user_id = installed(definition or HOOK)
        return workflow_id, user_id, path_of(webhook_url(client, workflow_id, user_id))

    return make


def set_env(client: TestClient, **env: Any) -> None:
    response = client.put("/env", json={"env": env})
    assert response.status_code == 200, response.text


# -- the URL -------------------------------------------------------------------------------


def test_a_webhook_copy_has_a_stable_secret_url_under_the_public_url(
    client: TestClient, installed: Installed, make_user: Callable[..., str],
) -> None:
    workflow_id, user_id = installed(HOOK)
    first = webhook_url(client, workflow_id, user_id)
    assert first is not None
    assert first.startswith("https://hooks.example.com/reflow/webhooks/wh_")
    assert len(first.rsplit("/", 1)[1]) >= 40
    assert webhook_url(client, workflow_id, user_id) == first


def test_no_url_without_a_copy_or_for_a_workflow_not_triggered_by_a_webhook(
    client: TestClient, installed: Installed, make_workflow: Callable[..., str],
    make_user: Callable[..., str],
) -> None:
    assert webhook_url(client, make_workflow(HOOK), make_user()) is None
    api_workflow, api_user = installed(ORDER_SUMMARY)
    assert webhook_url(client, api_workflow, api_user) is None


def test_each_users_copy_has_its_own_url(
    client: TestClient, make_workflow: Callable[..., str],
    install_for_new_user: Callable[..., str],
) -> None:
    workflow_id = make_workflow(HOOK)
    urls = {webhook_url(client, workflow_id, install_for_new_user(workflow_id))
            for _ in range(3)}
    assert len(urls) == 3 and None not in urls


# -- calls ---------------------------------------------------------------------------------


def test_a_call_without_an_api_key_starts_a_committed_webhook_execution(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    workflow_id, user_id, path = hooked()
    response = call(client, path, json=ORDER_DATA)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "success"
    assert response.headers["x-reflow-execution-id"] == body["executionId"]
    # A 200 means the row exists, whatever the run's progress.
    assert client.get(f"/logs/{body['executionId']}").status_code == 200
    execution = wait_finished(client, body["executionId"])
    assert execution["mode"] == "webhook"
    assert execution["status"] == "succeeded"
    assert execution["output"] == ORDER_OUTPUT
    assert execution["userId"] == user_id
    assert execution["workflowId"] == workflow_id


def test_the_trigger_holds_the_body_the_query_and_the_headers_but_no_credentials(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    _, _, path = hooked()
    response = call(client, path + "?source=shop&tag=a&tag=b", json=ORDER_DATA, headers={
        "X-Shop-Topic": "orders/paid", "Authorization": "bearer not-for-logs",
        "Cookie": "session=private"})
    assert response.status_code == 200, response.text
    trigger = wait_finished(client, response.json()["executionId"])["trigger"]
    assert trigger["data"] == ORDER_DATA
    assert trigger["query"] == {"source": "shop", "tag": ["a", "b"]}
    headers = trigger["headers"]
    assert headers["x-shop-topic"] == "orders/paid"
    assert headers["content-type"] == "application/json"
    assert not {"authorization", "cookie", "host", "content-length"} & set(headers)


def test_a_form_body_becomes_the_trigger_data(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    _, _, path = hooked(hook() | {"blocks": [
        {"id": "done", "type": "respond", "with": {"body": "{{ trigger.data }}"}}]})
    response = call(client, path, content=b"label=abc&values=1&values=2&empty=",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text
    execution = wait_finished(client, response.json()["executionId"])
    assert execution["output"] == {"label": "abc", "values": ["1", "2"], "empty": ""}


def test_an_empty_body_is_an_empty_object(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    _, _, path = hooked()
    response = call(client, path)
    assert response.status_code == 200, response.text
    assert wait_finished(client, response.json()["executionId"])["trigger"]["data"] == {}


def test_other_bodies_are_refused_and_start_nothing(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    workflow_id, user_id, path = hooked()
    xml = call(client, path, content=b"<order/>", headers={"Content-Type": "text/xml"})
    assert xml.status_code == 415
    assert "application/json" in xml.json()["message"]
    broken = call(client, path, content=b'{"label": ', headers={
        "Content-Type": "application/json"})
    assert broken.status_code == 422
    assert "malformed JSON" in broken.json()["message"]
    assert runs(client, workflow_id, user_id) == []


def test_a_body_over_the_server_limit_answers_413(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]], settings: Settings,
) -> None:
    workflow_id, user_id, path = hooked()
    response = call(client, path, content=b"{" + b" " * settings.max_body_bytes + b"}",
                    headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert runs(client, workflow_id, user_id) == []


def test_a_chunked_body_or_a_repeated_header_is_taken_by_the_route_alike(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    # Without a Content-Length, or with a header twice, the call skips api/fastpath.py.
    _, _, path = hooked()
    chunks = iter([b'{"label": "abc", ', b'"values": [1, 2, 3]}'])
    chunked = call(client, path + "?a=1", content=chunks,
                   headers={"Content-Type": "application/json"})
    assert chunked.status_code == 200, chunked.text
    repeated = call(client, path + "?a=1", json=ORDER_DATA,
                    headers=[("X-Tag", "one"), ("X-Tag", "two")])
    assert repeated.status_code == 200, repeated.text
    first = wait_finished(client, chunked.json()["executionId"])
    second = wait_finished(client, repeated.json()["executionId"])
    assert first["output"] == second["output"] == ORDER_OUTPUT
    assert first["trigger"]["data"] == second["trigger"]["data"] == ORDER_DATA
    assert second["trigger"]["headers"]["x-tag"] == "one, two"


def test_the_path_versioned_form_of_a_webhook_url_works_too(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    _, _, path = hooked()
    response = call(client, "/2025-09" + path, json=ORDER_DATA)
    assert response.status_code == 200, response.text


def test_a_rerun_of_a_webhook_execution_replays_its_whole_trigger(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    workflow_id, user_id, path = hooked()
    first = call(client, path + "?a=1", json=ORDER_DATA, headers={"X-Event": "paid"})
    source = wait_finished(client, first.json()["executionId"])
    rerun = client.post(f"/workflows/{workflow_id}/rerun/{source['executionId']}",
                        params={"userId": user_id, "wait": 10})
    assert rerun.status_code == 200, rerun.text
    again = wait_finished(client, rerun.json()["executionId"])
    assert again["mode"] == "rerun"
    assert again["trigger"] == source["trigger"]
    assert again["output"] == ORDER_OUTPUT


def test_run_workflow_still_starts_a_webhook_workflow_as_the_reference_says(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    workflow_id, user_id, _ = hooked()
    response = client.post("/run/workflow", params={"wait": 10}, json={
        "workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA})
    assert response.status_code == 200, response.text
    assert response.json()["output"] == ORDER_OUTPUT


# -- rotation and refusals -----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/2024-03"])
def test_rotating_gives_a_new_url_and_the_old_one_answers_404(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]], prefix: str,
) -> None:
    workflow_id, user_id, old_path = hooked()
    response = client.post(f"{prefix}/workflows/{workflow_id}/webhook/rotate",
                           params={"userId": user_id})
    assert response.status_code == 200, response.text
    new_url = response.json()["webhookUrl"]
    assert path_of(new_url) != old_path
    assert webhook_url(client, workflow_id, user_id) == new_url
    old = call(client, old_path, json=ORDER_DATA)
    assert old.status_code == 404
    assert "rotated" in old.json()["message"]
    assert call(client, path_of(new_url), json=ORDER_DATA).status_code == 200
    assert len(runs(client, workflow_id, user_id)) == 1


def test_rotating_a_copy_that_is_not_webhook_triggered_answers_409(
    client: TestClient, installed: Installed,
) -> None:
    workflow_id, user_id = installed(ORDER_SUMMARY)
    response = client.post(f"/workflows/{workflow_id}/webhook/rotate",
                           params={"userId": user_id})
    assert response.status_code == 409
    assert "not triggered by a webhook" in response.json()["message"]


def test_an_unknown_url_answers_404(client: TestClient) -> None:
    response = call(client, "/webhooks/wh_nothing_here", json={})
    assert response.status_code == 404
    assert "unknown webhook URL" in response.json()["message"]


def test_a_deactivated_copy_answers_409_until_it_is_activated_again(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    workflow_id, user_id, path = hooked()
    ref = {"userId": user_id, "workflowId": workflow_id}
    assert client.put("/workflows/deactivate", json=ref).status_code == 200
    refused = call(client, path, json=ORDER_DATA)
    assert refused.status_code == 409
    assert "deactivated" in refused.json()["message"]
    assert runs(client, workflow_id, user_id) == []
    assert client.put("/workflows/activate", json=ref).status_code == 200
    assert call(client, path, json=ORDER_DATA).status_code == 200


def test_a_deleted_users_url_answers_410_and_starts_nothing(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    _, user_id, path = hooked()
    assert client.delete(f"/users/{user_id}").status_code == 200
    response = call(client, path, json=ORDER_DATA)
    assert response.status_code == 410
    assert "deleted" in response.json()["message"]


def test_a_deleted_copy_answers_410_until_activating_it_again_revives_its_url(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    workflow_id, user_id, path = hooked()
    deleted = client.delete(f"/workflows/{workflow_id}", params={"userId": user_id})
    assert deleted.status_code == 200, deleted.text
    refused = call(client, path, json=ORDER_DATA)
    assert refused.status_code == 410
    assert "deleted for its user" in refused.json()["message"]
    assert runs(client, workflow_id, user_id) == []
    assert client.put("/workflows/activate", json={
        "userId": user_id, "workflowId": workflow_id}).status_code == 200
    assert path_of(webhook_url(client, workflow_id, user_id)) == path
    assert call(client, path, json=ORDER_DATA).status_code == 200


def test_a_copy_upgraded_to_a_version_without_a_webhook_trigger_answers_409(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    workflow_id, user_id, path = hooked()
    assert client.put(f"/workflows/{workflow_id}/definition",
                      json={**HOOK, "trigger": {"type": "api"}}).status_code == 200
    assert client.put(f"/workflows/{workflow_id}/upgrade",
                      params={"userId": user_id}).status_code == 200
    response = call(client, path, json=ORDER_DATA)
    assert response.status_code == 409
    assert "triggered by api" in response.json()["message"]
    assert webhook_url(client, workflow_id, user_id) is None


# -- respond -------------------------------------------------------------------------------


def test_respond_answers_with_the_respond_blocks_body_and_status(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    _, _, path = hooked(hook(respond=True) | {"blocks": [
        {"id": "done", "type": "respond", "with": {
            "status": 201, "body": {"challenge": "{{ trigger.query.challenge }}"}}}]})
    response = call(client, path + "?challenge=abc123", json={})
    assert response.status_code == 201, response.text
    assert response.json() == {"challenge": "abc123"}
    execution = wait_finished(client, response.headers["x-reflow-execution-id"])
    assert execution["status"] == "succeeded"


def test_respond_with_a_failing_workflow_answers_500_with_the_execution(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    _, _, path = hooked(hook(respond=True) | {"blocks": [
        {"id": "boom", "type": "fail", "with": {"message": "refused"}}]})
    response = call(client, path, json={})
    assert response.status_code == 500
    body = response.json()
    assert "failed" in body["message"]
    assert wait_finished(client, body["executionId"])["status"] == "failed"


def test_respond_answers_before_a_delay_and_202_when_the_delay_comes_first(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    wait = {"id": "later", "type": "delay", "with": {"for": "1h"}}
    answer = {"id": "done", "type": "respond", "with": {"status": 200, "body": {"ok": True}}}
    _, _, answered = hooked(hook(respond=True) | {"name": "Answer then wait",
                                                  "blocks": [answer, wait]})
    response = call(client, answered, json={})
    assert response.status_code == 200 and response.json() == {"ok": True}
    execution = client.get(f"/logs/{response.headers['x-reflow-execution-id']}").json()
    assert execution["data"]["status"] == "waiting"
    _, _, waits = hooked(hook(respond=True) | {"name": "Wait then answer",
                                               "blocks": [wait, answer]})
    response = call(client, waits, json={})
    assert response.status_code == 202, response.text
    assert "waiting" in response.json()["message"]


def test_respond_still_running_at_its_timeout_answers_202(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]], slow_target: SlowTarget,
) -> None:
    slow = slow_target.workflow()
    _, _, path = hooked({**slow, "name": "Slow hook",
                         "trigger": {"type": "webhook", "respond": {"timeout": "200ms"}}})
    response = call(client, path, json={})
    assert response.status_code == 202, response.text
    execution_id = response.json()["executionId"]
    # Committed before the 202 left.
    assert client.get(f"/logs/{execution_id}").status_code == 200
    slow_target.release.set()
    assert wait_finished(client, execution_id)["status"] == "succeeded"


# -- signatures ----------------------------------------------------------------------------


def hex_hmac(payload: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


GITHUB = {"header": "X-Hub-Signature-256", "secret": "githubSecret", "prefix": "sha256="}
STRIPE = {"header": "Stripe-Signature", "secret": "{{ env.stripeSecret }}",
          "format": "stripe", "tolerance": "5m"}


def test_a_github_style_signature_is_checked_and_a_bad_one_starts_nothing(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    set_env(client, githubSecret=SECRET)
    workflow_id, user_id, path = hooked(hook(verify=GITHUB))
    body = orjson.dumps(ORDER_DATA)
    json_type = {"Content-Type": "application/json"}
    good = call(client, path, content=body, headers={
        **json_type, "X-Hub-Signature-256": "sha256=" + hex_hmac(body)})
    assert good.status_code == 200, good.text
    for headers, reason in [
        ({}, "missing X-Hub-Signature-256 header"),
        ({"X-Hub-Signature-256": "sha256=" + hex_hmac(body + b" ")}, "invalid signature"),
        ({"X-Hub-Signature-256": hex_hmac(body)}, "must start with 'sha256='"),
        ({"X-Hub-Signature-256": "sha256=" + hex_hmac(body, "other")}, "invalid signature"),
        ({"X-Hub-Signature-256": "sha256=not-hex"}, "invalid signature"),
    ]:
        bad = call(client, path, content=body, headers={**json_type, **headers})
        assert bad.status_code == 401, (headers, bad.text)
        assert reason in bad.json()["message"]
    assert [r["executionId"] for r in runs(client, workflow_id, user_id)] == [
        good.json()["executionId"]]


def stripe_header(body: bytes, at: int, *extra: str) -> str:
    """Stripe's layout: t=<seconds>,v1=<HMAC of "<t>.<body>">."""
    return ",".join([f"t={at}", *extra, f"v1={hex_hmac(f'{at}.'.encode() + body)}"])


def test_a_stripe_style_signature_is_checked_against_the_clock(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]], clock: ManualClock,
) -> None:
    set_env(client, stripeSecret=SECRET)
    workflow_id, user_id, path = hooked(hook(verify=STRIPE))
    body = orjson.dumps(ORDER_DATA)
    now = clock.now_ms() // 1000
    json_type = {"Content-Type": "application/json"}
    # An old secret's signature beside the current one (Stripe, while a secret rolls).
    good = call(client, path, content=body, headers={
        **json_type, "Stripe-Signature": stripe_header(body, now, "v1=" + "0" * 64)})
    assert good.status_code == 200, good.text
    signed_earlier = stripe_header(body, now)
    clock.advance(301)
    stale = call(client, path, content=body, headers={**json_type,
                                                      "Stripe-Signature": signed_earlier})
    assert stale.status_code == 401
    assert "stale signature" in stale.json()["message"]
    future = call(client, path, content=body, headers={
        **json_type, "Stripe-Signature": stripe_header(body, now + 700)})
    assert future.status_code == 401
    unsigned_time = call(client, path, content=body, headers={
        **json_type, "Stripe-Signature": f"v1={hex_hmac(body)}"})
    assert unsigned_time.status_code == 401
    assert "t=<timestamp>" in unsigned_time.json()["message"]
    assert len(runs(client, workflow_id, user_id)) == 1


def test_a_shopify_style_base64_signature_is_checked(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    set_env(client, shopifySecret=SECRET)
    _, _, path = hooked(hook(verify={"header": "X-Shopify-Hmac-Sha256",
                                     "secret": "shopifySecret", "encoding": "base64"}))
    body = orjson.dumps(ORDER_DATA)
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    response = call(client, path, content=body, headers={
        "Content-Type": "application/json",
        "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode()})
    assert response.status_code == 200, response.text


def test_a_signing_secret_missing_from_the_team_env_answers_409(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    workflow_id, user_id, path = hooked(hook(verify=GITHUB))
    response = call(client, path, json=ORDER_DATA,
                    headers={"X-Hub-Signature-256": "sha256=00"})
    assert response.status_code == 409
    assert "trigger.verify.secret" in response.json()["message"]
    assert runs(client, workflow_id, user_id) == []


def test_a_secret_written_in_the_definition_is_refused(
    client: TestClient,
) -> None:
    secret = "whsec_Zm9vYmFyYmF6+cXV4/w=="  # what a signing secret looks like
    response = client.post("/workflows", json=hook(verify={**GITHUB, "secret": secret}))
    assert response.status_code == 422
    assert response.json()["problems"][0]["path"] == "trigger.verify.secret"


# -- dedupe --------------------------------------------------------------------------------

DEDUPE = {"header": "X-GitHub-Delivery"}


def test_a_repeated_delivery_id_answers_the_first_execution_and_starts_nothing(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    workflow_id, user_id, path = hooked(hook(dedupe=DEDUPE))
    first = call(client, path, json=ORDER_DATA, headers={"X-GitHub-Delivery": "d-1"})
    assert first.status_code == 200, first.text
    assert first.json().get("duplicate", False) is False
    again = call(client, path, json={"other": "body"}, headers={"X-GitHub-Delivery": "d-1"})
    assert again.status_code == 200
    assert again.json()["executionId"] == first.json()["executionId"]
    assert again.json()["duplicate"] is True
    other = call(client, path, json=ORDER_DATA, headers={"X-GitHub-Delivery": "d-2"})
    assert other.json()["executionId"] != first.json()["executionId"]
    # The same body under another id is another delivery: never deduplicated by content.
    assert len(runs(client, workflow_id, user_id)) == 2


def test_delivery_ids_are_per_copy(
    client: TestClient, make_workflow: Callable[..., str],
    install_for_new_user: Callable[..., str],
) -> None:
    workflow_id = make_workflow(hook(dedupe=DEDUPE))
    paths = [path_of(webhook_url(client, workflow_id, install_for_new_user(workflow_id)))
             for _ in range(2)]
    answers = [call(client, p, json={}, headers={"X-GitHub-Delivery": "same"}).json()
               for p in paths]
    assert answers[0]["executionId"] != answers[1]["executionId"]
    assert not any(a.get("duplicate") for a in answers)


def test_a_missing_delivery_id_answers_400_and_starts_nothing(
    client: TestClient, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    workflow_id, user_id, path = hooked(hook(dedupe=DEDUPE))
    response = call(client, path, json=ORDER_DATA)
    assert response.status_code == 400
    assert "X-GitHub-Delivery" in response.json()["message"]
    assert runs(client, workflow_id, user_id) == []


def test_concurrent_deliveries_of_one_id_start_one_execution(
    client: TestClient, reflow: Reflow, hooked: Callable[..., tuple[str, str, str]],
) -> None:
    workflow_id, user_id, path = hooked(hook(dedupe=DEDUPE))
    token = path.rsplit("/", 1)[1]
    delivery = WebhookCall(token, orjson.dumps(ORDER_DATA), "application/json",
                           [("x-github-delivery", "burst")], [])

    async def burst() -> list[Any]:
        return await asyncio.gather(*(reflow.webhooks.receive(delivery) for _ in range(8)))

    assert client.portal is not None
    received = client.portal.call(burst)
    assert len({r.started.execution_id for r in received}) == 1
    assert sum(not r.duplicate for r in received) == 1
    assert len(runs(client, workflow_id, user_id)) == 1


def test_a_delivery_id_is_forgotten_with_its_purged_execution(
    client: TestClient, reflow: Reflow, hooked: Callable[..., tuple[str, str, str]],
    clock: ManualClock,
) -> None:
    workflow_id, user_id, path = hooked(hook(dedupe=DEDUPE))
    first = call(client, path, json=ORDER_DATA, headers={"X-GitHub-Delivery": "old"})
    wait_finished(client, first.json()["executionId"])
    # Moving the clock may run the periodic purge already; this makes sure it ran.
    clock.advance(reflow.settings.log_retention + 60)
    assert client.portal is not None
    client.portal.call(reflow.purge_once)
    assert client.get(f"/logs/{first.json()['executionId']}").status_code == 404
    again = call(client, path, json=ORDER_DATA, headers={"X-GitHub-Delivery": "old"})
    assert again.status_code == 200
    assert again.json().get("duplicate", False) is False
    assert again.json()["executionId"] != first.json()["executionId"]
    assert len(runs(client, workflow_id, user_id)) == 1
