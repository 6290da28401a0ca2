"""The Store's bulk rerun jobs, on every backend: selection by filter, a job and its items
in one write, claims under a lease, results recorded with the job's counts, cancel, and
the purge of ended jobs."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from test_store import T0, Catalogue, add_catalogue, make_step, make_user
from test_store import cat as cat  # the fixture

from reflow.domain.executions import ExecutionStatus, error_json
from reflow.domain.records import Installation
from reflow.domain.reruns import (
    KEY_PREFIX,
    ItemResult,
    ItemState,
    JobStatus,
    RerunFilter,
    RerunJob,
    RerunJobOptions,
    job_key,
)
from reflow.ids import new_execution_id, new_object_id
from reflow.store.base import Store

pytestmark = pytest.mark.anyio

HOUR = 3_600_000


def _window(**changes: object) -> RerunFilter:
    values: dict[str, object] = {"since": T0, "until": T0 + HOUR}
    values.update(changes)
    return RerunFilter(**values)  # type: ignore[arg-type]


async def _failed(store: Store, cat: Catalogue, message: str, block: str | None,
                  at: int = T0 + 1) -> str:
    record = cat.execution(status=ExecutionStatus.FAILED, created_at=at, stopped_at=at,
                           error=orjson.dumps(error_json(message, block)))
    await store.insert_execution(record)
    return record.id


def _job(cat: Catalogue, total: int, at: int = T0) -> RerunJob:
    return RerunJob(id=new_execution_id(at), team_id=cat.team.id, status=JobStatus.QUEUED,
                    filter=_window(), options=RerunJobOptions("failed", "latest"),
                    total=total, created_at=at)


async def test_sources_are_the_teams_matching_executions_oldest_first(
    store: Store, cat: Catalogue
) -> None:
    first = await _failed(store, cat, "Timeout talking to Shop", "fetch")
    second = await _failed(store, cat, "card declined", "charge")
    await store.insert_execution(cat.execution(status=ExecutionStatus.SUCCEEDED, stopped_at=T0))
    await _failed(store, cat, "too late", "fetch", at=T0 + 2 * HOUR)
    other = await add_catalogue(store, "other")
    await _failed(store, other, "Timeout talking to Shop", "fetch")

    team = cat.team.id
    assert [s.id for s in await store.rerun_sources(team, _window(), 10)] == [first, second]
    assert [s.id for s in await store.rerun_sources(team, _window(error="timeout"), 10)] == [
        first]
    assert [s.id for s in await store.rerun_sources(team, _window(block_id="charge"), 10)] == [
        second]
    assert await store.rerun_sources(team, _window(user_id="someone else"), 10) == []
    assert [s.id for s in await store.rerun_sources(
        team, _window(workflow_id=cat.workflow.id, user_id=cat.user.id), 1)] == [first]
    assert len(await store.rerun_sources(team, _window(status=ExecutionStatus.SUCCEEDED),
                                         10)) == 1
    assert await store.count_rerun_sources(team, _window(), 10) == 2
    assert await store.count_rerun_sources(team, _window(), 1) == 1
    found = (await store.rerun_sources(team, _window(), 1))[0]
    assert orjson.loads(found.error or b"{}")["message"] == "Timeout talking to Shop"


async def test_a_job_and_its_items_read_back_in_order_for_its_team_only(
    store: Store, cat: Catalogue
) -> None:
    job = _job(cat, 3)
    await store.create_rerun_job(job, ["c", "a", "b"])
    assert await store.get_rerun_job(cat.team.id, job.id) == job
    assert await store.get_rerun_job("another team", job.id) is None
    items = await store.rerun_job_results(cat.team.id, job.id, 0, 10)
    assert [(i.execution_id, i.seq, i.state) for i in items] == [
        ("c", 0, ItemState.PENDING), ("a", 1, ItemState.PENDING), ("b", 2, ItemState.PENDING)]
    assert [i.execution_id for i in await store.rerun_job_results(cat.team.id, job.id, 1, 1)] == [
        "a"]
    assert await store.rerun_job_results("another team", job.id, 0, 10) == []
    newer = _job(cat, 0, at=T0 + 5)
    await store.create_rerun_job(newer, [])
    assert [j.id for j in await store.list_rerun_jobs(cat.team.id, None, 10)] == [
        newer.id, job.id]
    assert [j.id for j in await store.list_rerun_jobs(cat.team.id, newer.id, 10)] == [job.id]
    assert await store.list_rerun_jobs("another team", None, 10) == []


async def test_an_execution_is_an_item_of_a_job_once(store: Store, cat: Catalogue) -> None:
    with pytest.raises(Exception):  # noqa: B017  (each driver's integrity error)
        await store.create_rerun_job(_job(cat, 2), ["a", "a"])


async def test_one_owner_holds_a_job_until_its_lease_lapses_or_is_released(
    store: Store, cat: Catalogue
) -> None:
    job = _job(cat, 1)
    await store.create_rerun_job(job, ["a"])
    held = await store.claim_rerun_job("one", T0, T0 + 100)
    assert held is not None and (held.status, held.lease_owner) == (JobStatus.RUNNING, "one")
    assert held.started_at == T0
    assert await store.claim_rerun_job("two", T0 + 50, T0 + 150) is None
    again = await store.claim_rerun_job("one", T0 + 60, T0 + 160)
    assert again is not None and again.lease_expires == T0 + 160
    taken = await store.claim_rerun_job("two", T0 + 161, T0 + 300)
    assert taken is not None and taken.lease_owner == "two" and taken.started_at == T0
    assert await store.release_rerun_jobs("two") == 1
    assert (await store.claim_rerun_job("three", T0 + 162, T0 + 400)) is not None


async def test_concurrent_claims_take_different_jobs(store: Store, cat: Catalogue) -> None:
    for n in range(2):
        await store.create_rerun_job(_job(cat, 1, at=T0 + n), [f"x{n}"])
    claimed = await asyncio.gather(*(store.claim_rerun_job(f"owner{n}", T0, T0 + 100)
                                     for n in range(3)))
    ids = [j.id for j in claimed if j is not None]
    assert len(ids) == 2 and len(set(ids)) == 2


async def test_pending_items_carry_the_execution_their_key_already_made(
    store: Store, cat: Catalogue
) -> None:
    source = await _failed(store, cat, "boom", "fetch")
    job = _job(cat, 2)
    await store.create_rerun_job(job, [source, "purged"])
    made = cat.execution(rerun_of=source)
    await store.insert_execution(made, job_key(job.id, source))
    pending = await store.pending_rerun_items(job, KEY_PREFIX, 10)
    assert [(p.execution_id, p.made) for p in pending] == [
        (source, made.id), ("purged", None)]
    assert len(await store.pending_rerun_items(job, KEY_PREFIX, 1)) == 1


async def test_a_batch_of_sources_reads_the_teams_executions_with_steps_only_when_asked(
    store: Store, cat: Catalogue
) -> None:
    first = cat.execution(status=ExecutionStatus.FAILED, steps=[make_step(0), make_step(1)])
    second = cat.execution(status=ExecutionStatus.FAILED)
    for record in (first, second):
        await store.insert_execution(record)
    other = await add_catalogue(store, "globex")
    foreign = other.execution()
    await store.insert_execution(foreign)
    asked = [second.id, "purged", first.id, foreign.id]

    bare = await store.get_executions(cat.team.id, asked, steps=False)
    assert sorted(e.id for e in bare) == sorted([first.id, second.id])
    assert all(e.steps == [] for e in bare)
    assert {e.id: e.trigger for e in bare}[first.id] == first.trigger
    full = {e.id: e for e in await store.get_executions(cat.team.id, asked, steps=True)}
    assert [s.block_id for s in full[first.id].steps] == ["block0", "block1"]
    assert await store.get_executions(cat.team.id, [], steps=True) == []


async def test_a_batch_of_installations_leaves_out_deleted_and_other_teams_ones(
    store: Store, cat: Catalogue
) -> None:
    bob = make_user(cat.team, "bob@example.com")
    await store.create_user(bob)
    deleted = Installation(new_object_id(), cat.team.id, cat.workflow.id, bob.id, 1, True,
                           T0, T0)
    await store.save_installation(deleted)
    assert await store.delete_installation(cat.team.id, deleted.id, T0 + 1)
    other = await add_catalogue(store, "globex")
    asked = [cat.installation.id, deleted.id, other.installation.id, "missing"]
    assert await store.get_installations(cat.team.id, asked) == [cat.installation]
    assert await store.get_installations(cat.team.id, []) == []


async def test_results_are_counted_and_the_last_one_ends_the_job(
    store: Store, cat: Catalogue
) -> None:
    job = _job(cat, 3)
    await store.create_rerun_job(job, ["a", "b", "c"])
    new = cat.execution(status=ExecutionStatus.SUCCEEDED, stopped_at=T0)
    await store.insert_execution(new)
    await store.claim_rerun_job("one", T0, T0 + 100)
    after = await store.finish_rerun_items(job.id, [
        ItemResult("a", new.id), ItemResult("b", error="purged by retention")], T0 + 5)
    assert after is not None
    assert (after.status, after.done, after.failed, after.pending) == (JobStatus.RUNNING, 1, 1, 1)
    after = await store.finish_rerun_items(job.id, [ItemResult("c", "n2")], T0 + 6)
    assert after is not None
    assert (after.status, after.done, after.finished_at, after.lease_owner) == (
        JobStatus.DONE, 2, T0 + 6, None)
    items = await store.rerun_job_results(cat.team.id, job.id, 0, 10)
    assert [(i.state, i.new_execution_id, i.error, i.status) for i in items] == [
        (ItemState.DONE, new.id, None, ExecutionStatus.SUCCEEDED),
        (ItemState.FAILED, None, "purged by retention", None),
        (ItemState.DONE, "n2", None, None)]
    assert await store.claim_rerun_job("two", T0 + 7, T0 + 100) is None


async def test_cancel_cancels_pending_items_of_the_teams_job_only(
    store: Store, cat: Catalogue
) -> None:
    job = _job(cat, 3)
    await store.create_rerun_job(job, ["a", "b", "c"])
    await store.finish_rerun_items(job.id, [ItemResult("a", "n1")], T0 + 1)
    assert await store.cancel_rerun_job("another team", job.id, T0 + 2) is None
    cancelled = await store.cancel_rerun_job(cat.team.id, job.id, T0 + 2)
    assert cancelled is not None
    assert (cancelled.status, cancelled.done, cancelled.cancelled, cancelled.pending,
            cancelled.finished_at) == (JobStatus.CANCELLED, 1, 2, 0, T0 + 2)
    assert await store.claim_rerun_job("one", T0 + 3, T0 + 100) is None
    again = await store.cancel_rerun_job(cat.team.id, job.id, T0 + 9)
    assert again == cancelled


async def test_purge_deletes_jobs_ended_before_the_cutoff_with_their_items(
    store: Store, cat: Catalogue
) -> None:
    old, running = _job(cat, 1), _job(cat, 1, at=T0 + 1)
    await store.create_rerun_job(old, ["a"])
    await store.create_rerun_job(running, ["b"])
    await store.finish_rerun_items(old.id, [ItemResult("a", "n1")], T0 + 10)
    assert await store.purge_rerun_jobs(T0 + 10, 10) == 0
    assert await store.purge_rerun_jobs(T0 + 11, 10) == 1
    assert await store.get_rerun_job(cat.team.id, old.id) is None
    assert await store.get_rerun_job(cat.team.id, running.id) is not None
    await store.create_rerun_job(_job(cat, 1, at=T0 + 2), ["a"])  # its items are gone too
