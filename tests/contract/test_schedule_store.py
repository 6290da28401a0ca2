"""The Store's schedule states and claims, on every backend (src/reflow/scheduler.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from test_store import T0, Catalogue, add_catalogue, add_second_installation

from reflow.domain.executions import ExecutionRecord, ExecutionStatus, TriggerMode
from reflow.domain.schedules import Advance, Fire, MissedRuns, ScheduleState
from reflow.store.base import ExecutionQuery, Store

pytestmark = pytest.mark.anyio

CRON = "*/5 * * * *"


@pytest.fixture
async def cat(store: Store) -> Catalogue:
    """The first team's catalogue in the store under test."""
    return await add_catalogue(store)


def state_of(cat: Catalogue, next_due_at: int | None = T0 + 300_000, **changes: object
             ) -> ScheduleState:
    """The catalogue installation's state: a five-minute schedule, due at ``next_due_at``."""
    state = ScheduleState(cat.installation.id, cat.team.id, cat.installation.updated_at, 1,
                          CRON, "Europe/Paris", MissedRuns.LATEST, next_due_at)
    return replace(state, **changes)  # type: ignore[arg-type]


def fire(cat: Catalogue, due_at: int) -> Fire:
    """A fire of ``due_at`` with a new queued execution."""
    return Fire(due_at, cat.execution(mode=TriggerMode.SCHEDULE, created_at=due_at + 1))


async def schedule_executions(store: Store, cat: Catalogue) -> list[ExecutionRecord]:
    """The catalogue installation's executions (every one here is a schedule's)."""
    return await store.list_executions(ExecutionQuery(
        cat.team.id, cat.workflow.id, cat.installation.id, limit=100))


async def test_changed_installations_lists_those_without_a_state_from_their_last_update(
    store: Store, cat: Catalogue
) -> None:
    [change] = await store.changed_installations(0, 10)
    assert (change.installation, change.state) == (cat.installation, None)
    await store.save_schedule_states([state_of(cat)])
    assert await store.changed_installations(0, 10) == []
    moved = replace(cat.installation, installed_version=2, updated_at=T0 + 5)
    await store.save_installation(moved)
    [change] = await store.changed_installations(0, 10)
    assert change.installation == moved
    assert change.state == state_of(cat)
    assert await store.changed_installations(T0 + 6, 10) == []
    assert await store.installations_updated_max() == T0 + 5


async def test_changed_installations_pages_by_update_time(store: Store, cat: Catalogue) -> None:
    _, second = await add_second_installation(store, cat)
    await store.save_installation(replace(second, updated_at=T0 + 9))
    first_page = await store.changed_installations(0, 1)
    assert [c.installation.id for c in first_page] == [cat.installation.id]
    later = await store.changed_installations(T0 + 1, 10)
    assert [c.installation.id for c in later] == [second.id]


async def test_a_state_from_the_same_installation_update_is_kept_and_a_newer_one_replaces_it(
    store: Store, cat: Catalogue
) -> None:
    await store.save_schedule_states([state_of(cat, T0 + 300_000)])
    # Another scheduler's, computed from the same update: ours (maybe moved since) stays.
    await store.save_schedule_states([state_of(cat, T0 + 900_000)])
    [due] = await store.due_schedules(T0 + 300_000, 10)
    assert due.state == state_of(cat, T0 + 300_000)
    newer = state_of(cat, T0 + 600_000, installation_updated_at=T0 + 7, version=2)
    await store.save_schedule_states([newer])
    [due] = await store.due_schedules(T0 + 600_000, 10)
    assert due.state == newer


async def test_due_schedules_are_those_due_by_now_earliest_first_with_their_installations(
    store: Store, cat: Catalogue
) -> None:
    user, second = await add_second_installation(store, cat)
    other = replace(state_of(cat, T0 + 100), installation_id=second.id)
    await store.save_schedule_states([state_of(cat, T0 + 200), other,
                                      replace(other, installation_id="not-due",
                                              next_due_at=None)])
    assert await store.due_schedules(T0 + 99, 10) == []
    due = await store.due_schedules(T0 + 200, 10)
    assert [(d.state.installation_id, d.installation) for d in due] == [
        (second.id, second), (cat.installation.id, cat.installation)]
    assert not any(d.user_deleted for d in due)
    assert [d.state.installation_id for d in await store.due_schedules(T0 + 200, 1)] == [
        second.id]
    await store.delete_user(cat.team.id, user.id, T0 + 300)
    deleted = [d for d in await store.due_schedules(T0 + 200, 10) if d.user_deleted]
    assert [d.state.installation_id for d in deleted] == [second.id]


async def test_a_state_of_a_vanished_installation_is_due_without_one(
    store: Store, cat: Catalogue
) -> None:
    await store.save_schedule_states([replace(state_of(cat, T0), installation_id="gone")])
    [due] = await store.due_schedules(T0, 10)
    assert (due.state.installation_id, due.installation) == ("gone", None)


async def test_advance_with_a_fire_claims_the_due_time_and_inserts_its_execution_once(
    store: Store, cat: Catalogue
) -> None:
    seen = state_of(cat, T0 + 300_000)
    await store.save_schedule_states([seen])
    first = fire(cat, T0 + 300_000)
    assert await store.advance_schedule(seen, T0 + 600_000, first) is Advance.FIRED
    stored = await store.get_execution(cat.team.id, first.execution.id)
    assert stored is not None
    assert (stored.status, stored.mode) == (ExecutionStatus.QUEUED, TriggerMode.SCHEDULE)
    assert [d.state.next_due_at for d in await store.due_schedules(T0 + 600_000, 10)] == [
        T0 + 600_000]
    # A second scheduler that saw the same due time moves nothing and inserts nothing.
    again = fire(cat, T0 + 300_000)
    assert await store.advance_schedule(seen, T0 + 600_000, again) is Advance.LOST
    assert await store.get_execution(cat.team.id, again.execution.id) is None


async def test_a_due_time_claimed_already_moves_the_state_but_inserts_no_execution(
    store: Store, cat: Catalogue
) -> None:
    seen = state_of(cat, T0 + 300_000)
    await store.save_schedule_states([seen])
    assert await store.advance_schedule(seen, T0 + 600_000,
                                        fire(cat, T0 + 300_000)) is Advance.FIRED
    # A state computed again from a later update points back at the fired due time.
    await store.save_installation(replace(cat.installation, updated_at=T0 + 1))
    regressed = state_of(cat, T0 + 300_000, installation_updated_at=T0 + 1)
    await store.save_schedule_states([regressed])
    duplicate = fire(cat, T0 + 300_000)
    assert await store.advance_schedule(regressed, T0 + 600_000, duplicate) is Advance.MOVED
    assert await store.get_execution(cat.team.id, duplicate.execution.id) is None
    assert [d.state.next_due_at for d in await store.due_schedules(T0 + 600_000, 10)] == [
        T0 + 600_000]


async def test_a_fire_is_lost_once_the_installation_changed_or_was_deactivated(
    store: Store, cat: Catalogue
) -> None:
    seen = state_of(cat, T0 + 300_000)
    await store.save_schedule_states([seen])
    await store.save_installation(replace(cat.installation, active=False, updated_at=T0 + 1))
    lost = fire(cat, T0 + 300_000)
    assert await store.advance_schedule(seen, T0 + 600_000, lost) is Advance.LOST
    assert await store.get_execution(cat.team.id, lost.execution.id) is None
    # Without a fire the state moves all the same (a scheduler stopping it).
    assert await store.advance_schedule(seen, None) is Advance.MOVED
    assert await store.due_schedules(T0 + 10**9, 10) == []


async def test_concurrent_fires_of_one_due_time_insert_one_execution(
    store: Store, cat: Catalogue
) -> None:
    seen = state_of(cat, T0 + 300_000)
    await store.save_schedule_states([seen])
    fires = [fire(cat, T0 + 300_000) for _ in range(4)]
    outcomes = await asyncio.gather(*(store.advance_schedule(seen, T0 + 600_000, f)
                                      for f in fires))
    assert sorted(outcomes) == sorted([Advance.FIRED] + [Advance.LOST] * 3)
    assert len(await schedule_executions(store, cat)) == 1


async def test_list_schedules_shows_a_teams_active_schedules_with_the_last_fired_due_time(
    store: Store, cat: Catalogue
) -> None:
    user, second = await add_second_installation(store, cat)
    seen = state_of(cat, T0 + 300_000)
    await store.save_schedule_states([
        seen,
        replace(seen, installation_id=second.id, next_due_at=T0 + 100),
        replace(seen, installation_id="inactive", next_due_at=None),
    ])
    await store.advance_schedule(seen, T0 + 600_000, fire(cat, T0 + 300_000))
    listed = await store.list_schedules(cat.team.id)
    assert [(s.installation_id, s.username, s.next_due_at, s.last_fired_at) for s in listed] == [
        (second.id, user.username, T0 + 100, None),
        (cat.installation.id, cat.user.username, T0 + 600_000, T0 + 300_000),
    ]
    assert listed[0].workflow_name == cat.workflow.name
    assert (listed[0].schedule.cron, listed[0].schedule.timezone) == (CRON, "Europe/Paris")
    other = await add_catalogue(store, "other team")
    assert await store.list_schedules(other.team.id) == []


async def test_prune_deletes_claims_of_due_times_before_a_time_a_batch_at_a_time(
    store: Store, cat: Catalogue
) -> None:
    state = state_of(cat, T0)
    await store.save_schedule_states([state])
    for minute in range(3):
        due = T0 + minute * 60_000
        assert await store.advance_schedule(state, due + 60_000, fire(cat, due)) is (
            Advance.FIRED)
        state = replace(state, next_due_at=due + 60_000)
    assert await store.prune_schedule_claims(T0 + 120_000, 1) == 1
    assert await store.prune_schedule_claims(T0 + 120_000, 10) == 1
    assert await store.prune_schedule_claims(T0 + 120_000, 10) == 0
    [listed] = await store.list_schedules(cat.team.id)
    assert listed.last_fired_at == T0 + 120_000
