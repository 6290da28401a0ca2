"""Scale-out on PostgreSQL, as real processes: one API process and three workers.

A bounded stream of runs goes to the API process (`serve --no-worker`); one worker is killed
with SIGKILL while it runs executions. Every acknowledged execution must finish exactly
once with all its steps: each recorded step's call reached the target once, and only a call
in flight at the kill may arrive twice, with the same Idempotency-Key. The other workers
then stop on SIGTERM and exit 0.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pg_support import truncate
from support import (
    SERVE_HEADERS,
    SERVE_KEY,
    CallCounter,
    free_port,
    side_effect_workflow,
    start_serve,
    start_worker,
    stop_serve,
    wait_all_finished,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

RUNS = 150
WORKERS = 3
LEASE_SECONDS = 3


@pytest.fixture
def target_delay() -> float:
    """The target answers slow enough that the killed worker holds calls."""
    return 0.05


def _env(database_url: str, tmp: Path) -> dict[str, str]:
    return {
        "REFLOW_DATABASE_URL": database_url,
        "REFLOW_BOOTSTRAP_KEY": SERVE_KEY,
        "REFLOW_HTTP_ALLOW_NETWORKS": "127.0.0.0/8",
        "REFLOW_DEV_KEY_FILE": str(tmp / "dev-key"),
        "REFLOW_SECRET_KEY": base64.urlsafe_b64encode(bytes(range(32))).decode(),
        "REFLOW_LEASE_SECONDS": str(LEASE_SECONDS),
        "REFLOW_WORKER_CONCURRENCY": "16",
        "REFLOW_SHUTDOWN_GRACE": "5",
    }


def _load_and_kill(
    base: str, database_url: str, candidates: dict[str, subprocess.Popen[bytes]],
    counter: CallCounter,
) -> tuple[list[str], str, int]:
    """Send RUNS runs from 8 clients; once calls flow, SIGKILL a candidate worker that
    holds running executions. Returns the acknowledged ids, the killed owner and how many
    running executions it held when killed."""
    acknowledged: list[str] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        body = {"workflowName": "Scale test", "userId": "scale@example.com", "data": {"n": n}}
        response = httpx.post(f"{base}/run/workflow", json=body, headers=SERVE_HEADERS, timeout=10)
        assert response.status_code == 200, response.text
        with lock:
            acknowledged.append(response.json()["executionId"])

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(run, n) for n in range(RUNS)]
        victim, held = _kill_one_holding_executions(database_url, candidates, counter)
        for future in futures:
            future.result()
    return acknowledged, victim, held


def _kill_one_holding_executions(
    database_url: str, candidates: dict[str, subprocess.Popen[bytes]], counter: CallCounter
) -> tuple[str, int]:
    """SIGKILL a candidate caught holding running executions: each is stopped (SIGSTOP),
    its commits already sent given time to land, and its running executions counted;
    killed if it holds any, let go on (SIGCONT) otherwise. The owner and the count."""
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, "no worker was ever caught holding an execution"
        if counter.total() < RUNS // 4:
            time.sleep(0.005)
            continue
        holding = _running_by_owner(database_url)
        for owner, process in candidates.items():
            if not holding.get(owner):
                continue
            process.send_signal(signal.SIGSTOP)
            time.sleep(0.1)  # a commit it sent before stopping lands meanwhile
            held = _running_by_owner(database_url).get(owner, 0)
            if held:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                return owner, held
            process.send_signal(signal.SIGCONT)


def _running_by_owner(database_url: str) -> dict[str, int]:
    """Running executions per lease owner (read past reflow)."""
    return asyncio.run(_fetch_pairs(
        database_url, "SELECT lease_owner, count(*) FROM executions WHERE status = 'running' "
        "AND lease_owner IS NOT NULL GROUP BY lease_owner"))


async def _fetch_pairs(database_url: str, query: str, *args: Any) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(query, *args)
    finally:
        await connection.close()
    return {row[0]: row[1] for row in rows}


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
    return asyncio.run(_fetch_pairs(
        database_url, "SELECT id, resumes FROM executions WHERE id = ANY($1::text[])", ids))


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
        started = [start_worker(env, tmp_path / f"worker{i}.out", log,
                                 *(["--metrics-port", str(metrics_port)] if i == 0 else []))
                   for i in range(WORKERS)]
        workers = [process for process, _ in started]
        # Any but the one serving metrics (checked below) may be the one killed.
        candidates = {owner: process for process, owner in started[1:]}
        acknowledged, victim, held = _load_and_kill(base, postgres_url, candidates, counter)
        survivors = [p for p in workers if p is not candidates[victim]]
        assert len(acknowledged) == RUNS
        details = wait_all_finished(base, SERVE_HEADERS, acknowledged, 60 + LEASE_SECONDS)

        # An API-only process answers ?wait= once a worker committed the end (a NOTIFY).
        waited = httpx.post(f"{base}/run/workflow", params={"wait": 10}, headers=SERVE_HEADERS,
                            json={"workflowName": "Scale test", "userId": "scale@example.com",
                                  "data": {"n": 1000}}, timeout=15)
        assert waited.status_code == 200, waited.text
        assert (waited.json()["status"], waited.json()["output"]) == ("succeeded", {"n": 1000})

        _check_worker_operations(f"http://127.0.0.1:{metrics_port}")
        for worker in survivors:
            worker.send_signal(signal.SIGTERM)
        assert [worker.wait(30) for worker in survivors] == [0] * (WORKERS - 1)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        stop_serve(api)

    resumes = _resumes(postgres_url, acknowledged)
    # Each running execution the killed worker held was taken over by another worker.
    assert sum(resumes.values()) >= held >= 1, (held, resumes)
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
