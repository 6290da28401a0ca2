"""The retention purge gives the file's surplus pages back (SQLite, incremental vacuum)
and reuses the rest."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest
from engine_support import TEAM_ID, queued_record

from reflow.clock import ManualClock
from reflow.domain.executions import ExecutionStatus
from reflow.domain.records import Team
from reflow.engine import now_ms
from reflow.ids import new_execution_id
from reflow.services.retention import RetentionService
from reflow.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


def _pages(path: str) -> tuple[int, int]:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return (db.execute("PRAGMA page_count").fetchone()[0],
                db.execute("PRAGMA freelist_count").fetchone()[0])


async def test_purging_old_executions_shrinks_the_database_file(store: SqliteStore) -> None:
    old = now_ms() - 30 * 86_400_000
    bulky = b'"' + b"x" * 8_000 + b'"'  # ~120 pages in all: one batch gives back 256
    for n in range(60):
        record = replace(queued_record(None), id=new_execution_id(old + n),
                         status=ExecutionStatus.SUCCEEDED, stopped_at=old + n, output=bulky)
        await store.insert_execution(record)
    before, _ = _pages(store.path)
    assert await store.purge_executions(now_ms() - 86_400_000, 500) == 60
    assert await store.give_back_space(256) > 0  # over a quarter of the file is free
    after, free = _pages(store.path)
    assert after < before / 2, (before, after)
    assert free < 10


async def test_the_file_stops_growing_once_the_purge_keeps_pace(store: SqliteStore) -> None:
    """Day after day a day's executions come in and the purge drops the day past the
    window: after the window fills, the file stays the size it had then."""
    clock = ManualClock(now_ms())
    service = RetentionService(store, 2 * 86_400.0, clock)  # a 2-day window
    await store.create_team(Team(TEAM_ID, "team", now_ms()))
    bulky = b'"' + b"x" * 3_000 + b'"'
    sizes = []
    for _ in range(8):
        start = clock.now_ms()
        for n in range(100):
            record = replace(queued_record(None), id=new_execution_id(start + n),
                             status=ExecutionStatus.SUCCEEDED, created_at=start + n,
                             stopped_at=start + n, output=bulky)
            await store.insert_execution(record)
        clock.advance(86_400)
        await service.purge()
        sizes.append(_pages(store.path)[0])
    assert max(sizes[2:]) <= sizes[2] * 1.05, sizes  # flat once two days are kept
    assert sizes[2] > sizes[0]  # it did grow while the window filled


async def test_a_purge_keeps_a_small_surplus_of_free_pages_for_the_next_inserts(
    store: SqliteStore,
) -> None:
    now = now_ms()
    bulky = b'"' + b"x" * 8_000 + b'"'

    async def insert(at: int, count: int) -> None:
        for n in range(count):
            record = replace(queued_record(None), id=new_execution_id(at + n),
                             status=ExecutionStatus.SUCCEEDED, stopped_at=at + n,
                             output=bulky)
            await store.insert_execution(record)

    await insert(now - 30 * 86_400_000, 30)
    await insert(now, 120)
    assert await store.purge_executions(now - 86_400_000, 500) == 30
    before, free = _pages(store.path)
    assert 0 < free * 4 < before  # a fifth of the file: not worth giving back
    assert await store.give_back_space(256) == 0
    await insert(now + 1_000, 30)  # as many as were purged: they take the free pages
    after, _ = _pages(store.path)
    assert after - before < free // 10, (before, after, free)
