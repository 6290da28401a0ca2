"""Schedulers over one database, as in several processes: a due time fires once however
many reach it (both backends)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from reflow.clock import ManualClock
from reflow.domain.executions import ExecutionRecord, TriggerMode
from reflow.domain.records import Team, User
from reflow.ids import new_object_id
from reflow.scheduler import Scheduler
from reflow.services.users import UserService
from reflow.services.workflows import WorkflowService, definition_from_document
from reflow.store.base import ExecutionQuery, Store
from reflow.store.postgres import PostgresStore
from reflow.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

# 2026-03-28 12:00 UTC: the night after, Paris moves its clocks from 02:00 to 03:00.
START = int(datetime(2026, 3, 28, 12, 0, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000


def definition(cron: str, **trigger: Any) -> Any:
    """A schedule workflow named after its cron."""
    return definition_from_document({
        "name": f"At {cron}",
        "trigger": {"type": "schedule", "cron": cron, **trigger},
        "blocks": [{"id": "done", "type": "respond", "with": {"body": "{{ trigger.data }}"}}],
    })


def twin(store: Store) -> Store:
    """Another connection to the same database, as another process would have."""
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    assert isinstance(store, PostgresStore)
    return PostgresStore(store.url, pool_size=2)


class Node:
    """One process's scheduler and workflow service on a connection of its own."""

    def __init__(self, store: Store, clock: ManualClock) -> None:
        self.store = store
        self.workflows = WorkflowService(store, UserService(store), clock)
        self.scheduler = Scheduler(store, self.workflows, clock, interval=5.0,
                                   claim_retention=7 * 24 * 3600)


@pytest.fixture
def clock() -> ManualClock:
    """Standing still at START until a test moves it."""
    return ManualClock(START)


@pytest.fixture
async def nodes(store: Store, clock: ManualClock) -> AsyncIterator[Callable[[], Node]]:
    """Makes nodes: the first on the test's store, the others on twins of it."""
    made: list[Node] = []

    def make() -> Node:
        made.append(Node(twin(store) if made else store, clock))
        return made[-1]

    try:
        yield make
    finally:
        for node in made[1:]:
            await node.store.close()


async def install(node: Node, cron: str, users: int = 1, **trigger: Any
                  ) -> tuple[Team, list[User]]:
    """A team whose users (``users`` of them) installed a schedule workflow."""
    team = Team(new_object_id(), "acme", START)
    await node.store.create_team(team)
    await node.workflows.apply(team, definition(cron, **trigger))
    return team, [await add_user(node, team, cron) for _ in range(users)]


async def add_user(node: Node, team: Team, cron: str) -> User:
    """A new user of the team who activated its workflow (now, on the clock)."""
    user = await node.workflows.users.create(team, f"{new_object_id()}@example.com", None)
    await node.workflows.activate(team, user.id, f"At {cron}")
    return user


async def executions(node: Node, team: Team) -> list[ExecutionRecord]:
    """The team's executions (of its one workflow)."""
    [workflow] = await node.workflows.all(team)
    return await node.store.list_executions(ExecutionQuery(team.id, workflow.id, limit=100))


def due_of(execution: ExecutionRecord) -> str:
    """The due time an execution fired for."""
    data: str = orjson.loads(execution.trigger)["data"]["scheduledAt"]
    return data


async def test_two_schedulers_reaching_the_same_due_time_fire_it_once(
    nodes: Callable[[], Node], clock: ManualClock
) -> None:
    first, second = nodes(), nodes()
    team, users = await install(first, "*/5 * * * *", users=3)
    await asyncio.gather(first.scheduler.tick(), second.scheduler.tick())
    clock.advance(300)
    fired = await asyncio.gather(first.scheduler.tick(), second.scheduler.tick())
    assert sum(fired) == 3
    found = await executions(first, team)
    assert sorted(e.user_id for e in found) == sorted(u.id for u in users)
    assert {due_of(e) for e in found} == {"2026-03-28T12:05:00.000Z"}
    assert all(e.mode is TriggerMode.SCHEDULE for e in found)
    # Ticking again, either of them, fires nothing more.
    assert await asyncio.gather(first.scheduler.tick(), second.scheduler.tick()) == [0, 0]


async def test_two_schedulers_catching_up_fire_each_missed_due_time_once(
    nodes: Callable[[], Node], clock: ManualClock
) -> None:
    first, second = nodes(), nodes()
    team, _ = await install(first, "*/5 * * * *", missed="all")
    await first.scheduler.tick()
    clock.advance(30 * 60)
    await asyncio.gather(first.scheduler.tick(), second.scheduler.tick(),
                         first.scheduler.tick())
    dues = sorted(due_of(e) for e in await executions(first, team))
    assert dues == [f"2026-03-28T12:{m:02d}:00.000Z" for m in range(5, 31, 5)]


async def test_a_scheduler_fires_for_an_installation_another_process_activated(
    nodes: Callable[[], Node], clock: ManualClock
) -> None:
    first, second = nodes(), nodes()
    team, [early] = await install(first, "0 * * * *")
    await second.scheduler.tick()  # has looked since: it reads only later changes
    clock.advance(1800)
    late = await add_user(first, team, "0 * * * *")
    clock.advance(1800)
    assert await second.scheduler.tick() == 2
    found = await executions(first, team)
    assert sorted(e.user_id for e in found) == sorted([early.id, late.id])
    assert {due_of(e) for e in found} == {"2026-03-28T13:00:00.000Z"}


async def test_a_fixed_time_in_the_hour_skipped_by_dst_fires_once_right_after_the_jump(
    nodes: Callable[[], Node], clock: ManualClock
) -> None:
    node = nodes()
    team, _ = await install(node, "30 2 * * *", timezone="Europe/Paris", missed="all")
    await node.scheduler.tick()
    clock.advance(48 * 3600)
    await node.scheduler.tick()
    dues = sorted(due_of(e) for e in await executions(node, team))
    # 02:30 does not exist in Paris on the 29th: it runs at 03:00 local (01:00 UTC).
    assert dues == ["2026-03-29T01:00:00.000Z", "2026-03-30T00:30:00.000Z"]
