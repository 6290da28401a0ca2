"""Retention on every backend: windows (the workflow's, the team's, the deployment's),
counts, dropped step data, and what the purge never touches (docs/operations.md
"Retention"). Driven through RetentionService with a fixed clock."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_store import T0, Catalogue, add_catalogue, make_step, make_workflow

from reflow.clock import ManualClock
from reflow.domain.executions import ExecutionRecord, ExecutionStatus
from reflow.domain.records import Installation
from reflow.domain.retention import KeepSteps, Retention
from reflow.ids import new_object_id
from reflow.services.retention import PassKind, RetentionService
from reflow.store.base import Store

pytestmark = pytest.mark.anyio

DAY = 86_400_000
NOW = T0 + 30 * DAY
DEFAULT = 7 * 86_400.0  # seconds, as REFLOW_LOG_RETENTION


def _service(store: Store) -> RetentionService:
    return RetentionService(store, DEFAULT, ManualClock(NOW))


async def _stored(store: Store, cat: Catalogue, *records: ExecutionRecord) -> None:
    for record in records:
        await store.insert_execution(record)


async def _exists(store: Store, cat: Catalogue, record: ExecutionRecord) -> bool:
    return await store.get_execution(cat.team.id, record.id) is not None


def _finished(cat: Catalogue, stopped_at: int, **changes: object) -> ExecutionRecord:
    return cat.finished(ExecutionStatus.SUCCEEDED, stopped_at, created_at=stopped_at - 10,
                        steps=[make_step(0), make_step(1), make_step(2)], **changes)


async def test_an_execution_stopped_exactly_at_the_window_is_kept_and_one_ms_older_purged(
    store: Store,
) -> None:
    cat = await add_catalogue(store)
    at_edge = _finished(cat, NOW - 7 * DAY)
    older = _finished(cat, NOW - 7 * DAY - 1)
    await _stored(store, cat, at_edge, older)
    assert await _service(store).purge() is not None
    assert await _exists(store, cat, at_edge)
    assert not await _exists(store, cat, older)


async def test_queued_running_and_waiting_executions_are_never_purged(store: Store) -> None:
    cat = await add_catalogue(store)
    ancient = NOW - 20 * DAY
    unfinished = [cat.execution(status=status, created_at=ancient, started_at=ancient,
                                stopped_at=ancient + 1)  # a stale stop time, as on a resume
                  for status in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING,
                                 ExecutionStatus.WAITING)]
    failed = cat.finished(ExecutionStatus.FAILED, ancient)
    cancelled = cat.finished(ExecutionStatus.CANCELLED, ancient)
    await _stored(store, cat, *unfinished, failed, cancelled)
    report = await _service(store).purge()
    assert report.executions == 2
    for record in unfinished:
        assert await _exists(store, cat, record)


async def test_a_team_window_overrides_the_deployments_for_that_team_only(store: Store) -> None:
    long, short = await add_catalogue(store, "long"), await add_catalogue(store, "short")
    assert await store.set_team_retention(long.team.id, 30 * 86_400)
    assert await store.set_team_retention(short.team.id, 86_400)
    ten_days, two_days = NOW - 10 * DAY, NOW - 2 * DAY
    kept = _finished(long, ten_days)
    gone = [_finished(short, ten_days), _finished(short, two_days)]
    await _stored(store, long, kept, *gone)
    report = await _service(store).purge()
    assert report.executions == 2
    assert await _exists(store, long, kept)
    for record in gone:
        assert not await _exists(store, short, record)


async def test_a_workflow_window_wins_over_its_teams_in_both_directions(store: Store) -> None:
    cat = await add_catalogue(store)
    other, version = make_workflow(cat.team, "Invoices")
    await store.create_workflow(other, version)
    short, _ = make_workflow(cat.team, "Noisy")
    await store.create_workflow(short, replace(version, workflow_id=short.id))
    await store.set_workflow_retention(cat.team.id, other.id, Retention(window=30 * 86_400.0))
    await store.set_workflow_retention(cat.team.id, short.id, Retention(window=86_400.0))
    ten_days = NOW - 10 * DAY
    team_default = _finished(cat, ten_days)  # the team's 7 days: gone
    longer = _finished(cat, ten_days, workflow_id=other.id)  # its own 30 days: kept
    shorter = _finished(cat, NOW - 2 * DAY, workflow_id=short.id)  # its own 1 day: gone
    await _stored(store, cat, team_default, longer, shorter)
    service = _service(store)
    dry = await service.purge(dry_run=True)
    assert dry.executions == 2
    assert await _exists(store, cat, team_default)  # a dry run deletes nothing
    assert (await service.purge()).executions == 2
    assert await _exists(store, cat, longer)
    assert not await _exists(store, cat, team_default)
    assert not await _exists(store, cat, shorter)


async def test_a_workflow_count_keeps_its_newest_executions_and_never_an_unfinished_one(
    store: Store,
) -> None:
    cat = await add_catalogue(store)
    await store.set_workflow_retention(cat.team.id, cat.workflow.id, Retention(keep=3))
    hour = 3_600_000
    running = cat.execution(status=ExecutionStatus.RUNNING, created_at=NOW - 10 * hour)
    finished = [_finished(cat, NOW - n * hour) for n in range(9, 0, -1)]  # oldest first
    await _stored(store, cat, running, *finished)
    service = _service(store)
    assert (await service.purge(dry_run=True)).executions == 6
    report = await service.purge()
    assert report.executions == 6
    assert await _exists(store, cat, running)
    kept = [await _exists(store, cat, r) for r in finished]
    assert kept == [False] * 6 + [True] * 3


async def test_keep_steps_failed_drops_succeeded_steps_and_keeps_rows_and_failed_steps(
    store: Store,
) -> None:
    cat = await add_catalogue(store)
    await store.set_workflow_retention(cat.team.id, cat.workflow.id,
                                       Retention(keep_steps=KeepSteps.FAILED))
    succeeded = [_finished(cat, NOW - DAY + n) for n in range(5)]
    failed = cat.finished(ExecutionStatus.FAILED, NOW - DAY, steps=[make_step(0)])
    recent = _finished(cat, NOW - 1_000)  # within the lag: a commit may still be landing
    await _stored(store, cat, *succeeded, failed, recent)
    service = _service(store)
    assert (await service.purge(dry_run=True)).steps_dropped == 5
    report = await service.purge(batch=2)
    assert (report.executions, report.steps_dropped) == (0, 5)
    for record in succeeded:
        stored = await store.get_execution(cat.team.id, record.id)
        assert stored is not None
        assert stored.steps == []
        assert stored.status is ExecutionStatus.SUCCEEDED
    for record in (failed, recent):
        stored = await store.get_execution(cat.team.id, record.id)
        assert stored is not None
        assert len(stored.steps) == len(record.steps)
    # The cursor moved on: the next pass reads from there.
    plan = await service.plan()
    steps = [p for p in plan if p.kind is PassKind.STEPS]
    assert steps[0].since == NOW - 60_000


async def test_before_purges_every_finished_execution_before_it_whatever_the_windows(
    store: Store,
) -> None:
    first, second = await add_catalogue(store, "first"), await add_catalogue(store, "second")
    await store.set_team_retention(first.team.id, 365 * 86_400)
    old = [_finished(first, NOW - 3 * DAY), _finished(second, NOW - 3 * DAY)]
    await _stored(store, first, *old)
    service = _service(store)
    only_first = await service.purge(before=NOW - DAY, team_id=first.team.id)
    assert only_first.executions == 1
    assert await _exists(store, second, old[1])
    assert (await service.purge(before=NOW - DAY)).executions == 1


async def test_purging_in_small_batches_deletes_every_step_and_key(store: Store) -> None:
    cat = await add_catalogue(store)
    records = [_finished(cat, NOW - 10 * DAY + n) for n in range(25)]
    await _stored(store, cat, *records)
    report = await _service(store).purge(batch=4)
    assert report.executions == 25
    again = replace(records[0], steps=[])
    await store.insert_execution(again)
    stored = await store.get_execution(cat.team.id, again.id)
    assert stored is not None
    assert stored.steps == []


async def test_another_installation_of_the_workflow_counts_toward_its_keep(store: Store) -> None:
    cat = await add_catalogue(store)
    user_b = replace(cat.user, id=new_object_id(), username="b@example.com")
    await store.create_user(user_b)
    other = Installation(new_object_id(), cat.team.id, cat.workflow.id, user_b.id, 1, True,
                         T0, T0)
    await store.save_installation(other)
    await store.set_workflow_retention(cat.team.id, cat.workflow.id, Retention(keep=1))
    mine = _finished(cat, NOW - 2 * DAY)
    theirs = _finished(cat, NOW - DAY, installation_id=other.id, user_id=user_b.id)
    await _stored(store, cat, mine, theirs)
    assert (await _service(store).purge()).executions == 1
    assert await _exists(store, cat, theirs)
