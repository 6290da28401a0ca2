"""The SQLite WAL stays under its limit while group commits never stop (issue 5, disk).

Each test drives the store as the runner does (group commits from many coroutines, reads
on the same connection between them, another connection reading all along) with a small
WAL limit, and samples the -wal file's size from a thread while the load runs.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import orjson
import pytest

from reflow.domain.executions import (
    ExecutionRecord,
    ExecutionStatus,
    StepRecord,
    StepStatus,
    TriggerMode,
)
from reflow.ids import new_execution_id, new_object_id
from reflow.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
WAL_LIMIT = 16 * MIB
CLIENTS = 16
# Each load is bounded by a count of executions and by time.
MAX_EXECUTIONS = 12_000
DEADLINE_SECONDS = 20.0
_STEP = orjson.dumps({"items": ["x" * 60] * 20})  # ~1.3 KB, as a step's input and output


@pytest.fixture
async def store(migrated_sqlite: Path, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A migrated store running executions (so its checkpointer runs) with a 4 MiB limit."""
    path = tmp_path / "wal.db"
    shutil.copyfile(migrated_sqlite, path)
    opened = SqliteStore(str(path), wal_limit=WAL_LIMIT)
    await opened.start_runner()
    try:
        yield opened
    finally:
        await opened.close()


def _finished_execution(n: int) -> ExecutionRecord:
    now = int(time.time() * 1000)
    steps = [StepRecord(seq, f"block{seq}", StepStatus.SUCCEEDED, 1, now, now, _STEP, _STEP)
             for seq in range(3)]
    return ExecutionRecord(
        id=new_execution_id(now), team_id="team", workflow_id="workflow",
        installation_id=new_object_id(), user_id="user", version=1, mode=TriggerMode.API,
        trigger=orjson.dumps({"data": {"n": n}}), status=ExecutionStatus.SUCCEEDED,
        created_at=now, started_at=now, stopped_at=now, output=_STEP, steps=steps,
    )


class _WalSampler:
    """The largest size the -wal file had, sampled every 2 ms from a thread."""

    def __init__(self, db_path: str) -> None:
        self.wal = Path(f"{db_path}-wal")
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def size(self) -> int:
        """The -wal file's size now (0 when it does not exist)."""
        try:
            return self.wal.stat().st_size
        except FileNotFoundError:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.size())

    @contextmanager
    def sampling(self) -> Iterator[_WalSampler]:
        """Sample while the block runs."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.size())


@contextmanager
def _reading_all_along(db_path: str) -> Iterator[list[int]]:
    """Another connection (a CLI polling an execution, the bench's checker) reading every
    millisecond, each read a short transaction: most of the time a reader is on the WAL,
    so no checkpoint finds a moment without one. Yields its read count."""
    reads = [0]
    stop = threading.Event()

    def read() -> None:
        with closing(sqlite3.connect(db_path, isolation_level=None)) as db:
            while not stop.wait(0.001):
                db.execute("SELECT id, status FROM executions ORDER BY id DESC LIMIT 20"
                           ).fetchall()
                reads[0] += 1

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        yield reads
    finally:
        stop.set()
        thread.join()


async def _run_load(store: SqliteStore, stop: asyncio.Event | None = None) -> int:
    """Insert finished executions from CLIENTS coroutines (each read back now and then on
    the store's own connection) until ``stop`` is set, MAX_EXECUTIONS or the deadline;
    returns how many were stored."""
    stored = 0
    until = time.monotonic() + DEADLINE_SECONDS

    async def client(first: int) -> None:
        nonlocal stored
        for n in range(first, MAX_EXECUTIONS, CLIENTS):
            if (stop is not None and stop.is_set()) or time.monotonic() > until:
                return
            execution = _finished_execution(n)
            await store.insert_execution(execution)
            stored += 1
            if n % 20 == 0:
                assert await store.execution_status("team", execution.id) == "succeeded"

    async with asyncio.timeout(DEADLINE_SECONDS + 10):  # a commit held for good fails here
        await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return stored


def _stored_executions(path: str) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM executions").fetchone()[0])


async def test_wal_stays_under_its_limit_while_group_commits_never_stop(
    store: SqliteStore,
) -> None:
    database = Path(store.path)
    size_before = database.stat().st_size
    with _WalSampler(store.path).sampling() as wal, _reading_all_along(store.path) as reads:
        stored = await _run_load(store)
    # The load wrote several limits' worth (without RESTART checkpoints the WAL held it all).
    assert database.stat().st_size + wal.size() - size_before > 3 * WAL_LIMIT, stored
    assert reads[0] > 100
    assert wal.peak <= WAL_LIMIT, f"-wal peaked at {wal.peak / MIB:.1f} MiB"
    assert _stored_executions(store.path) == stored


async def test_wal_pinned_by_an_old_snapshot_is_cut_back_to_the_limit_once_the_reader_ends(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "reflow.store.sqlite")
    stop = asyncio.Event()
    until = time.monotonic() + DEADLINE_SECONDS
    with _WalSampler(store.path).sampling() as wal, \
            closing(sqlite3.connect(store.path, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM executions").fetchall()  # the snapshot is held
        load = asyncio.create_task(_run_load(store, stop))
        while wal.size() < 2 * WAL_LIMIT and not load.done() and time.monotonic() < until:
            await asyncio.sleep(0.01)
        pinned = wal.size()
        reader.execute("COMMIT")
        stop.set()
        stored = await load
        # Writes go on, gently (a heavy load may end before the checkpoints catch up on a
        # fast machine): the next restarted WAL is cut back to the limit.
        while wal.size() > WAL_LIMIT and time.monotonic() < until + DEADLINE_SECONDS:
            await store.insert_execution(_finished_execution(MAX_EXECUTIONS + stored))
            stored += 1
            await asyncio.sleep(0.05)
        after = wal.size()
    assert pinned >= 2 * WAL_LIMIT, (stored, pinned)  # the old snapshot kept every frame
    assert after <= WAL_LIMIT, f"-wal still {after / MIB:.1f} MiB after the reader ended"
    assert any("reader keeps an old snapshot" in r.getMessage() for r in caplog.records)
    assert _stored_executions(store.path) == stored
