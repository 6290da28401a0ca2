"""A real `reflow serve` given an execution that crashes whatever runs it: the server stays
up, other runs are answered meanwhile, and the execution ends failed instead of looping."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest
from test_crash_resume import _start

from support import SERVE_HEADERS, free_port, wait_all_finished

pytestmark = pytest.mark.e2e

# Converting an object nested 50,000 deep overflows the native stack (SIGSEGV): before
# executor processes, this killed `serve`, and every restart resumed it and died again.
DEEP_VALUE = '{{ $reduce([1..50000], function($acc, $i) {{"a": $acc}}, {}) }}'


def _workflows(folder: Path) -> Path:
    folder.mkdir()
    (folder / "poison.json").write_text(json.dumps({
        "name": "Poison", "trigger": {"type": "api"},
        "blocks": [{"id": "deep", "type": "transform", "with": {"value": DEEP_VALUE}}],
    }))
    (folder / "steady.json").write_text(json.dumps({
        "name": "Steady", "trigger": {"type": "api"},
        "blocks": [{"id": "done", "type": "respond",
                    "with": {"body": {"twice": "{{ trigger.data.n * 2 }}"}}}],
    }))
    return folder


def test_a_run_that_crashes_its_executor_ends_failed_while_serve_keeps_answering(
    tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("ab")
    request.addfinalizer(log.close)
    server = _start(tmp_path, port, _workflows(tmp_path / "workflows"), log)
    try:
        poison = httpx.post(f"{base}/run/workflow", headers=SERVE_HEADERS, json={
            "workflowName": "Poison", "userId": "crash@example.com", "data": {}})
        assert poison.status_code == 200, poison.text
        for n in range(5):  # answered while the executor crashes and is replaced
            steady = httpx.post(f"{base}/run/workflow", params={"wait": 30}, headers=SERVE_HEADERS,
                                json={"workflowName": "Steady", "userId": "crash@example.com",
                                      "data": {"n": n}}, timeout=35)
            assert steady.status_code == 200, steady.text
            assert steady.json()["output"] == {"twice": n * 2}
        [failed] = wait_all_finished(base, SERVE_HEADERS, [poison.json()["executionId"]],
                                     60).values()
        assert failed["status"] == "failed"
        assert "stopped its executor process 3 times" in failed["error"]["message"]
        assert "SIGSEGV" in failed["error"]["message"]
        assert server.poll() is None
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
