"""The retention purge gives the file's pages back (SQLite, incremental vacuum)."""

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
