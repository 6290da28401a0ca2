"""The retention purge gives the file's pages back (SQLite, incremental vacuum)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest
from engine_support import queued_record

from reflow.domain.executions import ExecutionStatus
from reflow.engine import now_ms
from reflow.ids import new_execution_id
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
