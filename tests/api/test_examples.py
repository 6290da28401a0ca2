"""The example workflows in examples/ validate and do what examples/README.md says.

Each test installs an example file as the user would (its YAML text, POST /workflows),
runs it through the API, and ship-order talks to the fake shop (examples/shop.py) started
in-process on a free port.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.domain.definitions import parse_document
from reflow.domain.integrations import declares_integration
from reflow.services.workflows import definition_from_text
from reflow.settings import Settings
from support import EXAMPLES, ORDER_SUMMARY, SHOP_API_KEY, example_shop

# The workflows; an integration declaration (`kind: integration`) lives beside them.
EXAMPLE_FILES = sorted(p for p in EXAMPLES.glob("*.yaml")
                       if not declares_integration(parse_document(p.read_text())))
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


shop_module = example_shop()


def shop_call(base_url: str, method: str, path: str, body: Any = None,
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """Call the fake shop with its key; returns (status, decoded JSON body), error answers
    included."""
    request = urllib.request.Request(
        f"{base_url}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Api-Key": SHOP_API_KEY,
                 **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def shipments(base_url: str) -> list[dict[str, Any]]:
    """Every shipment the fake warehouse has created."""
    status, body = shop_call(base_url, "GET", "/warehouse/shipments")
    assert status == 200
    found: list[dict[str, Any]] = body["data"]
    return found


@pytest.fixture
def shop_url() -> Iterator[str]:
    """A fresh fake shop on a free port of 127.0.0.1, answering only its key (as `make run`
    starts it); its base URL."""
    server, thread = shop_module.serve(0, api_key=SHOP_API_KEY)
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def settings(make_settings: Callable[..., Settings], shop_url: str) -> Settings:
    """As `make run` configures reflow: loopback allowed, the shop's URL as env.shopUrl."""
    return make_settings(http_allow_networks="127.0.0.0/8", expression_env={"shopUrl": shop_url})


@pytest.fixture
def install_example(
    client: TestClient, install_for_new_user: Callable[..., str]
) -> Callable[..., tuple[str, str]]:
    """Store an example file's YAML as a workflow and activate it for a new user who,
    as `make run`'s demo user, holds a credential for the shop app (its key)."""
    declared = client.post("/apps", content=(EXAMPLES / "shop.app.yaml").read_bytes(),
                           headers={"content-type": "application/yaml"})
    assert declared.status_code == 200, declared.text

    def install(file_name: str, *, shop_key: bool = True) -> tuple[str, str]:
        text = (EXAMPLES / file_name).read_text()
        created = client.post("/workflows", content=text,
                              headers={"content-type": "application/yaml"})
        assert created.status_code == 200, created.text
        workflow_id: str = created.json()["workflowId"]
        user_id = install_for_new_user(workflow_id)
        if shop_key:
            given = client.post("/headless/credentials", json={"userId": user_id, "credential": {
                "type": "shop", "data": {"apiKey": SHOP_API_KEY}}})
            assert given.status_code == 200, given.text
        return workflow_id, user_id

    return install


def run(client: TestClient, workflow_id: str, user_id: str, data: dict[str, Any]
        ) -> dict[str, Any]:
    """Run a workflow and wait for its end; the answer's body."""
    response = client.post("/run/workflow?wait=5",
                           json={"workflowId": workflow_id, "userId": user_id, "data": data})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_finished(client: TestClient, execution_id: str, seconds: float = 5.0) -> dict[str, Any]:
    """Poll GET /logs/{executionId} until the execution has finished (bounded)."""
    deadline = time.monotonic() + seconds
    status = "unknown"
    while time.monotonic() < deadline:
        response = client.get(f"/logs/{execution_id}")
        assert response.status_code == 200, response.text
        detail: dict[str, Any] = response.json()["data"]
        status = detail["status"]
        if status in FINISHED:
            return detail
        time.sleep(0.02)
    raise AssertionError(f"{execution_id} is still {status} after {seconds}s")


def example_data(file_name: str) -> dict[str, Any]:
    """The example payload a file's trigger declares (what the CLI banner's curl sends)."""
    schema = definition_from_text((EXAMPLES / file_name).read_text()).trigger.schema
    assert schema is not None
    return dict(schema)


# -- every example -------------------------------------------------------------------------


def test_there_are_at_least_three_examples() -> None:
    assert len(EXAMPLE_FILES) >= 3


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_validates_as_an_api_workflow_with_an_example_payload(path: Path) -> None:
    definition = definition_from_text(path.read_text())
    assert definition.trigger.type == "api"
    assert definition.trigger.schema, "the CLI banner builds its curl from trigger.schema"
    assert definition.description


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_payload_runs_to_success(
    path: Path, client: TestClient, install_example: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = install_example(path.name)
    answer = run(client, workflow_id, user_id, example_data(path.name))
    assert answer["status"] == "succeeded", answer
    assert answer["output"] is not None


# -- order summary -------------------------------------------------------------------------


def test_order_summary_example_equals_the_benchmark_workflow() -> None:
    raw = dict(definition_from_text((EXAMPLES / "order-summary.yaml").read_text()).raw)
    # The file adds what a reader and the CLI banner need; the blocks are the benchmark's.
    raw.pop("description")
    raw["trigger"] = {k: v for k, v in raw["trigger"].items() if k != "schema"}
    assert raw == ORDER_SUMMARY


def test_order_summary_answers_label_count_and_total(
    client: TestClient, install_example: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = install_example("order-summary.yaml")
    answer = run(client, workflow_id, user_id,
                 {"label": "order-7", "values": list(range(1, 21))})
    assert answer["status"] == "succeeded"
    assert answer["output"] == {"label_upper": "ORDER-7", "value_count": 20, "total": 210}


# -- ship paid order -----------------------------------------------------------------------


def test_ship_order_ships_a_paid_order_once_with_an_idempotency_key(
    client: TestClient, install_example: Callable[..., tuple[str, str]], shop_url: str
) -> None:
    workflow_id, user_id = install_example("ship-order.yaml")
    answer = run(client, workflow_id, user_id, {"orderId": "1001"})

    assert answer["status"] == "succeeded", answer
    [shipment] = shipments(shop_url)
    assert answer["output"] == {"orderId": "1001", "customer": "jane@example.com",
                                "shipmentId": shipment["id"]}
    assert shipment["orderId"] == "1001"
    assert shipment["lines"] == [{"sku": "MUG-01", "qty": 2}, {"sku": "TEE-M", "qty": 1}]
    assert shipment["idempotencyKey"]


def test_ship_order_stops_an_unpaid_order_as_succeeded_without_a_shipment(
    client: TestClient, install_example: Callable[..., tuple[str, str]], shop_url: str
) -> None:
    workflow_id, user_id = install_example("ship-order.yaml")
    answer = run(client, workflow_id, user_id, {"orderId": "1002"})

    assert answer["status"] == "succeeded"
    assert answer["output"] is None
    detail = client.get(f"/logs/{answer['executionId']}").json()["data"]
    assert [(s["blockId"], s["output"]) for s in detail["steps"]][1:] == [("paid_only", False)]
    assert shipments(shop_url) == []


def test_ship_order_for_a_user_without_a_shop_credential_fails_naming_the_app_unsent(
    client: TestClient, install_example: Callable[..., tuple[str, str]], shop_url: str
) -> None:
    workflow_id, user_id = install_example("ship-order.yaml", shop_key=False)
    answer = run(client, workflow_id, user_id, {"orderId": "1001"})

    assert answer["status"] == "failed"
    assert answer["error"]["blockId"] == "order"
    assert "has no credential for app 'shop'" in answer["error"]["message"]
    step = client.get(f"/logs/{answer['executionId']}").json()["data"]["steps"][0]
    assert step["attempts"] == 1  # not retried: nothing was sent
    assert shipments(shop_url) == []


def test_ship_order_sends_the_users_shop_key_and_no_log_shows_it(
    client: TestClient, install_example: Callable[..., tuple[str, str]], shop_url: str
) -> None:
    workflow_id, user_id = install_example("ship-order.yaml")
    answer = run(client, workflow_id, user_id, {"orderId": "1001"})

    assert answer["status"] == "succeeded", answer
    detail = client.get(f"/logs/{answer['executionId']}").json()["data"]
    assert [s["input"]["credential"] for s in detail["steps"] if s["blockId"] in (
        "order", "shipment")] == ["shop", "shop"]
    assert SHOP_API_KEY not in json.dumps(detail)


def test_ship_order_fails_on_an_unknown_order_without_retrying_the_404(
    client: TestClient, install_example: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = install_example("ship-order.yaml")
    answer = run(client, workflow_id, user_id, {"orderId": "9999"})

    assert answer["status"] == "failed"
    assert answer["error"]["blockId"] == "order"
    assert "answered 404" in answer["error"]["message"]
    assert "order 9999 not found" in answer["error"]["message"]
    step = client.get(f"/logs/{answer['executionId']}").json()["data"]["steps"][0]
    assert step["attempts"] == 1


def test_ship_order_with_unknown_sku_fails_and_logs_say_why(
    client: TestClient, install_example: Callable[..., tuple[str, str]], shop_url: str
) -> None:
    workflow_id, user_id = install_example("ship-order.yaml")
    answer = run(client, workflow_id, user_id, {"orderId": "1003"})

    assert answer["status"] == "failed"
    assert answer["error"]["blockId"] == "shipment"
    assert "unknown sku POSTER-XL" in answer["error"]["message"]
    logs = client.get(f"/workflows/{workflow_id}/logs", params={"userId": user_id}).json()
    [item] = logs["data"]
    assert item["executionId"] == answer["executionId"]
    assert item["status"] == "failed"
    failing = [r for r in item["results"] if "error" in r]
    assert [r["connectorId"] for r in failing] == ["shipment"]
    assert "answered 422" in failing[0]["error"]
    assert "unknown sku POSTER-XL" in failing[0]["error"]
    detail = client.get(f"/logs/{answer['executionId']}").json()["data"]
    assert detail["error"]["message"] == answer["error"]["message"]
    assert shipments(shop_url) == []


def test_ship_paid_orders_ships_each_paid_order_and_a_rerun_ships_only_the_failed_one(
    client: TestClient, install_example: Callable[..., tuple[str, str]], shop_url: str
) -> None:
    workflow_id, user_id = install_example("ship-paid-orders.yaml")
    answer = run(client, workflow_id, user_id, {})
    # 1001 ships; 1003's SKU is unknown: its item is collected and the run fails.
    assert answer["status"] == "failed", answer
    assert answer["error"]["blockId"] == "not_all_shipped"
    assert "POSTER-XL" in answer["error"]["message"]
    assert [s["orderId"] for s in shipments(shop_url)] == ["1001"]

    assert shop_call(shop_url, "POST", "/warehouse/skus", {"sku": "POSTER-XL"})[0] == 201
    rerun = client.post(f"/workflows/{workflow_id}/rerun/{answer['executionId']}",
                        json={"from": "failed", "wait": 5})
    assert rerun.status_code == 200, rerun.text
    assert rerun.json()["status"] == "succeeded", rerun.json()
    assert rerun.json()["output"] == {"shipped": ["1001", "1003"]}
    # 1001's item was replayed from the log: it did not ship twice.
    assert sorted(s["orderId"] for s in shipments(shop_url)) == ["1001", "1003"]


def test_rerun_after_registering_the_sku_ships_the_failed_order(
    client: TestClient, install_example: Callable[..., tuple[str, str]], shop_url: str
) -> None:
    workflow_id, user_id = install_example("ship-order.yaml")
    failed = run(client, workflow_id, user_id, {"orderId": "1003"})
    assert failed["status"] == "failed"

    assert shop_call(shop_url, "POST", "/warehouse/skus", {"sku": "POSTER-XL"})[0] == 201
    response = client.post(f"/workflows/{workflow_id}/rerun/{failed['executionId']}",
                           params={"userId": user_id})
    assert response.status_code == 200, response.text
    rerun_id = response.json()["executionId"]
    assert rerun_id != failed["executionId"]

    rerun = wait_finished(client, rerun_id)
    assert rerun["status"] == "succeeded", rerun["error"]
    assert rerun["mode"] == "rerun"
    assert rerun["rerunOf"] == failed["executionId"]
    assert rerun["trigger"] == {"data": {"orderId": "1003"}}
    [shipment] = shipments(shop_url)
    assert rerun["output"]["shipmentId"] == shipment["id"]
    assert shipment["orderId"] == "1003"
    original = client.get(f"/logs/{failed['executionId']}").json()["data"]
    assert original["status"] == "failed"
    assert original["reruns"] == [rerun_id]


def test_rerun_from_the_failed_block_reuses_the_fetched_order_and_ships_it(
    client: TestClient, install_example: Callable[..., tuple[str, str]], shop_url: str
) -> None:
    workflow_id, user_id = install_example("ship-order.yaml")
    failed = run(client, workflow_id, user_id, {"orderId": "1003"})
    assert shop_call(shop_url, "POST", "/warehouse/skus", {"sku": "POSTER-XL"})[0] == 201
    response = client.post(f"/workflows/{workflow_id}/rerun/{failed['executionId']}",
                           json={"from": "failed", "wait": 5},
                           headers={"Idempotency-Key": "support-1"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    rerun = wait_finished(client, response.json()["executionId"])
    assert [(s["blockId"], s["reused"]) for s in rerun["steps"]] == [
        ("order", True), ("paid_only", True), ("shipment", False), ("done", False)]
    [shipment] = shipments(shop_url)
    assert shipment["idempotencyKey"] == f"{rerun['executionId']}:shipment"


# -- route support ticket ------------------------------------------------------------------


@pytest.mark.parametrize(("ticket", "arm", "assignment"), [
    ({"priority": "URGENT", "customer": {"plan": "pro"}},
     "then", {"queue": "escalations", "assignee": "on-call", "slaHours": 1}),
    ({"priority": "low", "customer": {"plan": "enterprise"}},
     "then", {"queue": "escalations", "assignee": "on-call", "slaHours": 1}),
    ({"priority": "normal", "customer": {"plan": "pro"}},
     "else", {"queue": "support", "assignee": None, "slaHours": 24}),
    ({"priority": "normal", "customer": {"plan": "free"}},
     "else", {"queue": "community", "assignee": None, "slaHours": 72}),
], ids=["urgent", "enterprise", "normal", "free-plan"])
def test_route_ticket_takes_the_arm_its_priority_and_plan_call_for(
    client: TestClient, install_example: Callable[..., tuple[str, str]],
    ticket: dict[str, Any], arm: str, assignment: dict[str, Any],
) -> None:
    workflow_id, user_id = install_example("route-ticket.yaml")
    answer = run(client, workflow_id, user_id,
                 {"ticketId": "T-7", "subject": "  Invoice is wrong ", **ticket})

    assert answer["status"] == "succeeded", answer
    assert answer["output"] == {"ticketId": "T-7", "arm": arm, "assignment": assignment}
    detail = client.get(f"/logs/{answer['executionId']}").json()["data"]
    ran = [s["blockId"] for s in detail["steps"]]
    assert ran == ["ticket", "route", "escalate" if arm == "then" else "triage", "done"]


# -- validate signup -----------------------------------------------------------------------


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "No Mail"}, "invalid signup: email is required"),
    ({"email": "ada-at-example.com"}, "invalid signup: ada-at-example.com is not an email address"),
    ({"email": 42}, "invalid signup: 42 is not an email address"),
], ids=["missing", "malformed", "not-a-string"])
def test_validate_signup_fails_with_a_clear_message_for_a_bad_email(
    client: TestClient, install_example: Callable[..., tuple[str, str]],
    data: dict[str, Any], message: str,
) -> None:
    workflow_id, user_id = install_example("validate-signup.yaml")
    answer = run(client, workflow_id, user_id, data)

    assert answer["status"] == "failed"
    assert answer["error"] == {"message": message, "blockId": "reject"}


def test_validate_signup_answers_the_account_with_defaults(
    client: TestClient, install_example: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = install_example("validate-signup.yaml")
    answer = run(client, workflow_id, user_id, {"email": "Grace@Example.COM"})

    assert answer["status"] == "succeeded"
    assert answer["output"] == {
        "account": {"email": "grace@example.com", "name": "Grace", "plan": "free"}
    }


# -- the fake shop itself ------------------------------------------------------------------


def test_shop_answers_the_same_shipment_for_a_repeated_idempotency_key(shop_url: str) -> None:
    body = {"orderId": "1001", "lines": [{"sku": "MUG-01", "qty": 2}]}

    def post(key: str) -> tuple[int, Any]:
        return shop_call(shop_url, "POST", "/warehouse/shipments", body, {"Idempotency-Key": key})

    first, again, other = post("exec-1:shipment"), post("exec-1:shipment"), post("exec-2:x")

    assert first[0] == again[0] == other[0] == 201
    assert again[1] == first[1]
    assert other[1]["id"] != first[1]["id"]
    assert len(shipments(shop_url)) == 2


def test_shop_refuses_a_reused_idempotency_key_with_another_body(shop_url: str) -> None:
    key = {"Idempotency-Key": "k"}
    shop_call(shop_url, "POST", "/warehouse/shipments",
              {"orderId": "1001", "lines": [{"sku": "MUG-01", "qty": 1}]}, key)
    status, body = shop_call(shop_url, "POST", "/warehouse/shipments",
                             {"orderId": "1002", "lines": [{"sku": "TEE-L", "qty": 3}]}, key)
    assert status == 409
    assert "different request body" in body["error"]


@pytest.mark.parametrize(("path", "message"), [
    ("/orders/77", "order 77 not found"),
    ("/nowhere", "no endpoint /nowhere"),
])
def test_shop_answers_404_json_for_unknown_orders_and_paths(
    shop_url: str, path: str, message: str
) -> None:
    assert shop_call(shop_url, "GET", path) == (404, {"error": message})


def test_shop_script_prints_its_url_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "shop.py"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fake shop listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        assert shop_call(url, "GET", "/orders/1001")[1]["status"] == "paid"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        process.communicate(timeout=10)
