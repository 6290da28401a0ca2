"""The worker's claim with a deep queue: ``python -m bench.claims [--postgres [URL]]``.

For each queue (10,000 and 100,000 queued executions, over 1, 100 and 10,000
installations) a fresh database (a SQLite file, or a scratch PostgreSQL database
``reflow_bench_<pid>`` on the server at URL) gets the executions written straight into
the executions table (PostgreSQL is then vacuumed and analysed, as autovacuum would have
done); then ``Store.claim_executions`` takes 8 at a time, ``--claims`` times, as a
worker with 8 free slots would, and the median and p99 of a claim are printed. Every
claim must take 8 executions of as many installations as the queue allows.

The last queue also holds 100,000 waiting executions (a ``delay`` suspended them), each of
its own installation, due later: they must cost the claim nothing (they are not in its
index). Then they all come due, and the "wake waiting" job's statement
(``Store.wake_waiting``, 1,000 at a time) queues them again: its rate is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench.phases import percentile
from bench.postgres import scratch_database, scratch_url
from reflow.store.base import Store
from reflow.store.migrate import upgrade
from reflow.store.postgres import PostgresStore
from reflow.store.sqlite import SqliteStore

QUEUES = ((10_000, 1, 0), (10_000, 100, 0), (10_000, 10_000, 0),
          (100_000, 1, 0), (100_000, 100, 0), (100_000, 10_000, 0), (10_000, 100, 100_000))
SLOTS = 8
_COLUMNS = ("id", "team_id", "workflow_id", "installation_id", "user_id", "version", "mode",
            "trigger", "status", "created_at", "lease_expires")
NOW = 10**13
WAKE_BATCH = 1_000


def _queued(count: int, installations: int, waiting: int = 0) -> list[tuple[Any, ...]]:
    # Installations take turns in insertion order, as a fanned-out event queues them.
    # Waiting ones (ids after the queued) are each of their own installation, due later.
    return [(f"e{n:08d}", "t", "w", f"i{n % installations:06d}", "u", 1, "event", b"{}",
             "queued", 1_000 + n, None) for n in range(count)] + [
            (f"w{n:08d}", "t", "w", f"h{n:06d}", "u", 1, "event", b"{}", "waiting",
             1_000 + n, NOW + 3_600_000 + n) for n in range(waiting)]


async def _claims(store: Store, claims: int, installations: int) -> list[float]:
    """Seconds per claim of SLOTS; each must take SLOTS of distinct installations where
    there are that many."""
    now = NOW
    took = []
    for _ in range(claims):
        start = time.perf_counter()
        claimed = await store.claim_executions("bench", now, now + 30_000, SLOTS)
        took.append(time.perf_counter() - start)
        spread = len({c.installation_id for c in claimed})
        if len(claimed) != SLOTS or spread != min(SLOTS, installations):
            raise SystemExit(f"a claim took {len(claimed)} of {spread} installations")
    return took


async def _wake_rate(store: Store, waiting: int) -> float:
    """Waiting executions queued again per second once all are due."""
    start, woken = time.perf_counter(), 0
    while batch := await store.wake_waiting(NOW + 10**9, WAKE_BATCH):
        woken += batch
    if woken != waiting:
        raise SystemExit(f"the wake job queued {woken} of {waiting} waiting executions")
    return woken / (time.perf_counter() - start)


async def _measured(store: Store, claims: int, installations: int, waiting: int
                    ) -> tuple[list[float], float | None]:
    took = await _claims(store, claims, installations)
    return took, (await _wake_rate(store, waiting) if waiting else None)


async def _on_sqlite(folder: Path, queue: list[tuple[Any, ...]], claims: int,
                     installations: int, waiting: int) -> tuple[list[float], float | None]:
    path = folder / f"claims-{len(queue)}-{installations}.db"
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA foreign_keys = OFF")  # no teams or workflows: not read here
        db.executemany(f"INSERT INTO executions ({', '.join(_COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(_COLUMNS))})", queue)
    store = SqliteStore(str(path))
    try:
        return await _measured(store, claims, installations, waiting)
    finally:
        await store.close()


async def _on_postgres(server: str, queue: list[tuple[Any, ...]], claims: int,
                       installations: int, waiting: int) -> tuple[list[float], float | None]:
    async with scratch_database(server) as (_, name):
        url = scratch_url(server, name)
        await asyncio.to_thread(upgrade, url)
        db = await asyncpg.connect(url)
        try:
            await db.execute("SET session_replication_role = replica")  # no foreign keys
            await db.copy_records_to_table("executions", records=queue, columns=_COLUMNS)
            await db.execute("VACUUM ANALYZE executions")
        finally:
            await db.close()
        store = PostgresStore(url, pool_size=2)
        try:
            return await _measured(store, claims, installations, waiting)
        finally:
            await store.close()


async def run(claims: int, postgres: str | None) -> None:
    print(f"claim of {SLOTS}                          median      p99", flush=True)
    with tempfile.TemporaryDirectory(prefix="reflow-bench-claims-") as folder:
        for count, installations, waiting in QUEUES:
            queue = _queued(count, installations, waiting)
            if postgres is None:
                took, rate = await _on_sqlite(Path(folder), queue, claims, installations,
                                              waiting)
            else:
                took, rate = await _on_postgres(postgres, queue, claims, installations,
                                                waiting)
            median, p99 = (percentile(took, q) * 1000 for q in (0.5, 0.99))
            beside = f" + {waiting:,} waiting" if waiting else ""
            print(f"{count:>7,} queued, {installations:>6,} installations{beside}  "
                  f"{median:6.2f} ms  {p99:6.2f} ms", flush=True)
            if rate is not None:
                print(f"  then all {waiting:,} due: queued again at {rate:,.0f}/s "
                      f"({WAKE_BATCH:,} per statement)", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Time the claim at each queue depth; 0 when every claim took what it should."""
    parser = argparse.ArgumentParser(prog="python -m bench.claims", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=100,
                        help="claims timed per queue (%(default)s)")
    parser.add_argument("--postgres", nargs="?", metavar="URL",
                        const="postgresql://postgres@127.0.0.1:5432/test",
                        help="on PostgreSQL: a scratch database on the server at URL "
                             "(default: %(const)s)")
    args = parser.parse_args(argv)
    asyncio.run(run(args.claims, args.postgres))
    return 0


if __name__ == "__main__":
    sys.exit(main())
