"""A real `reflow serve` killed with SIGKILL while executions wait in a `delay` inside a
`loop`, restarted: every waiting execution resumes when its time comes, finishes, and no
item's call is sent twice (docs/workflows.md "Loops and delays")."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from support import SERVE_HEADERS, CallCounter, SqliteServe, wait_all_finished

pytestmark = pytest.mark.e2e

RUNS = 20
DELAY_S = 2


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
    serve = SqliteServe(tmp_path, ["--apply", str(workflow), "--demo-user", "drip@example.com"])
    serve.start()
    ids = []
    for _ in range(RUNS):
        response = httpx.post(f"{serve.base}/run/workflow", headers=SERVE_HEADERS, json={
            "workflowName": "Drip", "userId": "drip@example.com", "data": {}})
        assert response.status_code == 200, response.text
        ids.append(response.json()["executionId"])
    # Every execution reaches its delays, then the process dies without warning.
    deadline = time.monotonic() + 30
    while counter.total() < RUNS * 3:
        assert time.monotonic() < deadline, "the first calls did not all go out"
        time.sleep(0.05)
    serve.kill()

    serve.start()
    try:
        details = wait_all_finished(serve.base, SERVE_HEADERS, ids, timeout=60)
    finally:
        serve.stop()
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
