"""The engine in supervised executor processes: a run that crashes, exhausts memory or hangs
its executor ends as failed with a message naming its block, and nothing else stops.

These start real executor processes (REFLOW_EXECUTOR_PROCESSES=1), as ``serve`` does.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from reflow.clock import ManualClock
from reflow.services import Reflow
from reflow.settings import Settings
from support import (
    ORDER_DATA,
    ORDER_OUTPUT,
    SlowTarget,
    execution_log,
    heavy_workflow,
    other_team_runs_meanwhile,
    start_run,
    wait_finished,
)

# A string doubled until it passes the 512 MiB address-space limit: the Rust allocator
# aborts the executor (SIGABRT) before the engine's budget can say anything.
HUGE_STRING = '{{ $length($reduce([1..40], function($a, $i) {$a & $a}, "x")) }}'
# An object nested 50,000 deep: converting it overflows the native stack (SIGSEGV).
DEEP_VALUE = '{{ $reduce([1..50000], function($acc, $i) {{"a": $acc}}, {}) }}'


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """One executor process under a 512 MiB limit."""
    return make_settings(
        executor_processes=1, executor_memory_limit="512MiB", executor_hang_timeout=10,
        http_allow_networks="127.0.0.0/8",
    )


def test_runs_answer_the_same_through_an_executor_process(
    client: TestClient, installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed()
    response = client.post("/run/workflow", params={"wait": 30}, json={
        "workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA})
    assert response.status_code == 200, response.text
    assert response.json()["output"] == ORDER_OUTPUT
    source = response.json()["executionId"]
    rerun = client.post(f"/workflows/{workflow_id}/rerun/{source}", params={"wait": 30},
                        json={"from": "total"})
    assert rerun.status_code == 200, rerun.text
    assert rerun.json()["output"] == ORDER_OUTPUT
    data = wait_finished(client, rerun.json()["executionId"])
    assert [(r["connectorId"], r["reused"]) for r in data["results"]] == [
        ("label", True), ("total", False), ("done", False)]


def test_a_stop_signal_sent_to_the_whole_process_group_leaves_executors_running(
    client: TestClient, reflow: Reflow, installed: Callable[..., tuple[str, str]],
) -> None:
    # systemd and a terminal's Ctrl+C signal every process of the group: the parent stops
    # its executors itself, after the grace, so they must not end on their own.
    workflow_id, user_id = installed()
    body = {"workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA}
    assert client.post("/run/workflow", params={"wait": 30}, json=body).status_code == 200
    [executor] = reflow.worker.executor._executors  # type: ignore[attr-defined]
    process = executor.process
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        os.kill(process.pid, stop_signal)
    response = client.post("/run/workflow", params={"wait": 30}, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == ORDER_OUTPUT
    assert executor.process is process and process.returncode is None


@pytest.mark.parametrize(("expression", "signal"), [(HUGE_STRING, "SIGABRT"),
                                                    (DEEP_VALUE, "SIGSEGV")])
def test_a_run_that_crashes_its_executor_fails_after_its_resumes_and_others_keep_running(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    other_team_headers: dict[str, str], reflow: Reflow, expression: str, signal: str,
) -> None:
    execution_id = start_run(client, *installed(heavy_workflow(expression, "Greedy")))
    other_team_runs_meanwhile(client, other_team_headers)
    data = wait_finished(client, execution_id, timeout=60)
    assert data["status"] == "failed"
    assert data["error"]["blockId"] == "heavy"
    message = data["error"]["message"]
    assert "block 'heavy' stopped its executor process 3 times" in message
    assert signal in message and "not resumed again" in message
    # The pure step before it rode in a commit that never came; the log shows the culprit.
    assert [(r["connectorId"], r["error"]) for r in data["results"]] == [("heavy", message)]
    stored = client.portal.call(  # type: ignore[union-attr]
        reflow.store.get_execution, _team_of(client, reflow), execution_id)
    assert stored is not None and stored.resumes == 3


def _team_of(client: TestClient, reflow: Reflow) -> str:
    team = client.portal.call(reflow.keys.first_team)  # type: ignore[union-attr]
    assert team is not None
    return team.id


def test_executions_sharing_the_executor_with_a_crash_continue_without_counting_a_resume(
    client: TestClient, installed: Callable[..., tuple[str, str]], slow_target: SlowTarget,
    reflow: Reflow,
) -> None:
    innocent = start_run(client, *installed(slow_target.workflow()))
    wait_until_running(client, innocent)
    culprit = start_run(client, *installed(heavy_workflow(DEEP_VALUE, "Greedy")))
    assert wait_finished(client, culprit, timeout=60)["status"] == "failed"
    slow_target.release.set()
    data = wait_finished(client, innocent, timeout=30)
    assert data["status"] == "succeeded"
    assert data["results"][-1]["data"][0][0]["json"] == {"slow": "done"}
    stored = client.portal.call(  # type: ignore[union-attr]
        reflow.store.get_execution, _team_of(client, reflow), innocent)
    assert stored is not None and stored.resumes == 0


def wait_until_running(client: TestClient, execution_id: str) -> None:
    """The execution's row says running (it was handed to the executor)."""
    assert execution_log(client, execution_id)["status"] == "running"


def test_a_burst_past_the_executors_capacity_runs_every_execution(
    client: TestClient, reflow: Reflow, installed: Callable[..., tuple[str, str]],
) -> None:
    # Runs answered at once all pass the worker's concurrency check before any is spawned:
    # the executor gets more jobs than its capacity, and must start the rest as room frees
    # (they once waited for an executor to be replaced, which never came).
    workflow_id, user_id = installed()
    team = client.portal.call(reflow.keys.team, None)  # type: ignore[union-attr]
    count = reflow.settings.worker_concurrency + 20

    async def burst() -> list[str]:
        started = await asyncio.gather(*(
            reflow.runs.run(team, workflow_id, user_id, ORDER_DATA) for _ in range(count)))
        return [s.execution_id for s in started]

    execution_ids = client.portal.call(burst)  # type: ignore[union-attr]
    for execution_id in execution_ids:
        assert wait_finished(client, execution_id)["output"] == ORDER_OUTPUT


def test_loops_and_delays_run_the_same_through_an_executor_process(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]],
) -> None:
    # The executor process reads the test's clock (an offset sent with each job).
    workflow_id, user_id = installed({
        "name": "Loop then wait", "trigger": {"type": "api"},
        "blocks": [
            {"id": "each", "type": "loop", "with": {"over": [1, 2, 3], "concurrency": 2,
                                                    "blocks": [
                {"id": "square", "type": "transform", "with": {"value": "{{ item * item }}"}},
            ]}},
            {"id": "wait", "type": "delay", "with": {"for": "2h"}},
            {"id": "done", "type": "respond", "with": {"body": "{{ each.square }}"}},
        ]})
    started = client.post("/run/workflow", params={"wait": 30}, json={
        "workflowId": workflow_id, "userId": user_id, "data": {}})
    assert started.status_code == 202 and started.json()["status"] == "waiting"
    execution_id = started.json()["executionId"]
    clock.advance(7200)
    assert client.portal is not None
    client.portal.call(reflow.periodic.run_once, "wake waiting")
    done = wait_finished(client, execution_id, timeout=30)
    assert done["status"] == "succeeded" and done["output"] == [1, 4, 9]
    assert sorted((s["blockId"], s["item"]) for s in done["steps"] if s["item"]) == [
        ("square", "0"), ("square", "1"), ("square", "2")]
