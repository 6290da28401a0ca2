"""The worker's claim: fair between installations, round robin across claims, bounded cost.

Store.claim_executions' contract (src/reflow/store/base.py): within a claim, each
installation's oldest claimable execution before any installation's second; across claims,
the installations take turns (the next claim starts after the last one the previous took
from), so with one free slot at a time a single run still waits for one claim at most per
installation with work, not for a burst queued before it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from test_store import T0, Catalogue, add_catalogue, make_user

from reflow.domain.executions import ExecutionRecord, ExecutionStatus
from reflow.domain.records import Installation
from reflow.ids import new_object_id
from reflow.store.base import Store
from reflow.store.migrate import upgrade
from reflow.store.queries import load_queries

pytestmark = pytest.mark.anyio

LEASE = 30_000


@pytest.fixture
async def cat(store: Store) -> Catalogue:
    return await add_catalogue(store)


async def add_installations(store: Store, cat: Catalogue, count: int) -> list[Catalogue]:
    """``count`` more users of the team, each with the workflow installed."""
    added = []
    for n in range(count):
        user = make_user(cat.team, f"user{n}@example.com")
        await store.create_user(user)
        installation = Installation(new_object_id(), cat.team.id, cat.workflow.id, user.id, 1,
                                    True, T0, T0)
        await store.save_installation(installation)
        added.append(Catalogue(cat.team, user, cat.workflow, installation))
    return added


async def queue(store: Store, cats: list[Catalogue], per_installation: int,
                ) -> dict[str, list[str]]:
    """``per_installation`` queued executions in each, oldest first; their ids by
    installation."""
    queued: dict[str, list[str]] = {c.installation.id: [] for c in cats}
    for _ in range(per_installation):
        for c in cats:
            record = c.execution()
            await store.insert_execution(record)
            queued[c.installation.id].append(record.id)
    return queued


async def claim(store: Store, limit: int, owner: str = "w1", at: int = T0,
                ) -> list[ExecutionRecord]:
    return await store.claim_executions(owner, at, at + LEASE, limit)


def assert_fair(claimed: list[ExecutionRecord], claimable: dict[str, list[str]]) -> None:
    """No installation's (t+1)-th before every installation's t-th (or all it had), and
    each installation's oldest first; then drop what was claimed from ``claimable``."""
    taken = Counter(c.installation_id for c in claimed)
    most = max(taken.values())
    for installation_id, ids in claimable.items():
        assert taken[installation_id] >= min(len(ids), most - 1), (installation_id, taken)
    for installation_id, count in taken.items():
        mine = [c.id for c in claimed if c.installation_id == installation_id]
        assert sorted(mine) == claimable[installation_id][:count]
        del claimable[installation_id][:count]


async def test_each_claim_takes_every_installations_oldest_before_any_second(
    store: Store, cat: Catalogue
) -> None:
    others = await add_installations(store, cat, 5)
    claimable = await queue(store, [cat], 30)
    for depth, other in enumerate(others):  # queues of 0 to 4 behind the burst
        claimable |= await queue(store, [other], depth)
    # Limits below, equal to and above the installations with work, until all are taken.
    for limit in (2, 5, 8, 3, 16, 1, 32):
        claimed = await claim(store, limit)
        assert len(claimed) == min(limit, sum(map(len, claimable.values())))
        assert_fair(claimed, claimable)
    assert not any(claimable.values())
    assert await claim(store, 8) == []


async def test_successive_claims_go_round_the_installations_wrapping_around(
    store: Store, cat: Catalogue
) -> None:
    cats = [cat, *await add_installations(store, cat, 9)]
    claimable = await queue(store, cats, 4)
    served: Counter[str] = Counter()
    for _ in range(40 // 3 + 1):  # 3 slots per claim, 10 installations: wraps every claim
        claimed = await claim(store, 3)
        assert_fair(claimed, claimable)
        served.update(c.installation_id for c in claimed)
        # Round robin: no installation is ever two executions ahead of another.
        assert max(served[c.installation.id] for c in cats) - min(
            served[c.installation.id] for c in cats) <= 1
    assert sum(served.values()) == 40 and await claim(store, 3) == []


async def test_with_one_slot_at_a_time_a_single_run_waits_one_claim_not_for_the_burst(
    store: Store, cat: Catalogue
) -> None:
    [other] = await add_installations(store, cat, 1)
    await queue(store, [cat], 200)
    [first] = await claim(store, 1)
    assert first.installation_id == cat.installation.id
    single = other.execution()
    await store.insert_execution(single)
    # The claim after the burst's oldest goes to the other installation, not to the burst's
    # 199 older runs; then the burst goes on.
    [second] = await claim(store, 1)
    assert second.id == single.id
    [third] = await claim(store, 1)
    assert third.installation_id == cat.installation.id


async def test_thousands_of_installations_with_one_run_each_are_each_claimed_once(
    store: Store, cat: Catalogue
) -> None:
    cats = [cat, *await add_installations(store, cat, 59)]
    claimable = await queue(store, cats, 1)
    taken: list[str] = []
    for _ in range(8):  # 8 slots per claim: 60 in 8 claims, each a different installation
        claimed = await claim(store, 8)
        assert len({c.installation_id for c in claimed}) == len(claimed)
        taken += [c.id for c in claimed]
    assert sorted(taken) == sorted(i for ids in claimable.values() for i in ids)
    assert len(taken) == len(set(taken))


async def test_a_live_lease_is_skipped_and_takes_no_slot_an_abandoned_one_is_the_oldest(
    store: Store, cat: Catalogue
) -> None:
    busy, abandoned, released = await add_installations(store, cat, 3)
    mine = released.execution()  # claimed, then given back by a graceful stop
    await store.insert_execution(mine)
    await store.claim_executions("stopping", T0, T0 + LEASE, 1)
    assert await store.release_leases("stopping", [mine.id]) == 1
    live = cat.execution(status=ExecutionStatus.RUNNING, started_at=T0, lease_owner="alive",
                         lease_expires=T0 + 10_000)
    await store.insert_execution(live)
    behind_live = await queue(store, [cat], 2)
    # An installation whose only unfinished run is leased has nothing to claim.
    await store.insert_execution(busy.execution(
        status=ExecutionStatus.RUNNING, started_at=T0, lease_owner="alive",
        lease_expires=T0 + 10_000))
    lapsed = abandoned.execution(status=ExecutionStatus.RUNNING, started_at=T0,
                                 lease_owner="dead", lease_expires=T0 + 500)
    await store.insert_execution(lapsed)
    await queue(store, [abandoned], 1)

    claimed = await claim(store, 3, at=T0 + 1_000)
    by_installation = {c.installation_id: c for c in claimed}
    assert set(by_installation) == {cat.installation.id, abandoned.installation.id,
                                    released.installation.id}
    assert by_installation[cat.installation.id].id == behind_live[cat.installation.id][0]
    resumed = by_installation[abandoned.installation.id]
    assert (resumed.id, resumed.resumes, resumed.started_at) == (lapsed.id, 1, T0)
    assert (by_installation[released.installation.id].id,
            by_installation[released.installation.id].resumes) == (mine.id, 0)
    stored = await store.get_execution(cat.team.id, live.id)
    assert stored is not None and stored.lease_owner == "alive"


async def test_concurrent_claimers_over_many_installations_take_each_execution_once(
    store: Store, cat: Catalogue
) -> None:
    cats = [cat, *await add_installations(store, cat, 11)]
    claimable = await queue(store, cats, 3)
    taken: list[str] = []
    for _ in range(6):  # bounded: every round takes something while any is left
        claims = await asyncio.gather(*(claim(store, 4, f"w{n}") for n in range(3)))
        taken += [c.id for batch in claims for c in batch]
    assert len(taken) == len(set(taken))
    assert sorted(taken) == sorted(i for ids in claimable.values() for i in ids)


async def test_a_claim_on_sqlite_seeks_the_claim_index_and_never_scans_the_queue(
    tmp_path: Path,
) -> None:
    # The claim's cost must not grow with the queue: every read of executions is a search
    # of ix_executions_claim (or of the primary key), none a scan or a sort of the table.
    path = tmp_path / "plan.db"
    upgrade(f"sqlite:///{path}")
    query = load_queries(Path(__file__).parents[2] / "src/reflow/store/sqlite")[
        "claimable_executions"]
    with sqlite3.connect(path) as db:
        plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", (T0, 8, "x"))]
    # "SEARCH <table or alias> USING ...": the statement names the table executions or e.
    reads = [step for step in plan if step.split()[1:2] in (["executions"], ["e"])]
    assert reads and all(step.startswith("SEARCH") for step in reads), plan
    assert all("ix_executions_claim" in step or "autoindex_executions" in step
               for step in reads), plan
