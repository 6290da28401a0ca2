"""A real `reflow serve` killed with SIGKILL while executions wait in a `delay` inside a
`loop`, restarted: every waiting execution resumes when its time comes, finishes, and no
item's call is sent twice (docs/workflows.md "Loops and delays")."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import (
    CallCounter,
    free_port,
    json_handler,
    serving,
    sqlite_serve_env,
    start_serve,
    stop_serve,
    wait_all_finished,
)

pytestmark = pytest.mark.e2e

KEY = "rf_e2e_key_0123456789abcdef"
HEADERS = {"authorization": f"bearer {KEY}", "x-api-version": "2025-09"}
RUNS = 20
DELAY_S = 2


@pytest.fixture
def target(counter: CallCounter) -> Iterator[str]:
    with serving(json_handler(counter.handler(0))) as base:
        yield base


def _workflow(path: Path, target: str) -> None:
    """Per item: call the target, wait DELAY_S, call it again."""
    call = {"method": "POST", "url": f"{target}/items", "json": {"n": "{{ item }}"}}
    path.write_text(json.dumps({
        "name": "Drip",
        "trigger": {"type": "api"},
        "blocks": [{"id": "each", "type": "loop", "with": {
            "over": [1, 2, 3], "concurrency": 3, "blocks": [
                {"id": "first", "type": "http", "with": call},
                {"id": "pause", "type": "delay", "with": {"for": f"{DELAY_S}s"}},
                {"id": "second", "type": "http", "with": call},
            ]}}],
    }))


def test_a_kill_during_delays_loses_no_execution_and_repeats_no_call(
    tmp_path: Path, target: str, counter: CallCounter,
) -> None:
    workflow = tmp_path / "drip.json"
    _workflow(workflow, target)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = sqlite_serve_env(tmp_path, KEY)
    args = ["--apply", str(workflow), "--demo-user", "drip@example.com"]
    with (tmp_path / "serve.log").open("wb") as log:
        server = start_serve(args, env, port, log)
        ids = []
        for _ in range(RUNS):
            response = httpx.post(f"{base}/run/workflow", headers=HEADERS, json={
                "workflowName": "Drip", "userId": "drip@example.com", "data": {}})
            assert response.status_code == 200, response.text
            ids.append(response.json()["executionId"])
        # Every execution reaches its delays, then the process dies without warning.
        deadline = time.monotonic() + 30
        while counter.total() < RUNS * 3:
            assert time.monotonic() < deadline, "the first calls did not all go out"
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        server.wait(10)

        server = start_serve(args, env, port, log)
        try:
            details = wait_all_finished(base, HEADERS, ids, timeout=60)
        finally:
            stop_serve(server)
    assert {d["status"] for d in details.values()} == {"succeeded"}
    for detail in details.values():
        steps = {(s["blockId"], s["item"]): s for s in detail["steps"]}
        assert len(steps) == 1 + 3 * 3  # the loop, and three steps per item
        pause = steps[("pause", "0")]
        assert pause["status"] == "succeeded"
        assert pause["output"]["resumedAt"] >= pause["output"]["until"]
    # Two calls per item, each sent once (its own Idempotency-Key): none repeated.
    calls = counter.snapshot()
    assert len(calls) == RUNS * 3 * 2
    assert set(calls.values()) == {1}
