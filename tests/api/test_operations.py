"""Operations endpoints: /healthz, /readyz and /metrics answer probes and scrapers that
send neither an API key nor a version, and /metrics counts what this process ran."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from reflow import metrics
from reflow.api import create_app
from reflow.api.routes import health
from reflow.errors import StoreError
from reflow.ids import now_ms
from reflow.services import Reflow
from reflow.settings import Settings
from reflow.store.migrate import upgrade
from support import ORDER_DATA, ORDER_SUMMARY, SlowTarget, execution_log, wait_finished

FAILING: dict[str, Any] = {
    "name": "Always fails",
    "trigger": {"type": "api"},
    "blocks": [{"id": "stop", "type": "fail", "with": {"message": "asked to fail"}}],
}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """One execution at a time (so a second run queues), the slow local server reachable,
    and the shortest lease (renewed every third of a second)."""
    return make_settings(http_allow_networks="127.0.0.0/8", worker_concurrency=1,
                         lease_seconds=1)


def bare_get(client: TestClient, path: str) -> Any:
    """GET ``path`` without the client's API key and version header, as a probe sends it."""
    request = client.build_request("GET", path)
    del request.headers["authorization"]
    del request.headers["x-api-version"]
    return client.send(request)


def scrape(client: TestClient) -> Samples:
    """Every sample of ``GET /metrics`` by (name, labels)."""
    response = bare_get(client, "/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the process has not counted it yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def run(client: TestClient, workflow_id: str, user_id: str, **params: Any) -> str:
    """POST /run/workflow; its executionId."""
    response = client.post("/run/workflow", params=params, json={
        "workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA})
    assert response.status_code in (200, 202), response.text
    execution_id: str = response.json()["executionId"]
    return execution_id


# -- /healthz ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/health", "/2025-09/healthz"])
def test_healthz_answers_ok_without_key_or_version(client: TestClient, path: str) -> None:
    response = bare_get(client, path)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_operations_endpoints_are_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/health", "/healthz", "/readyz", "/metrics"} & set(paths)


# -- /readyz -------------------------------------------------------------------------------


def test_readyz_answers_ready_on_a_migrated_database(client: TestClient) -> None:
    response = bare_get(client, "/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_answers_503_naming_the_schema_of_a_database_behind_the_migrations(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'behind.db'}")
    upgrade(settings.database_url, "0002")
    reflow = Reflow.open(settings)
    # Not started: a process whose database is behind still answers its probes.
    with TestClient(create_app(reflow, manage=False)) as client:
        try:
            response = client.get("/readyz")
        finally:
            client.portal.call(reflow.close)  # type: ignore[union-attr]
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert "schema is at 0002" in body["message"]
    assert "reflow db upgrade" in body["message"]


def test_readyz_answers_503_with_the_store_error_message(
    client: TestClient, reflow: Reflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse() -> None:
        raise StoreError("connection refused")

    monkeypatch.setattr(reflow.store, "ping", refuse)
    response = bare_get(client, "/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "message": "connection refused"}


def test_readyz_answers_503_when_the_database_does_not_answer_in_time(
    client: TestClient, reflow: Reflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def hang() -> None:
        await asyncio.Event().wait()  # never set: only the route's timeout ends it

    monkeypatch.setattr(reflow.store, "ping", hang)
    monkeypatch.setattr(health, "READY_TIMEOUT", 0.05)
    response = bare_get(client, "/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable",
                               "message": "the database did not answer within 0.05 s"}


# -- /metrics ------------------------------------------------------------------------------


def test_metrics_count_finished_executions_by_status_and_workflow_and_their_steps(
    client: TestClient, installed: Callable[..., tuple[str, str]], settings: Settings
) -> None:
    summary_id, summary_user = installed(ORDER_SUMMARY)
    failing_id, failing_user = installed(FAILING)
    before = scrape(client)

    for _ in range(2):
        run(client, summary_id, summary_user, wait=10)
    run(client, failing_id, failing_user, wait=10)
    after = scrape(client)

    executions = "reflow_executions_total"
    assert value(after, executions, status="succeeded", workflow=summary_id) == 2
    assert value(after, executions, status="failed", workflow=failing_id) == 1
    assert value(after, executions, status="failed", workflow=summary_id) == 0

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("reflow_executions_started_total", mode="api") == 3
    # Three steps per order summary, one failed step for the failing workflow.
    steps = "reflow_step_duration_seconds_count"
    assert grew(steps, status="succeeded") == 6
    assert grew(steps, status="failed") == 1
    assert value(after, "reflow_running_executions") == 0
    # The PostgreSQL pool's connections are reported; SQLite has no pool.
    pool = {dict(labels)["state"]: v for (name, labels), v in after.items()
            if name == "reflow_db_pool_connections"}
    if settings.database_url.startswith("postgresql://"):
        assert pool["max"] == settings.database_pool_size
        assert pool["in_use"] + pool["idle"] >= 1
    else:
        assert pool == {}


def test_metrics_report_the_queue_depth_then_the_claim_of_what_was_queued(
    client: TestClient, installed: Callable[..., tuple[str, str]], slow_target: SlowTarget
) -> None:
    workflow_id, user_id = installed(slow_target.workflow())
    before = scrape(client)

    ids = [run(client, workflow_id, user_id) for _ in range(3)]
    assert [execution_log(client, i)["status"] for i in ids] == ["running", "queued", "queued"]
    waiting = scrape(client)
    assert value(waiting, "reflow_queue_depth") == 2
    assert value(waiting, "reflow_running_executions") == 1

    slow_target.release.set()
    for execution_id in ids:
        assert wait_finished(client, execution_id)["status"] == "succeeded"
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "reflow_queue_depth") == 0
    assert grew("reflow_executions_total", status="succeeded", workflow=workflow_id) == 3
    assert grew("reflow_claim_latency_seconds_count") == 2
    # One slot: each claim takes the one queued execution it has room for.
    assert grew("reflow_claim_batch_size_count") == 2
    assert grew("reflow_claim_batch_size_sum") == 2
    # Both waited at least until the first run's slow step was released.
    assert grew("reflow_claim_latency_seconds_sum") > 0


def test_metrics_count_an_execution_another_worker_took_over_once(
    client: TestClient, reflow: Reflow, installed: Callable[..., tuple[str, str]],
    slow_target: SlowTarget,
) -> None:
    workflow_id, user_id = installed(slow_target.workflow())
    lost = "reflow_lease_lost_total"
    before = value(scrape(client), lost)
    execution_id = run(client, workflow_id, user_id)

    async def take_over() -> list[str]:
        # As if this process had stalled past its lease: it lapses, another worker claims.
        store, now = reflow.store, now_ms()
        await store.renew_leases(reflow.worker.owner, [execution_id], 0)
        return [r.id for r in await store.claim_executions("other:1:abc", now, now + 60_000, 10)]

    assert client.portal.call(take_over) == [execution_id]  # type: ignore[union-attr]
    deadline = time.monotonic() + 5
    while value(scrape(client), lost) == before and time.monotonic() < deadline:
        time.sleep(0.05)  # the heartbeat finds it within a third of a second
    assert value(scrape(client), lost) - before == 1

    # Its last write is refused (LeaseLost): the same loss, not counted again.
    slow_target.release.set()
    deadline = time.monotonic() + 5
    while execution_id in reflow.worker.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert execution_id not in reflow.worker.running
    after = scrape(client)
    assert value(after, lost) - before == 1
    assert value(after, "reflow_executions_total", status="succeeded", workflow=workflow_id) == 0


def test_metrics_count_purged_executions(client: TestClient) -> None:
    before = value(scrape(client), "reflow_purged_executions_total")
    metrics.count_purged(3)
    metrics.count_purged(0)
    assert value(scrape(client), "reflow_purged_executions_total") - before == 3


def test_metrics_report_the_pool_of_a_store_that_has_one(
    client: TestClient, reflow: Reflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reflow.store, "pool_usage", lambda: (3, 2, 10), raising=False)
    try:
        samples = scrape(client)
    finally:
        metrics.POOL.clear()  # the registry is the process's: other tests see no pool
    pool = "reflow_db_pool_connections"
    assert [value(samples, pool, state=s) for s in ("in_use", "idle", "max")] == [3, 2, 10]


def test_metrics_still_answer_when_the_queue_depth_cannot_be_read(
    client: TestClient, reflow: Reflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse() -> int:
        raise StoreError("connection refused")

    monkeypatch.setattr(reflow.store, "queue_depth", refuse)
    samples = scrape(client)
    depth = value(samples, "reflow_queue_depth")
    assert depth != depth  # NaN: unknown, not zero
    assert ("reflow_running_executions", frozenset()) in samples

