"""Two reflow processes on one PostgreSQL database, as services see each other: a key
revoked on one stops working on the other at once (a hint, not the 5 s cache), and an
API-only process waits for an execution another process runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from pg_support import truncate_async
from reflow.domain.records import Team, User
from reflow.errors import Unauthorized
from reflow.services import Reflow
from reflow.services.workflows import definition_from_document
from reflow.settings import load_settings
from support import TEST_SECRET_KEY, eventually

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

# Far below the key cache's 5 s: only the hint can make it this fast.
HINT_BOUND_S = 1.0
# The worker's poll interval in the lost-hint test.
POLL_S = 0.3


@pytest.fixture
async def two(
    postgres_url: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Opens Reflows on the emptied session database (each as another process would)."""
    await truncate_async(postgres_url)
    opened: list[Reflow] = []

    async def open_one(*, worker: bool) -> Reflow:
        settings = load_settings(database_url=postgres_url, secret_key=TEST_SECRET_KEY,
                                 dev_key_file=tmp_path / f"key{len(opened)}",
                                 executor_processes=0)
        reflow = Reflow.open(settings)
        opened.append(reflow)
        await reflow.start(worker=worker)
        return reflow

    try:
        yield open_one
    finally:
        for reflow in opened:
            await reflow.close()


async def echo_installed(reflow: Reflow) -> tuple[Team, User]:
    """A team whose user has "Echo" (answers its trigger data) installed."""
    team = await reflow.keys.create_team("acme")
    user = await reflow.users.create(team, "ann@example.com", None)
    await reflow.workflows.apply(team, definition_from_document({
        "name": "Echo", "trigger": {"type": "api"},
        "blocks": [{"id": "done", "type": "respond", "with": {"body": "{{ trigger.data }}"}}],
    }))
    await reflow.workflows.activate(team, user.id, "Echo")
    return team, user


async def test_a_key_revoked_on_one_process_stops_working_on_another_at_once(
    two: Callable[..., Any],
) -> None:
    here, there = await two(worker=False), await two(worker=False)
    team = await here.keys.create_team("acme")
    created = await here.keys.create_key(team, "backend")
    assert (await there.keys.authenticate(created.raw)).id == team.id  # now cached there
    revoked_at = time.monotonic()
    await here.keys.revoke_key(team, created.key.id)
    while True:
        try:
            await there.keys.authenticate(created.raw)
        except Unauthorized:
            break
        assert time.monotonic() - revoked_at < HINT_BOUND_S, "still accepted: no hint came"
        await asyncio.sleep(0.01)


async def test_an_api_only_process_queues_and_a_worker_process_runs_it(
    two: Callable[..., Any],
) -> None:
    api = await two(worker=False)
    team, user = await echo_installed(api)
    worker = await two(worker=True)
    started = await api.runs.run(team, "Echo", user.id, {"n": 7}, wait=10)
    assert started.finished is not None, "the API process did not see the worker's end"
    assert started.finished.status.value == "succeeded"
    # The worker forgets the job when its future settles, just after the commit the API saw.
    await eventually(lambda: worker.worker.running == {})


async def test_a_lost_hint_delays_a_queued_run_by_at_most_the_poll_interval(
    two: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await two(worker=False)
    team, user = await echo_installed(api)
    worker = await two(worker=True)
    worker.worker.poll_interval = POLL_S
    await asyncio.sleep(2 * POLL_S)  # the worker is idle, waiting for a hint or its poll
    # Every hint to the worker is lost from now on: only its poll can find the run.
    monkeypatch.setattr(worker.worker, "wake", lambda: None)
    started = await api.runs.run(team, "Echo", user.id, {"n": 7})
    queued_at = time.monotonic()
    await api.dispatch.wait(team.id, started.execution_id, 10)
    assert await api.logs.status(team, started.execution_id) == "succeeded"
    assert time.monotonic() - queued_at < POLL_S + 1.0
