"""Retention benchmark (issue 9): purge rate, runs while a purge runs, a simulated month.

    python -m bench.retention [--postgres URL] [--purge N] [--per-day N] [--days N]
                              [--purges-per-day N]

1. Purge rate: N expired executions (3 steps each) inserted directly, then
   ``RetentionService.purge`` at full speed (as ``reflow purge``): executions/s.
2. Runs while a purge runs: in-process runs (a transform and a respond block, 16 at a
   time) for a few seconds alone, then again while the background purge (its share of
   the time, as the periodic job) deletes N expired executions: the ratio.
3. A simulated month: each day ``--per-day`` executions (3 steps, ~1 KB of payloads)
   inserted directly with the day's times in ``--purges-per-day`` slices (24: hourly),
   the clock moved past each slice and the purge run, as the periodic job does (every
   60 s for real); the database size printed each day. The window is 7 days, so from
   day 8 on a day's inserts replace a purged day's. ``--purges-per-day 1`` inserts a
   whole day before each purge: the files then hold eight days at the peak. PostgreSQL:
   a plain VACUUM of executions and steps stands in for autovacuum whenever the rows
   purged since the last one reach 2 % of those kept (migration 0015's per-table
   threshold; a simulated day lasts seconds, far less than autovacuum's 1-minute nap).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from reflow.clock import ManualClock
from reflow.ids import new_execution_id, new_object_id
from reflow.services import Reflow
from reflow.services.retention import BACKGROUND_SHARE, RetentionService
from reflow.settings import load_settings
from reflow.store.migrate import upgrade

DAY_MS = 86_400_000
_PAYLOAD = orjson.dumps({"items": ["x" * 40] * 6})  # ~300 bytes per step input and output
_WORKFLOW = {
    "name": "Bench retention", "trigger": {"type": "api"},
    "blocks": [
        {"id": "total", "type": "transform", "with": {"value": "{{ trigger.data.n + 1 }}"}},
        {"id": "done", "type": "respond", "with": {"body": {"total": "{{ total }}"}}},
    ],
}


def _rows(team: str, count: int, start: int, day_ms: int, first: int
          ) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """Finished executions spread over [start, start + day_ms), with three steps each."""
    step_ms = max(day_ms // max(count, 1), 1)
    for n in range(count):
        at = start + n * step_ms
        execution_id = new_execution_id(at)
        execution = (execution_id, team, "wf-bench", "inst-bench", "user-bench", 1, "api",
                     orjson.dumps({"data": {"n": first + n}}), "succeeded", at - 5, at - 5, at,
                     _PAYLOAD)
        steps = [(execution_id, seq, f"b{seq}", "succeeded", 1, at - 5, at, _PAYLOAD,
                  _PAYLOAD, False, False) for seq in range(3)]
        yield execution, steps


_EXECUTION_COLUMNS = ("id", "team_id", "workflow_id", "installation_id", "user_id", "version",
                      "mode", "trigger", "status", "created_at", "started_at", "stopped_at",
                      "output")
_STEP_COLUMNS = ("execution_id", "seq", "block_id", "status", "attempts", "started_at",
                 "stopped_at", "input", "output", "reused", "truncated")


async def _insert(url: str, team: str, count: int, start: int, day_ms: int, first: int) -> None:
    """Bulk-insert finished executions directly (not through the API)."""
    chunk = 20_000
    for offset in range(0, count, chunk):
        size = min(chunk, count - offset)
        executions, steps = [], []
        for execution, its_steps in _rows(team, size, start + offset * (day_ms // count),
                                          day_ms * size // count, first + offset):
            executions.append(execution)
            steps.extend(its_steps)
        if url.startswith("sqlite"):
            with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
                db.executemany(f"INSERT INTO executions ({', '.join(_EXECUTION_COLUMNS)}) "
                               f"VALUES ({', '.join('?' * len(_EXECUTION_COLUMNS))})",
                               executions)
                db.executemany(f"INSERT INTO steps ({', '.join(_STEP_COLUMNS)}) VALUES "
                               f"({', '.join('?' * len(_STEP_COLUMNS))})", steps)
        else:
            import asyncpg  # type: ignore[import-untyped]

            conn = await asyncpg.connect(url)
            try:
                await conn.copy_records_to_table("executions", records=executions,
                                                 columns=list(_EXECUTION_COLUMNS))
                await conn.copy_records_to_table("steps", records=steps,
                                                 columns=list(_STEP_COLUMNS))
            finally:
                await conn.close()


async def _size(url: str) -> int:
    """The database's bytes: SQLite file after a checkpoint, or PostgreSQL's two tables."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return path.stat().st_size
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(
            "SELECT pg_total_relation_size('executions') + pg_total_relation_size('steps')"))
    finally:
        await conn.close()


async def _parts(url: str) -> str:
    """PostgreSQL: where the bytes are (heap, indexes, TOAST) per table; SQLite: ''."""
    if url.startswith("sqlite"):
        return ""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        parts = []
        for table in ("executions", "steps"):
            heap, indexes, total = await conn.fetchrow(
                "SELECT pg_relation_size($1), pg_indexes_size($1), "
                "pg_total_relation_size($1)", table)
            parts.append(f"{table} {heap / 2**20:.1f}+{indexes / 2**20:.1f}"
                         f"+{(total - heap - indexes) / 2**20:.1f}")
        return "  (heap+indexes+TOAST MiB: " + ", ".join(parts) + ")"
    finally:
        await conn.close()


async def _vacuum(url: str) -> None:
    if url.startswith("sqlite"):
        return
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM executions, steps")
    finally:
        await conn.close()


def _fresh(url: str | None, folder: Path) -> str:
    """A new migrated database: a SQLite file in ``folder``, or the PostgreSQL one emptied."""
    if url is None:
        database = f"sqlite:///{folder / 'bench.db'}"
        for name in ("bench.db", "bench.db-wal", "bench.db-shm"):
            (folder / name).unlink(missing_ok=True)
    else:
        database = url
        import asyncpg

        async def drop() -> None:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            finally:
                await conn.close()

        asyncio.run(drop())
    upgrade(database)
    return database


async def _open(url: str, clock: ManualClock | None = None) -> Reflow:
    settings = load_settings(database_url=url, env="dev", dev_key_file=os.devnull,
                             executor_processes=0, purge_interval=3600)
    return Reflow.open(settings, clock)


async def purge_rate(url: str, count: int) -> float:
    """Executions purged per second at full speed."""
    reflow = await _open(url)
    try:
        team = (await reflow.keys.create_first_team("bench")) or await reflow.keys.team(None)
        await _insert(url, team.id, count, reflow.clock.now_ms() - 30 * DAY_MS, DAY_MS, 0)
        started = time.perf_counter()
        report = await reflow.retention.purge()
        elapsed = time.perf_counter() - started
        assert report.executions == count, report
        return count / elapsed
    finally:
        await reflow.close()


async def _runs_for(reflow: Reflow, team: Any, workflow: str, user: str, seconds: float) -> int:
    done = 0
    until = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < until:
            await reflow.runs.run(team, workflow, user, {"n": done}, wait=10)
            done += 1

    await asyncio.gather(*(client() for _ in range(16)))
    return done


async def runs_during_purge(url: str, count: int, seconds: float) -> tuple[float, float, int]:
    """Runs/s alone, runs/s while the background purge deletes ``count``, and how many it
    deleted meanwhile."""
    reflow = await _open(url)
    try:
        team = (await reflow.keys.create_first_team("bench")) or await reflow.keys.team(None)
        from reflow.services.workflows import definition_from_document

        applied = await reflow.workflows.create(team, definition_from_document(_WORKFLOW))
        user = await reflow.users.create(team, f"bench-{new_object_id()}@example.com", None)
        await reflow.workflows.activate(team, user.id, applied.workflow.id)
        await reflow.start(api=False)
        alone = await _runs_for(reflow, team, applied.workflow.id, user.id, seconds) / seconds
        await _insert(url, team.id, count, reflow.clock.now_ms() - 30 * DAY_MS, DAY_MS, 0)
        purge = asyncio.create_task(reflow.retention.purge(share=BACKGROUND_SHARE))
        during = await _runs_for(reflow, team, applied.workflow.id, user.id, seconds) / seconds
        purged_then = 0 if not purge.done() else count
        report = await purge
        return alone, during, report.executions if purged_then else -1
    finally:
        await reflow.close()


async def month(url: str, per_day: int, days: int, purges: int = 24
                ) -> list[tuple[int, int, int]]:
    """(day, executions purged that day, database bytes after it) for each day."""
    clock = ManualClock(1_767_225_600_000)  # 2026-01-01
    reflow = await _open(url, clock)
    sizes = []
    slice_ms, per_slice = DAY_MS // purges, per_day // purges
    kept = unvacuumed = 0
    try:
        team = (await reflow.keys.create_first_team("bench")) or await reflow.keys.team(None)
        service = RetentionService(reflow.store, 7 * 86_400.0, clock)
        for day in range(1, days + 1):
            purged = 0
            for n in range(purges):
                await _insert(url, team.id, per_slice, clock.now_ms(), slice_ms,
                              (day * purges + n) * per_slice)
                clock.advance(slice_ms / 1000)
                report = await service.purge()
                kept += per_slice - report.executions
                purged += report.executions
                unvacuumed += report.executions
                if unvacuumed and unvacuumed >= 0.02 * kept:
                    await _vacuum(url)
                    unvacuumed = 0
            sizes.append((day, purged, await _size(url)))
            print(f"day {day:2}: purged {purged:>9,}  database "
                  f"{sizes[-1][2] / 2**20:8.1f} MiB{await _parts(url)}", flush=True)
    finally:
        await reflow.close()
    return sizes


def main(argv: list[str] | None = None) -> None:
    """Run the three measures and print their figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", metavar="URL", help="measure on this PostgreSQL "
                        "database (emptied first) instead of a SQLite file")
    parser.add_argument("--purge", type=int, default=1_000_000,
                        help="expired executions for the purge rate and the runs' measure")
    parser.add_argument("--per-day", type=int, default=1_000_000,
                        help="executions a simulated day (scale down and extrapolate)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--purges-per-day", type=int, default=24,
                        help="purges a simulated day (the month's inserts come in as many "
                        "slices)")
    parser.add_argument("--seconds", type=float, default=5.0, help="each runs' measure")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["rate", "runs", "month"])
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="reflow-bench-retention-"))
    try:
        if "rate" not in args.skip:
            url = _fresh(args.postgres, folder)
            rate = asyncio.run(purge_rate(url, args.purge))
            print(f"purge rate: {rate:,.0f} executions/s (3 steps each, {args.purge:,})")
        if "runs" not in args.skip:
            url = _fresh(args.postgres, folder)
            alone, during, _ = asyncio.run(runs_during_purge(url, args.purge, args.seconds))
            print(f"runs: {alone:,.0f}/s alone, {during:,.0f}/s while purging "
                  f"{args.purge:,} expired executions ({during / alone:.0%})")
        if "month" not in args.skip:
            url = _fresh(args.postgres, folder)
            sizes = asyncio.run(month(url, args.per_day, args.days, args.purges_per_day))
            if len(sizes) >= 8:
                base = sizes[6][2]
                worst = max(abs(s - base) / base for _, _, s in sizes[7:])
                print(f"after day 7: within {worst:.1%} of day 7's {base / 2**20:.1f} MiB")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
