"""A real `reflow serve`, killed with SIGKILL under load, restarted: nothing acknowledged is lost.

Every acknowledged execution must reach a final state with all its steps, and no step
that was recorded as finished before the crash may run again after it.
"""

from __future__ import annotations

import base64
import json
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from support import free_port, json_handler, serving, start_serve, stop_serve

pytestmark = pytest.mark.e2e

KEY = "rf_e2e_key_0123456789abcdef"
HEADERS = {"authorization": f"bearer {KEY}", "x-api-version": "2025-09"}
RUNS = 120


# Calls per Idempotency-Key seen by the side-effect target.
CALLS: Counter[str] = Counter()
_CALLS_LOCK = threading.Lock()


def _count(request: BaseHTTPRequestHandler) -> None:
    # Slow enough that the kill lands while some calls are in flight.
    request.rfile.read(int(request.headers.get("content-length", 0)))
    with _CALLS_LOCK:
        CALLS[request.headers.get("idempotency-key", "")] += 1
    time.sleep(0.02)


@pytest.fixture
def target() -> Iterator[str]:
    """The side-effect target on 127.0.0.1."""
    CALLS.clear()
    with serving(json_handler(_count)) as base:
        yield base


def _workflow(path: Path, target: str) -> None:
    path.write_text(json.dumps({
        "name": "Crash test",
        "trigger": {"type": "api"},
        "blocks": [
            {"id": "prepare", "type": "transform", "with": {"value": "{{ trigger.data.n * 2 }}"}},
            {"id": "call", "type": "http", "with": {
                "method": "POST", "url": f"{target}/side-effect", "json": {"n": "{{ prepare }}"},
            }},
            {"id": "after", "type": "transform", "with": {"value": "{{ call.body.ok }}"}},
            {"id": "done", "type": "respond", "with": {"body": {"n": "{{ trigger.data.n }}"}}},
        ],
    }))


def _start(tmp: Path, port: int, workflow: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {
        "REFLOW_DATABASE_URL": f"sqlite:///{tmp / 'reflow.db'}",
        "REFLOW_BOOTSTRAP_KEY": KEY,
        "REFLOW_HTTP_ALLOW_NETWORKS": "127.0.0.0/8",
        "REFLOW_DEV_KEY_FILE": str(tmp / "dev-key"),
        "REFLOW_SECRET_KEY": base64.urlsafe_b64encode(bytes(range(32))).decode(),
    }
    return start_serve(["--apply", str(workflow), "--demo-user", "crash@example.com"],
                       env, port, log)


def _finished_http_steps(db: Path) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT execution_id FROM steps WHERE block_id = 'call' AND status = 'succeeded'"
        ).fetchall()
    return {row[0] for row in rows}


def _load_until_killed(base: str, server: subprocess.Popen[bytes]) -> list[str]:
    """Send runs from 8 clients; SIGKILL the server halfway. Returns the acknowledged ids."""
    acknowledged: list[str] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        body = {"workflowName": "Crash test", "userId": "crash@example.com", "data": {"n": n}}
        try:
            response = httpx.post(f"{base}/run/workflow", json=body, headers=HEADERS, timeout=5)
        except httpx.TransportError:
            return  # not acknowledged: the server died first
        if response.status_code == 200:
            with lock:
                acknowledged.append(response.json()["executionId"])

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(run, n) for n in range(RUNS)]
        deadline = time.monotonic() + 30
        while len(acknowledged) < RUNS // 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        for future in futures:
            future.result()
    return acknowledged


def _wait_finished(base: str, ids: list[str], timeout: float) -> dict[str, Any]:
    """Each execution's detail once it is final; fails if some never finish."""
    pending, details = set(ids), {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for execution_id in list(pending):
            data = httpx.get(f"{base}/logs/{execution_id}", headers=HEADERS).json()["data"]
            if data["finished"]:
                details[execution_id] = data
                pending.discard(execution_id)
        time.sleep(0.1)
    assert not pending, f"{len(pending)} acknowledged executions never finished"
    return details


def test_killed_server_resumes_every_acknowledged_execution_without_repeating_steps(
    tmp_path: Path, target: str, request: pytest.FixtureRequest
) -> None:
    workflow = tmp_path / "crash.json"
    _workflow(workflow, target)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("ab")
    request.addfinalizer(log.close)

    acknowledged = _load_until_killed(base, _start(tmp_path, port, workflow, log))
    assert len(acknowledged) >= RUNS // 2
    finished_before = _finished_http_steps(tmp_path / "reflow.db")
    calls_before = dict(CALLS)

    server = _start(tmp_path, port, workflow, log)
    try:
        details = _wait_finished(base, acknowledged, 60)
    finally:
        stop_serve(server)

    for execution_id, data in details.items():
        assert data["status"] == "succeeded", (data["error"], data["results"])
        blocks = [step["blockId"] for step in data["steps"]]
        assert blocks == ["prepare", "call", "after", "done"], (execution_id, blocks)
        seqs = [step["seq"] for step in data["steps"]]
        assert len(set(seqs)) == len(seqs)
        key = f"{execution_id}:call"
        if execution_id in finished_before:
            # Recorded as finished before the crash: it must not have run again after it.
            assert CALLS[key] == calls_before.get(key) == 1, execution_id
        else:
            assert CALLS[key] >= 1
