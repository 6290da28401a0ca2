"""Scale-out on PostgreSQL, as real processes: one API process and three workers.

A bounded stream of runs goes to the API process (`serve --no-worker`); one worker is killed
with SIGKILL while it runs executions. Every acknowledged execution must finish exactly
once with all its steps: each recorded step's call reached the target once, and only a call
in flight at the kill may arrive twice, with the same Idempotency-Key. The other workers
then stop on SIGTERM and exit 0.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pg_support import truncate
from support import (
    CallCounter,
    free_port,
    json_handler,
    serving,
    side_effect_workflow,
    start_serve,
    stop_serve,
    wait_all_finished,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

KEY = "rf_e2e_key_0123456789abcdef"
HEADERS = {"authorization": f"bearer {KEY}", "x-api-version": "2025-09"}
RUNS = 150
WORKERS = 3
LEASE_SECONDS = 3



@pytest.fixture
def counter() -> CallCounter:
    """Calls per Idempotency-Key seen by the side-effect target."""
    return CallCounter()


@pytest.fixture
def target(counter: CallCounter) -> Iterator[str]:
    """The counting target on 127.0.0.1, slow enough that the killed worker holds calls."""
    with serving(json_handler(counter.handler(0.05))) as base:
        yield base


def _env(database_url: str, tmp: Path) -> dict[str, str]:
    return {
        "REFLOW_DATABASE_URL": database_url,
        "REFLOW_BOOTSTRAP_KEY": KEY,
        "REFLOW_HTTP_ALLOW_NETWORKS": "127.0.0.0/8",
        "REFLOW_DEV_KEY_FILE": str(tmp / "dev-key"),
        "REFLOW_SECRET_KEY": base64.urlsafe_b64encode(bytes(range(32))).decode(),
        "REFLOW_LEASE_SECONDS": str(LEASE_SECONDS),
        "REFLOW_WORKER_CONCURRENCY": "16",
        "REFLOW_SHUTDOWN_GRACE": "5",
    }


def _start_worker(
    env: dict[str, str], out: Path, log: IO[bytes], *args: str
) -> subprocess.Popen[bytes]:
    """A real `reflow worker ARGS`, waited for (bounded) until it says it runs."""
    with out.open("wb") as stdout:
        process = subprocess.Popen([sys.executable, "-m", "reflow", "worker", *args],
                                   env={**os.environ, **env}, stdout=stdout, stderr=log)
    deadline = time.monotonic() + 30
    while b"reflow worker running" not in out.read_bytes():
        assert process.poll() is None, Path(log.name).read_text()
        assert time.monotonic() < deadline, "reflow worker did not start in 30 s"
        time.sleep(0.05)
    return process


def _load_and_kill(
    base: str, victim: subprocess.Popen[bytes], counter: CallCounter
) -> list[str]:
    """Send RUNS runs from 8 clients; SIGKILL ``victim`` once calls are flowing."""
    acknowledged: list[str] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        body = {"workflowName": "Scale test", "userId": "scale@example.com", "data": {"n": n}}
        response = httpx.post(f"{base}/run/workflow", json=body, headers=HEADERS, timeout=10)
        assert response.status_code == 200, response.text
        with lock:
            acknowledged.append(response.json()["executionId"])

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(run, n) for n in range(RUNS)]
        deadline = time.monotonic() + 30
        while counter.total() < RUNS // 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        for future in futures:
            future.result()
    return acknowledged


def _check_worker_operations(base: str) -> None:
    """A worker started with --metrics-port answers /healthz, /readyz and /metrics."""
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{base}/readyz").json() == {"status": "ready"}
    text = httpx.get(f"{base}/metrics").text
    finished = sum(sample.value for family in text_string_to_metric_families(text)
                   if family.name == "reflow_executions"
                   for sample in family.samples if sample.name == "reflow_executions_total")
    assert finished > 0, text


def _resumes(database_url: str, ids: list[str]) -> dict[str, int]:
    """How often each execution was taken over after its worker died (read past reflow)."""
    import asyncio

    import asyncpg

    async def read() -> dict[str, int]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch(
                "SELECT id, resumes FROM executions WHERE id = ANY($1::text[])", ids)
        finally:
            await connection.close()
        return {row["id"]: row["resumes"] for row in rows}

    return asyncio.run(read())


def test_a_killed_worker_loses_nothing_and_repeats_only_a_call_in_flight(
    tmp_path: Path, target: str, counter: CallCounter, postgres_url: str,
    request: pytest.FixtureRequest,
) -> None:
    truncate(postgres_url)
    workflow = tmp_path / "scale.json"
    side_effect_workflow(workflow, "Scale test", target)
    env = _env(postgres_url, tmp_path)
    log = (tmp_path / "processes.log").open("ab")
    request.addfinalizer(log.close)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = start_serve(["--no-worker", "--apply", str(workflow), "--demo-user",
                       "scale@example.com"], env, port, log)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        metrics_port = free_port()
        workers = [_start_worker(env, tmp_path / f"worker{i}.out", log,
                                 *(["--metrics-port", str(metrics_port)] if i == 1 else []))
                   for i in range(WORKERS)]
        acknowledged = _load_and_kill(base, workers[0], counter)
        assert len(acknowledged) == RUNS
        details = wait_all_finished(base, HEADERS, acknowledged, 60 + LEASE_SECONDS)

        # An API-only process answers ?wait= once a worker committed the end (a NOTIFY).
        waited = httpx.post(f"{base}/run/workflow", params={"wait": 10}, headers=HEADERS,
                            json={"workflowName": "Scale test", "userId": "scale@example.com",
                                  "data": {"n": 1000}}, timeout=15)
        assert waited.status_code == 200, waited.text
        assert (waited.json()["status"], waited.json()["output"]) == ("succeeded", {"n": 1000})

        _check_worker_operations(f"http://127.0.0.1:{metrics_port}")
        for worker in workers[1:]:
            worker.send_signal(signal.SIGTERM)
        assert [worker.wait(30) for worker in workers[1:]] == [0] * (WORKERS - 1)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        stop_serve(api)

    resumes = _resumes(postgres_url, acknowledged)
    assert sum(resumes.values()) >= 1, "the killed worker held no execution: nothing was shown"
    for execution_id, data in details.items():
        assert data["status"] == "succeeded", (data["error"], data["results"])
        blocks = [step["blockId"] for step in data["steps"]]
        assert blocks == ["prepare", "call", "after", "done"], (execution_id, blocks)
        calls = counter.calls.get(f"{execution_id}:call", 0)
        # Once; twice only for an execution taken over from the killed worker (its call was
        # in flight at the kill, so it was not recorded), with the same Idempotency-Key.
        assert calls == 1 or (calls == 2 and resumes[execution_id] >= 1), (execution_id, calls)
    assert set(counter.calls) == {f"{i}:call" for i in acknowledged} | {
        f"{waited.json()['executionId']}:call"}
