"""A real `reflow serve`, killed with SIGKILL under load, restarted: nothing acknowledged is lost.

Every acknowledged execution must reach a final state with all its steps, and no step
that was recorded as finished before the crash may run again after it.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import httpx
import pytest

from support import (
    SERVE_HEADERS,
    SERVE_KEY,
    CallCounter,
    free_port,
    side_effect_workflow,
    sqlite_serve_env,
    start_serve,
    stop_serve,
    wait_all_finished,
)

pytestmark = pytest.mark.e2e

RUNS = 120


@pytest.fixture
def target_delay() -> float:
    """The target answers slow enough that the kill lands mid-call."""
    return 0.02


def _start(tmp: Path, port: int, workflow: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = sqlite_serve_env(tmp, SERVE_KEY)
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
            response = httpx.post(f"{base}/run/workflow", json=body, headers=SERVE_HEADERS,
                                  timeout=5)
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


def test_killed_server_resumes_every_acknowledged_execution_without_repeating_steps(
    tmp_path: Path, target: str, counter: CallCounter, request: pytest.FixtureRequest
) -> None:
    workflow = tmp_path / "crash.json"
    side_effect_workflow(workflow, "Crash test", target)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("ab")
    request.addfinalizer(log.close)

    acknowledged = _load_until_killed(base, _start(tmp_path, port, workflow, log))
    assert len(acknowledged) >= RUNS // 2
    finished_before = _finished_http_steps(tmp_path / "reflow.db")
    calls_before = counter.snapshot()

    server = _start(tmp_path, port, workflow, log)
    try:
        details = wait_all_finished(base, SERVE_HEADERS, acknowledged, 60)
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
            assert counter.calls.get(key, 0) == calls_before.get(key) == 1, execution_id
        else:
            assert counter.calls.get(key, 0) >= 1
