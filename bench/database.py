"""Reading the server's SQLite file from outside: stored-check, bulk fill, sizes.

The checks open the file read-only. The fill writes copies of real executions (same
columns, new time-ordered ids) in large transactions: 100,000 executions through HTTP
would measure the load generator, not the logs query.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from reflow.ids import new_execution_id

_BUSY_MS = 10_000
_FILL_BATCH = 5_000
_TEMPLATES = 1_000
_STEPS_PER_EXECUTION = 3


@contextmanager
def _open(path: Path, *, read_only: bool) -> Iterator[sqlite3.Connection]:
    uri = f"file:{path}?mode=ro" if read_only else f"file:{path}"
    with closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as db:
        db.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        yield db


def stored_problems(path: Path, executions: list[tuple[int, str]]) -> list[str]:
    """What is missing from the database for these (order, executionId) pairs."""
    ids = orjson.dumps([execution_id for _, execution_id in executions])
    with _open(path, read_only=True) as db:
        found = dict(db.execute(
            "SELECT id, status FROM executions WHERE id IN (SELECT value FROM json_each(?))",
            (ids,),
        ).fetchall())
        steps = dict(db.execute(
            "SELECT execution_id, count(*) FROM steps WHERE status = 'succeeded'"
            " AND execution_id IN (SELECT value FROM json_each(?)) GROUP BY execution_id",
            (ids,),
        ).fetchall())
    problems = []
    for n, execution_id in executions:
        if found.get(execution_id) != "succeeded":
            problems.append(f"order {n}: execution {execution_id} stored as "
                            f"{found.get(execution_id)!r}")
        elif steps.get(execution_id) != _STEPS_PER_EXECUTION:
            problems.append(f"order {n}: execution {execution_id} has "
                            f"{steps.get(execution_id, 0)} succeeded steps stored")
    return problems


def count_executions(path: Path) -> int:
    """How many executions the database holds."""
    with _open(path, read_only=True) as db:
        return int(db.execute("SELECT count(*) FROM executions").fetchone()[0])


def size_after_checkpoint(path: Path) -> int:
    """The file's bytes (database plus WAL) once the WAL is checkpointed into it."""
    with _open(path, read_only=False) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


@dataclass
class DiskPeaks:
    """The largest sizes the database's files reached while a loop ran (bytes)."""

    total: int = 0  # database + -wal + -shm, at the same instant
    wal: int = 0
    database: int = 0
    # (seconds since the start, database, -wal, -shm) every sample.
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@asynccontextmanager
async def disk_peaks(path: Path, interval: float = 0.1) -> AsyncIterator[DiskPeaks]:
    """Sample the sizes of the database, its -wal and its -shm every ``interval`` while
    the block runs (from this process, so the server does no extra work)."""
    peaks = DiskPeaks()
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    start = time.perf_counter()

    def sample() -> None:
        db, wal, shm = (_size(f) for f in files)
        peaks.samples.append((round(time.perf_counter() - start, 3), db, wal, shm))
        peaks.total = max(peaks.total, db + wal + shm)
        peaks.wal = max(peaks.wal, wal)
        peaks.database = max(peaks.database, db)

    async def sampling() -> None:
        while True:
            sample()
            await asyncio.sleep(interval)

    task = asyncio.create_task(sampling())
    try:
        yield peaks
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        sample()


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def fill(path: Path, workflow_id: str, total: int) -> int:
    """Copy this workflow's executions until the database holds ``total``; how many added.

    Copies get new ids minted over the last ``count`` milliseconds (so they sort among
    the real ones, as if made at 1,000/s) with their timestamps shifted to match.
    """
    with _open(path, read_only=False) as db:
        db.row_factory = sqlite3.Row
        count = total - int(db.execute("SELECT count(*) FROM executions").fetchone()[0])
        if count <= 0:
            return 0
        templates, steps = _templates(db, workflow_id)
        execution_columns, step_columns = _columns(db, "executions"), _columns(db, "steps")
        insert_execution = _insert_sql("executions", execution_columns)
        insert_step = _insert_sql("steps", step_columns)
        first_ms = time.time_ns() // 1_000_000 - count
        for start in range(0, count, _FILL_BATCH):
            executions: list[list[Any]] = []
            step_rows: list[list[Any]] = []
            for i in range(start, min(count, start + _FILL_BATCH)):
                template, ms = templates[i % len(templates)], first_ms + i
                new_id, shift = new_execution_id(ms), ms - template["created_at"]
                executions.append(_copy(template, execution_columns, new_id, shift, "id"))
                step_rows.extend(_copy(step, step_columns, new_id, shift, "execution_id")
                                 for step in steps[template["id"]])
            db.execute("BEGIN IMMEDIATE")
            db.executemany(insert_execution, executions)
            db.executemany(insert_step, step_rows)
            db.execute("COMMIT")
        return count


def _templates(
    db: sqlite3.Connection, workflow_id: str
) -> tuple[list[sqlite3.Row], dict[str, list[sqlite3.Row]]]:
    """The workflow's newest succeeded runs (not reruns), and their steps by execution."""
    templates = db.execute(
        "SELECT * FROM executions WHERE workflow_id = ? AND status = 'succeeded'"
        " AND rerun_of IS NULL ORDER BY id DESC LIMIT ?", (workflow_id, _TEMPLATES),
    ).fetchall()
    if not templates:
        raise RuntimeError("no execution of the workflow to copy")
    steps: dict[str, list[sqlite3.Row]] = {t["id"]: [] for t in templates}
    for row in db.execute(
        "SELECT * FROM steps WHERE execution_id IN (SELECT value FROM json_each(?))",
        (orjson.dumps(list(steps)),),
    ):
        steps[row["execution_id"]].append(row)
    return templates, steps


def _insert_sql(table: str, columns: list[str]) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})")


def _copy(row: sqlite3.Row, columns: list[str], new_id: str, shift: int, id_column: str
          ) -> list[Any]:
    values = []
    for column in columns:
        value = row[column]
        if column == id_column:
            value = new_id
        elif column.endswith("_at") and isinstance(value, int):
            value += shift
        values.append(value)
    return values
