"""``loop`` and ``delay`` blocks: steps keyed by (block, item), loops that fail, collect,
resume and rerun item by item, and delays that wait without a worker, across a restart
(docs/workflows.md "Loops and delays")."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.clock import ManualClock
from reflow.services import Reflow
from reflow.settings import Settings
from support import execution_log, serving, serving_reflow, wait_finished

HOUR = 3600.0


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The http block may call the local target."""
    return make_settings(http_allow_networks="127.0.0.0/8")


class Target:
    """A local endpoint counting POSTs by the body's ``n``; answers 500 for ``broken``."""

    def __init__(self) -> None:
        self.url = ""
        self.calls: dict[int, int] = {}
        self.keys: set[str] = set()
        self.broken: set[int] = set()
        self._lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                n = body["n"]
                with target._lock:
                    target.calls[n] = target.calls.get(n, 0) + 1
                    target.keys.add(self.headers.get("idempotency-key", ""))
                status = 500 if n in target.broken else 200
                payload = json.dumps({"n": n, "double": n * 2}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler


@pytest.fixture
def target() -> Iterator[Target]:
    found = Target()
    with serving(found.handler()) as base:
        found.url = f"{base}/items"
        yield found


def calling_loop(url: str, **loop: Any) -> dict[str, Any]:
    """For each of trigger.data.items: prepare (pure), call the target, answer all."""
    return {
        "name": "Sync items",
        "trigger": {"type": "api"},
        "blocks": [
            {"id": "each", "type": "loop", "with": {
                "over": "{{ trigger.data.items }}", **loop,
                "blocks": [
                    {"id": "prepare", "type": "transform",
                     "with": {"value": "{{ item.n * 10 + index }}"}},
                    {"id": "call", "type": "http",
                     "with": {"method": "POST", "url": url, "json": {"n": "{{ item.n }}"}}},
                ],
            }},
            {"id": "done", "type": "respond", "with": {"body": {
                "doubles": "{{ each.call.body.double }}", "prepared": "{{ each.prepare }}"}}},
        ],
    }


def run(client: TestClient, workflow_id: str, user_id: str, data: Any) -> Any:
    response = client.post("/run/workflow?wait=10",
                           json={"workflowId": workflow_id, "userId": user_id, "data": data})
    assert response.status_code in (200, 202), response.text
    return response.json()


def items(*numbers: int) -> dict[str, Any]:
    return {"items": [{"n": n} for n in numbers]}


def test_a_loop_runs_its_blocks_per_item_and_records_each_items_steps(
    client: TestClient, installed: Callable[..., tuple[str, str]], target: Target,
) -> None:
    workflow_id, user_id = installed(calling_loop(target.url, concurrency=3))
    result = run(client, workflow_id, user_id, items(1, 2, 3, 4, 5))
    assert result["status"] == "succeeded", result
    assert result["output"] == {"doubles": [2, 4, 6, 8, 10], "prepared": [10, 21, 32, 43, 54]}
    assert target.calls == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
    # Each item's call has its own idempotency key: targets deduplicate per item.
    assert len(target.keys) == 5
    detail = execution_log(client, result["executionId"])
    keyed = sorted((s["blockId"], s["item"]) for s in detail["steps"])
    assert keyed == sorted([("each", None), ("done", None),
                            *((block, str(i)) for i in range(5) for block in ("prepare", "call"))])
    loop_step = next(s for s in detail["steps"] if s["blockId"] == "each")
    assert loop_step["output"][4] == {"prepare": 54, "call": loop_step["output"][4]["call"]}
    # The reference's results carry the item path too.
    assert {r.get("item") for r in detail["results"]} == {None, "0", "1", "2", "3", "4"}


def test_a_failed_item_fails_the_loop_and_a_rerun_from_failed_repeats_only_its_call(
    client: TestClient, installed: Callable[..., tuple[str, str]], target: Target,
) -> None:
    workflow_id, user_id = installed(calling_loop(target.url))
    target.broken = {3}
    result = run(client, workflow_id, user_id, items(1, 2, 3, 4))
    assert result["status"] == "failed"
    assert result["error"]["blockId"] == "call"
    assert result["error"]["message"].startswith("item 2: ")
    # A failed item stops the items after it (concurrency 1): 4 never ran.
    assert target.calls == {1: 1, 2: 1, 3: 1}

    target.broken = set()
    rerun = client.post(f"/workflows/{workflow_id}/rerun/{result['executionId']}",
                        json={"from": "failed", "wait": 10})
    assert rerun.status_code == 200, rerun.text
    assert rerun.json()["status"] == "succeeded"
    assert rerun.json()["output"]["doubles"] == [2, 4, 6, 8]
    # Only the failed item's call went out again (and the item that never ran).
    assert target.calls == {1: 1, 2: 1, 3: 2, 4: 1}
    steps = execution_log(client, rerun.json()["executionId"])["steps"]
    reused = {(s["blockId"], s["item"]) for s in steps if s["reused"]}
    assert reused == {("prepare", "0"), ("call", "0"), ("prepare", "1"), ("call", "1"),
                      ("prepare", "2")}


def test_a_collecting_loop_keeps_failed_items_in_its_output_and_goes_on(
    client: TestClient, installed: Callable[..., tuple[str, str]], target: Target,
) -> None:
    workflow_id, user_id = installed(calling_loop(target.url, onError="collect",
                                                  concurrency=2))
    target.broken = {2}
    result = run(client, workflow_id, user_id, items(1, 2, 3))
    assert result["status"] == "succeeded", result
    assert target.calls == {1: 1, 2: 1, 3: 1}
    loop_step = next(s for s in execution_log(client, result["executionId"])["steps"]
                     if s["blockId"] == "each")
    failed = loop_step["output"][1]
    assert failed["prepare"] == 21 and failed["error"]["blockId"] == "call"
    assert "error" not in loop_step["output"][0]

    # A rerun from the failed step runs the loop again: only item 1's call goes out.
    target.broken = set()
    rerun = client.post(f"/workflows/{workflow_id}/rerun/{result['executionId']}",
                        json={"from": "failed", "wait": 10}).json()
    assert rerun["status"] == "succeeded"
    assert rerun["output"]["doubles"] == [2, 4, 6]
    assert target.calls == {1: 1, 2: 2, 3: 1}


def test_a_rerun_from_a_block_inside_a_loop_reuses_the_blocks_before_it_in_each_item(
    client: TestClient, installed: Callable[..., tuple[str, str]], target: Target,
) -> None:
    workflow_id, user_id = installed(calling_loop(target.url))
    source = run(client, workflow_id, user_id, items(1, 2))
    rerun = client.post(f"/workflows/{workflow_id}/rerun/{source['executionId']}",
                        json={"from": "call", "wait": 10}).json()
    assert rerun["status"] == "succeeded"
    assert target.calls == {1: 2, 2: 2}
    steps = execution_log(client, rerun["executionId"])["steps"]
    assert {(s["blockId"], s["item"]) for s in steps if s["reused"]} == {
        ("prepare", "0"), ("prepare", "1")}


def test_loops_nest_and_a_filter_inside_ends_only_its_item(
    client: TestClient, installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed({
        "name": "Grid",
        "trigger": {"type": "api"},
        "blocks": [
            {"id": "rows", "type": "loop", "with": {"over": [1, 2, 3], "blocks": [
                {"id": "row", "type": "transform", "with": {"value": "{{ item }}"}},
                {"id": "odd", "type": "filter", "with": {"when": "{{ row % 2 = 1 }}"}},
                {"id": "cols", "type": "loop", "with": {"over": ["a", "b"], "blocks": [
                    {"id": "cell", "type": "transform",
                     "with": {"value": "{{ item & $string(row) }}"}},
                ]}},
            ]}},
            {"id": "done", "type": "respond", "with": {"body": "{{ rows.cols.cell }}"}},
        ],
    })
    result = run(client, workflow_id, user_id, {})
    assert result["status"] == "succeeded", result
    assert result["output"] == ["a1", "b1", "a3", "b3"]
    steps = execution_log(client, result["executionId"])["steps"]
    assert {s["item"] for s in steps if s["blockId"] == "cell"} == {"0.0", "0.1", "2.0", "2.1"}


@pytest.mark.parametrize(("loop", "problem"), [
    ({"over": [1], "concurrency": 0}, "blocks[0].with.concurrency"),
    ({"over": [1], "onError": "skip"}, "blocks[0].with.onError"),
    ({"over": "not a list"}, "blocks[0].with.over"),
])
def test_a_loop_with_bad_options_is_refused_with_the_path(
    client: TestClient, loop: dict[str, Any], problem: str,
) -> None:
    response = client.post("/workflows", json={
        "name": "Bad loop", "trigger": {"type": "api"},
        "blocks": [{"id": "each", "type": "loop", "with": {**loop, "blocks": []}}]})
    assert response.status_code == 422
    assert problem in response.json()["message"]


DELAYED: dict[str, Any] = {
    "name": "Remind later",
    "trigger": {"type": "api"},
    "blocks": [
        {"id": "before", "type": "transform", "with": {"value": "{{ trigger.data.n }}"}},
        {"id": "wait", "type": "delay", "with": {"for": "1h"}},
        {"id": "after", "type": "transform", "with": {"value": "{{ before + 1 }}"}},
        {"id": "done", "type": "respond", "with": {"body": {"n": "{{ after }}"}}},
    ],
}


def wake(client: TestClient, reflow: Reflow) -> None:
    portal = client.portal
    assert portal is not None
    portal.call(reflow.periodic.run_once, "wake waiting")


def test_a_delay_waits_without_a_worker_and_resumes_when_its_time_comes(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(DELAYED)
    started = client.post("/run/workflow?wait=10",
                          json={"workflowId": workflow_id, "userId": user_id, "data": {"n": 1}})
    assert started.status_code == 202 and started.json()["status"] == "waiting"
    execution_id = started.json()["executionId"]
    waiting = execution_log(client, execution_id)
    assert waiting["status"] == "waiting" and not waiting["finished"]
    assert [(s["blockId"], s["status"]) for s in waiting["steps"]] == [
        ("before", "succeeded"), ("wait", "waiting")]
    assert not reflow.worker.running  # no slot held, nothing in memory
    assert client.portal.call(reflow.store.waiting)[0] == 1  # type: ignore[union-attr]
    assert "reflow_waiting_executions 1.0" in client.get("/metrics").text

    clock.advance(HOUR - 60)
    wake(client, reflow)
    assert execution_log(client, execution_id)["status"] == "waiting"

    clock.advance(60)
    wake(client, reflow)
    done = wait_finished(client, execution_id)
    assert done["status"] == "succeeded" and done["output"] == {"n": 2}
    wait_step = next(s for s in done["steps"] if s["blockId"] == "wait")
    assert wait_step["status"] == "succeeded"
    assert wait_step["output"]["resumedAt"] >= wait_step["output"]["until"]
    assert [s["blockId"] for s in done["steps"]] == ["before", "wait", "after", "done"]


def test_a_run_waited_for_answers_202_waiting_with_what_it_responded_before_the_delay(
    client: TestClient, installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed({
        "name": "Answer, then follow up", "trigger": {"type": "api"},
        "blocks": [{"id": "ack", "type": "respond", "with": {"body": {"queued": True}}},
                   {"id": "later", "type": "delay", "with": {"for": "1d"}}]})
    response = client.post("/run/workflow?wait=10", json={
        "workflowId": workflow_id, "userId": user_id, "data": {}})
    assert response.status_code == 202
    assert response.json()["status"] == "waiting"
    assert response.json()["output"] == {"queued": True}


def test_a_rerun_from_a_block_after_a_delay_does_not_wait_again(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(DELAYED)
    execution_id = run(client, workflow_id, user_id, {"n": 5})["executionId"]
    clock.advance(HOUR)
    wake(client, reflow)
    wait_finished(client, execution_id)
    rerun = client.post(f"/workflows/{workflow_id}/rerun/{execution_id}",
                        json={"from": "after", "wait": 10})
    assert rerun.status_code == 200, rerun.text
    assert rerun.json()["status"] == "succeeded" and rerun.json()["output"] == {"n": 6}


def test_a_waiting_execution_is_cancelled_at_once(
    client: TestClient, installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(DELAYED)
    execution_id = run(client, workflow_id, user_id, {"n": 1})["executionId"]
    cancelled = client.post(f"/executions/{execution_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    detail = execution_log(client, execution_id)
    assert detail["status"] == "cancelled"
    assert detail["error"]["message"] == "cancelled while it waited"


def test_a_delay_until_a_past_time_goes_on_at_once_and_a_bad_time_fails_the_step(
    client: TestClient, installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed({
        "name": "Until", "trigger": {"type": "api"},
        "blocks": [{"id": "wait", "type": "delay", "with": {"until": "{{ trigger.data.at }}"}},
                   {"id": "done", "type": "respond", "with": {"body": "{{ wait }}"}}]})
    past = run(client, workflow_id, user_id, {"at": "2020-01-01T00:00:00Z"})
    assert past["status"] == "succeeded"
    assert past["output"]["until"] == "2020-01-01T00:00:00.000Z"
    bad = run(client, workflow_id, user_id, {"at": "next tuesday"})
    assert bad["status"] == "failed" and "ISO 8601" in bad["error"]["message"]


def test_a_delay_needs_exactly_one_of_for_and_until(client: TestClient) -> None:
    for with_ in ({}, {"for": "1h", "until": "2030-01-01T00:00:00Z"}, {"for": "soon"}):
        response = client.post("/workflows", json={
            "name": "Bad delay", "trigger": {"type": "api"},
            "blocks": [{"id": "wait", "type": "delay", "with": with_}]})
        assert response.status_code == 422, with_
        assert "blocks[0].with.for" in response.json()["message"]


def test_delays_inside_a_loop_wait_per_item_and_resume_without_repeating_finished_items(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]], target: Target,
) -> None:
    workflow_id, user_id = installed({
        "name": "Drip", "trigger": {"type": "api"},
        "blocks": [{"id": "each", "type": "loop", "with": {
            "over": "{{ trigger.data.items }}", "concurrency": 2, "blocks": [
                {"id": "call", "type": "http",
                 "with": {"method": "POST", "url": target.url, "json": {"n": "{{ item.n }}"}}},
                {"id": "pause", "type": "delay", "with": {"for": "{{ item.n }}m"}},
            ]}},
            {"id": "done", "type": "respond", "with": {"body": "{{ each.call.body.n }}"}}],
    })
    execution_id = run(client, workflow_id, user_id, items(1, 2, 3))["executionId"]
    assert execution_log(client, execution_id)["status"] == "waiting"
    assert target.calls == {1: 1, 2: 1}  # two lanes, each waiting on its item

    for _ in range(6):
        clock.advance(60)
        wake(client, reflow)
        if execution_log(client, execution_id)["finished"]:
            break
        wait_until_not_running(client, execution_id)
    done = wait_finished(client, execution_id)
    assert done["status"] == "succeeded" and done["output"] == [1, 2, 3]
    assert target.calls == {1: 1, 2: 1, 3: 1}


def wait_until_not_running(client: TestClient, execution_id: str) -> None:
    """Until a resumed execution is done running for now (waiting again, or finished)."""
    for _ in range(500):
        if execution_log(client, execution_id)["status"] in ("waiting", "succeeded", "failed"):
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"execution {execution_id} kept running")


def test_a_restart_during_a_delay_loses_nothing(
    make_settings: Callable[..., Settings], clock: ManualClock,
) -> None:
    settings = make_settings()
    with serving_reflow(settings, clock) as (_, client):
        workflow = client.post("/workflows", json=DELAYED).json()["workflowId"]
        user = client.post("/users", json={"username": "later@example.com"}).json()["userId"]
        client.put("/workflows/activate", json={"userId": user, "workflowId": workflow})
        execution_id = run(client, workflow, user, {"n": 41})["executionId"]
        assert execution_log(client, execution_id)["status"] == "waiting"
    clock.advance(HOUR)
    # A new process on the same database: its wake job finds the execution due.
    with serving_reflow(settings, clock) as (reflow, client):
        wake(client, reflow)
        done = wait_finished(client, execution_id)
        assert done["status"] == "succeeded" and done["output"] == {"n": 42}
