"""The Store's error stream on every backend: the outbox row rides in the failed
execution's own commit, claims are fair and never shared, settled rows are purged."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from test_store import T0, Catalogue, add_catalogue

from reflow.domain.executions import ExecutionRecord, ExecutionStatus, error_json
from reflow.errors import LeaseLost
from reflow.store.base import ErrorStreamSetting, Store

pytestmark = pytest.mark.anyio

OWNER = "worker-1"
LATER = T0 + 60_000


@pytest.fixture
async def cat(store: Store) -> Catalogue:
    """A team that streams its errors."""
    cat = await add_catalogue(store)
    assert await store.set_error_stream(cat.team.id, "https://errors.example.com", "sealed")
    return cat


async def running(store: Store, cat: Catalogue) -> ExecutionRecord:
    record = cat.execution(status=ExecutionStatus.RUNNING, started_at=T0, lease_owner=OWNER,
                           lease_expires=LATER)
    await store.insert_execution(record)
    return record


def ended(record: ExecutionRecord, status: ExecutionStatus, at: int = T0 + 10) -> None:
    record.status, record.stopped_at = status, at
    record.lease_owner = record.lease_expires = None
    if status is ExecutionStatus.FAILED:
        record.error = orjson.dumps(error_json("order 7 is invalid", "boom"))


async def claim(store: Store, now: int = LATER, limit: int = 10, per_team: int = 10) -> list[str]:
    return [n.execution_id for n in await store.claim_error_notifications(
        now, now + 40_000, limit, per_team)]


async def test_a_failed_save_writes_one_notification_and_a_succeeded_one_none(
    store: Store, cat: Catalogue
) -> None:
    failed, succeeded = await running(store, cat), await running(store, cat)
    ended(failed, ExecutionStatus.FAILED)
    ended(succeeded, ExecutionStatus.SUCCEEDED)
    await store.save_execution(failed, [], owner=OWNER)
    await store.save_execution(succeeded, [], owner=OWNER)
    found = await store.claim_error_notifications(LATER, LATER + 1, 10, 10)
    assert [n.execution_id for n in found] == [failed.id]
    n = found[0]
    assert (n.team_id, n.workflow_id, n.installation_id, n.user_id, n.version, n.mode) == (
        cat.team.id, cat.workflow.id, cat.installation.id, cat.user.id, 1, "api")
    assert (n.error, n.started_at, n.stopped_at, n.attempts) == (failed.error, T0, T0 + 10, 1)
    assert (n.url, n.sealed_secret) == ("https://errors.example.com", "sealed")


async def test_an_execution_failed_at_its_first_commit_writes_a_notification(
    store: Store, cat: Catalogue
) -> None:
    record = cat.execution()
    ended(record, ExecutionStatus.FAILED)
    await store.insert_execution(record)
    assert await claim(store) == [record.id]


async def test_a_team_without_a_stream_gets_no_notification(store: Store) -> None:
    quiet = await add_catalogue(store, "quiet")
    record = await running(store, quiet)
    ended(record, ExecutionStatus.FAILED)
    await store.save_execution(record, [], owner=OWNER)
    assert await claim(store) == []
    assert (await store.error_stream_stats(quiet.team.id)).pending == 0


async def test_a_save_fenced_out_by_a_lost_lease_writes_no_notification(
    store: Store, cat: Catalogue
) -> None:
    record = await running(store, cat)
    ended(record, ExecutionStatus.FAILED)
    with pytest.raises(LeaseLost):
        await store.save_execution(record, [], owner="another-worker")
    assert await claim(store) == []


async def test_a_claimed_notification_is_not_claimed_again_until_its_claim_lapses(
    store: Store, cat: Catalogue
) -> None:
    record = await running(store, cat)
    ended(record, ExecutionStatus.FAILED)
    await store.save_execution(record, [], owner=OWNER)
    first, second = await asyncio.gather(claim(store), claim(store))
    assert sorted([first, second]) == [[], [record.id]]
    assert await claim(store, now=LATER + 39_999) == []
    again = await store.claim_error_notifications(LATER + 40_000, LATER + 80_000, 10, 10)
    assert [(n.execution_id, n.attempts) for n in again] == [(record.id, 2)]


async def test_claims_take_each_teams_oldest_first_and_at_most_per_team(
    store: Store, cat: Catalogue
) -> None:
    other = await add_catalogue(store, "other")
    assert await store.set_error_stream(other.team.id, "https://other.example.com", "s")
    ours = []
    for at in (T0 + 1, T0 + 2, T0 + 3):
        record = cat.execution()
        ended(record, ExecutionStatus.FAILED, at)
        await store.insert_execution(record)
        ours.append(record.id)
    theirs = other.execution()
    ended(theirs, ExecutionStatus.FAILED, T0 + 4)
    await store.insert_execution(theirs)
    assert sorted(await claim(store, limit=3, per_team=2)) == sorted([*ours[:2], theirs.id])


async def test_a_paused_team_is_not_claimed_until_its_retry_time_and_set_lifts_it(
    store: Store, cat: Catalogue
) -> None:
    record = cat.execution()
    ended(record, ExecutionStatus.FAILED)
    await store.insert_execution(record)
    await store.pause_error_stream(cat.team.id, LATER + 30_000)
    await store.pause_error_stream(cat.team.id, LATER + 10_000)  # never sooner
    assert await claim(store, now=LATER + 29_999) == []
    assert await store.set_error_stream(cat.team.id, "https://new.example.com", "sealed")
    assert await claim(store, now=LATER) == [record.id]


async def test_settled_notifications_show_in_the_stats_and_are_purged_after_the_cutoff(
    store: Store, cat: Catalogue
) -> None:
    ids = []
    for _ in range(3):
        record = cat.execution()
        ended(record, ExecutionStatus.FAILED)
        await store.insert_execution(record)
        ids.append(record.id)
    assert sorted(await claim(store)) == sorted(ids)
    delivered, dead, retried = ids
    await store.error_notification_delivered(delivered, LATER + 1)
    await store.error_notification_dead(dead, LATER + 2, "attempt 1: answered HTTP 500")
    await store.error_notification_retry(retried, LATER + 30_000, "attempt 1: timed out")
    stats = await store.error_stream_stats(cat.team.id)
    assert (stats.pending, stats.delivered, stats.dead, stats.last_delivered_at) == (
        1, 1, 1, LATER + 1)
    assert stats.last_failure is not None and stats.last_failure[0] in (dead, retried)
    assert await store.purge_error_notifications(LATER + 3, 10) == 2
    stats = await store.error_stream_stats(cat.team.id)
    assert (stats.pending, stats.delivered, stats.dead) == (1, 0, 0)


async def test_clearing_a_stream_deletes_its_notifications_and_only_its_teams(
    store: Store, cat: Catalogue
) -> None:
    other = await add_catalogue(store, "other")
    assert await store.set_error_stream(other.team.id, "https://other.example.com", "s")
    for team_cat in (cat, other):
        record = team_cat.execution()
        ended(record, ExecutionStatus.FAILED)
        await store.insert_execution(record)
    assert await store.clear_error_stream(cat.team.id)
    assert await store.get_error_stream(cat.team.id) == ErrorStreamSetting(None, None)
    assert (await store.error_stream_stats(cat.team.id)).pending == 0
    assert (await store.error_stream_stats(other.team.id)).pending == 1
    assert not await store.clear_error_stream("no-such-team")
    assert await store.get_error_stream("no-such-team") is None
