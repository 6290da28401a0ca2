"""asyncpg or psycopg 3 for the PostgreSQL store: the store's own workload, measured per driver.

    .venv/bin/python -m bench.pg_drivers [--url postgresql://...] [--seconds N] [--ops N]

Each case runs 16 asyncio clients over a pool of 4 connections, bounded by --seconds and
--ops (whichever comes first), after a short warm-up that prepares the statements on every
connection. Cases, with the statements the store sends per execution:

- run: one transaction inserts an execution and its 3 steps; a second statement finishes
  it, fenced by ``lease_owner``, and the row count is checked.
- run-batch32: the same for 32 executions at once (group commit): executemany inserts in one
  transaction, then one fenced UPDATE ... FROM unnest(...) RETURNING id for all 32.
- claim32: the queue claim (UPDATE ... WHERE id IN (... FOR UPDATE SKIP LOCKED) RETURNING *)
  of 32 queued executions, then their steps by ``execution_id = ANY($1)``.
- read: one execution by (team_id, id), then its steps.

Drivers, each used the way its documentation advises for speed:

- asyncpg: a pool (statements are prepared and cached automatically), executemany.
- asyncpg-noreset: the same pool without the reset query asyncpg sends on every release
  (``reset=``, asyncpg >= 0.30), which the store may skip as it keeps no session state.
- psycopg: AsyncConnectionPool, autocommit connections with explicit transactions, every
  statement prepared (prepare=True, prepare_threshold=0), server-side placeholders
  (AsyncRawCursor, so the SQL text is the same as asyncpg's), binary results, executemany
  (pipelined by psycopg when libpq supports it).

Everything runs in a scratch database created for the run and dropped after it. The event
loop is uvloop when installed, as in the server. CPU is this process's time.process_time(),
so it is the driver's (and the loop's) cost in the application, not the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import os
import platform
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from bench.run import event_loop_runner

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS = Path(__file__).resolve().parent / "results" / "pg_drivers.json"
DRIVERS = ("asyncpg", "asyncpg-noreset", "psycopg")
POOL_SIZE = 4
CLIENTS = 16
BATCH = 32
STEPS = 3
TEAMS = 8
READ_EXECUTIONS = 10_000
# Warm-up operations per case: enough for every connection to prepare every statement.
WARMUP_OPS = 2 * CLIENTS
WARMUP_SECONDS = 2.0
OWNER = "runner-0001"
LEASE_MS = 30_000
T0_MS = 1_750_000_000_000
TRIGGER = b'{"headers":{"content-type":"application/json"},"body":{"order":12345,"sku":"A-1"}}'
TRIGGER = TRIGGER.ljust(100, b" ")
STEP_INPUT = (b'{"order":12345,"items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}'
              ).ljust(200, b" ")
STEP_OUTPUT = (b'{"ok":true,"total":"42.50","currency":"EUR","id":"inv_0001"}').ljust(200, b" ")
EXECUTION_OUTPUT = b'{"status":200,"body":{"ok":true}}'.ljust(200, b" ")

# An approximation of src/reflow/store/schema.py's executions and steps, with one addition:
# the partial index on queued ids, without which the claim's ORDER BY id walks every row
# claimed before (the claim then measures the server's scan, not the driver).
SCHEMA = """
CREATE TABLE executions (
    id text PRIMARY KEY,
    team_id text NOT NULL,
    workflow_id text NOT NULL,
    installation_id text NOT NULL,
    user_id text NOT NULL,
    version integer NOT NULL,
    mode text NOT NULL,
    trigger bytea NOT NULL,
    status text NOT NULL,
    created_at bigint NOT NULL,
    started_at bigint,
    stopped_at bigint,
    output bytea,
    response_status integer,
    error bytea,
    rerun_of text,
    lease_owner text,
    lease_expires bigint,
    resumes integer NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false
);
CREATE INDEX ix_executions_workflow ON executions (workflow_id, id);
CREATE INDEX ix_executions_installation ON executions (installation_id, id);
CREATE INDEX ix_executions_user ON executions (user_id);
CREATE INDEX ix_executions_unfinished ON executions (status, lease_expires)
    WHERE status IN ('queued', 'running', 'waiting');
CREATE INDEX ix_executions_rerun_of ON executions (rerun_of) WHERE rerun_of IS NOT NULL;
CREATE INDEX ix_executions_stopped ON executions (stopped_at);
CREATE INDEX ix_executions_queued ON executions (id) WHERE status = 'queued';
CREATE TABLE steps (
    execution_id text NOT NULL,
    seq integer NOT NULL,
    block_id text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL,
    started_at bigint NOT NULL,
    stopped_at bigint NOT NULL,
    input bytea NOT NULL,
    output bytea,
    error text,
    reused boolean NOT NULL,
    truncated boolean NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
"""

EXECUTION_COLUMNS = (
    "id", "team_id", "workflow_id", "installation_id", "user_id", "version", "mode", "trigger",
    "status", "created_at", "started_at", "stopped_at", "output", "response_status", "error",
    "rerun_of", "lease_owner", "lease_expires", "resumes", "cancel_requested",
)
STEP_COLUMNS = (
    "execution_id", "seq", "block_id", "status", "attempts", "started_at", "stopped_at",
    "input", "output", "error", "reused", "truncated",
)


def _insert(table: str, columns: Sequence[str]) -> str:
    placeholders = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"


# Native $n placeholders: asyncpg's only form, and psycopg's with AsyncRawCursor.
INSERT_EXECUTION = _insert("executions", EXECUTION_COLUMNS)
INSERT_STEP = _insert("steps", STEP_COLUMNS)
FINISH = (
    "UPDATE executions SET status = $1, stopped_at = $2, output = $3,"
    " lease_owner = NULL, lease_expires = NULL WHERE id = $4 AND lease_owner = $5"
)
FINISH_BATCH = (
    "UPDATE executions AS e SET status = $1, stopped_at = $2, output = f.output,"
    " lease_owner = NULL, lease_expires = NULL"
    " FROM unnest($3::text[], $4::bytea[]) AS f(id, output)"
    " WHERE e.id = f.id AND e.lease_owner = $5 RETURNING e.id"
)
CLAIM = (
    "UPDATE executions SET status = 'running', lease_owner = $1, lease_expires = $2"
    " WHERE id IN (SELECT id FROM executions WHERE status = 'queued'"
    f" ORDER BY id LIMIT {BATCH} FOR UPDATE SKIP LOCKED) RETURNING *"
)
CLAIM_STEPS = "SELECT * FROM steps WHERE execution_id = ANY($1::text[]) ORDER BY execution_id, seq"
READ_EXECUTION = "SELECT * FROM executions WHERE team_id = $1 AND id = $2"
READ_STEPS = "SELECT * FROM steps WHERE execution_id = $1 ORDER BY seq"

Row = tuple[Any, ...]


def _execution_id(n: int) -> str:
    return f"ex{n:024d}"


def _execution(n: int, status: str, owner: str | None) -> Row:
    """An execution row as the store writes it (all 20 columns, in EXECUTION_COLUMNS order)."""
    now = T0_MS + n
    started = None if status == "queued" else now
    stopped = now + 5 if status == "succeeded" else None
    output = EXECUTION_OUTPUT if status == "succeeded" else None
    expires = now + LEASE_MS if owner else None
    return (_execution_id(n), f"team-{n % TEAMS}", f"wf-{n % 50:04d}", f"inst-{n % 200:04d}",
            f"user-{n % 100:04d}", 1, "webhook", TRIGGER, status, now, started, stopped,
            output, None, None, None, owner, expires, 0, False)


def _steps(execution_id: str, now: int) -> list[Row]:
    return [(execution_id, seq, f"block-{seq}", "succeeded", 1, now, now + 1, STEP_INPUT,
             STEP_OUTPUT, None, False, False) for seq in range(STEPS)]


def _count(status: str) -> int:
    """The row count of an asyncpg command status such as 'UPDATE 1'."""
    return int(status.rsplit(" ", 1)[1])


class Driver(Protocol):
    """The store's statements, sent through one driver's pool."""

    async def start(self, execution: Row, steps: list[Row]) -> None:
        """Insert an execution and its steps in one transaction."""

    async def finish(self, execution_id: str, stopped_at: int) -> int:
        """Finish an execution fenced by its lease; the rows updated."""

    async def start_batch(self, executions: list[Row], steps: list[Row]) -> None:
        """Insert many executions and their steps in one transaction."""

    async def finish_batch(self, execution_ids: list[str], stopped_at: int) -> int:
        """Finish many executions fenced by their lease; the rows updated."""

    async def claim(self, owner: str, expires: int) -> tuple[int, int]:
        """Claim up to BATCH queued executions and read their steps; (executions, steps)."""

    async def read(self, team_id: str, execution_id: str) -> tuple[int, int]:
        """Read an execution and its steps; (executions, steps) found."""

    async def close(self) -> None:
        """Close the pool."""


class AsyncpgDriver:
    """asyncpg's pool: every statement is prepared and cached per connection on first use."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, reset: bool) -> AsyncpgDriver:
        """A pool of POOL_SIZE connections; without reset, released connections skip RESET ALL."""
        async def no_reset(conn: asyncpg.Connection) -> None:
            return None

        pool = await asyncpg.create_pool(url, min_size=POOL_SIZE, max_size=POOL_SIZE,
                                         reset=None if reset else no_reset)
        return cls(pool)

    async def start(self, execution: Row, steps: list[Row]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(INSERT_EXECUTION, *execution)
            await conn.executemany(INSERT_STEP, steps)

    async def finish(self, execution_id: str, stopped_at: int) -> int:
        status = await self._pool.execute(FINISH, "succeeded", stopped_at, EXECUTION_OUTPUT,
                                          execution_id, OWNER)
        return _count(status)

    async def start_batch(self, executions: list[Row], steps: list[Row]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(INSERT_EXECUTION, executions)
            await conn.executemany(INSERT_STEP, steps)

    async def finish_batch(self, execution_ids: list[str], stopped_at: int) -> int:
        rows = await self._pool.fetch(FINISH_BATCH, "succeeded", stopped_at, execution_ids,
                                      [EXECUTION_OUTPUT] * len(execution_ids), OWNER)
        return len(rows)

    async def claim(self, owner: str, expires: int) -> tuple[int, int]:
        async with self._pool.acquire() as conn:
            claimed = await conn.fetch(CLAIM, owner, expires)
            if not claimed:
                return 0, 0
            steps = await conn.fetch(CLAIM_STEPS, [row["id"] for row in claimed])
        return len(claimed), len(steps)

    async def read(self, team_id: str, execution_id: str) -> tuple[int, int]:
        async with self._pool.acquire() as conn:
            execution = await conn.fetchrow(READ_EXECUTION, team_id, execution_id)
            if execution is None:
                return 0, 0
            steps = await conn.fetch(READ_STEPS, execution_id)
        return 1, len(steps)

    async def close(self) -> None:
        await self._pool.close()


class PsycopgDriver:
    """psycopg's async pool: autocommit connections, explicit transactions, all prepared."""

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]]) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PsycopgDriver:
        """A pool of POOL_SIZE connections that prepare every statement from its first use."""
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            url, min_size=POOL_SIZE, max_size=POOL_SIZE, open=False,
            kwargs={"autocommit": True, "prepare_threshold": 0,
                    "cursor_factory": psycopg.AsyncRawCursor},
        )
        await pool.open(wait=True)
        return cls(pool)

    async def start(self, execution: Row, steps: list[Row]) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(INSERT_EXECUTION, execution, prepare=True)
            async with conn.cursor() as cur:
                await cur.executemany(INSERT_STEP, steps)

    async def finish(self, execution_id: str, stopped_at: int) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(FINISH, ("succeeded", stopped_at, EXECUTION_OUTPUT,
                                              execution_id, OWNER), prepare=True)
            return cur.rowcount

    async def start_batch(self, executions: list[Row], steps: list[Row]) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                await cur.executemany(INSERT_EXECUTION, executions)
                await cur.executemany(INSERT_STEP, steps)

    async def finish_batch(self, execution_ids: list[str], stopped_at: int) -> int:
        async with self._pool.connection() as conn, conn.cursor(binary=True) as cur:
            await cur.execute(FINISH_BATCH, ("succeeded", stopped_at, execution_ids,
                                             [EXECUTION_OUTPUT] * len(execution_ids), OWNER),
                              prepare=True)
            return len(await cur.fetchall())

    async def claim(self, owner: str, expires: int) -> tuple[int, int]:
        async with self._pool.connection() as conn, conn.cursor(binary=True) as cur:
            await cur.execute(CLAIM, (owner, expires), prepare=True)
            claimed = await cur.fetchall()
            if not claimed:
                return 0, 0
            await cur.execute(CLAIM_STEPS, ([row[0] for row in claimed],), prepare=True)
            steps = await cur.fetchall()
        return len(claimed), len(steps)

    async def read(self, team_id: str, execution_id: str) -> tuple[int, int]:
        async with self._pool.connection() as conn, conn.cursor(binary=True) as cur:
            await cur.execute(READ_EXECUTION, (team_id, execution_id), prepare=True)
            if await cur.fetchone() is None:
                return 0, 0
            await cur.execute(READ_STEPS, (execution_id,), prepare=True)
            steps = await cur.fetchall()
        return 1, len(steps)

    async def close(self) -> None:
        await self._pool.close()


async def open_driver(name: str, url: str) -> Driver:
    """The named driver's pool on url."""
    if name == "psycopg":
        return await PsycopgDriver.open(url)
    return await AsyncpgDriver.open(url, reset=name == "asyncpg")


# An operation takes its sequence number and answers the units of work it did (0: nothing
# left to do, the client stops).
Operation = Callable[[Driver, int], Awaitable[int]]


async def op_run(driver: Driver, n: int) -> int:
    """One execution: insert it with its steps, then finish it under its lease."""
    execution = _execution(n, "running", OWNER)
    await driver.start(execution, _steps(execution[0], execution[9]))
    if await driver.finish(execution[0], execution[9] + 5) != 1:
        raise RuntimeError(f"finishing {execution[0]} updated no row")
    return 1


async def op_run_batch(driver: Driver, n: int) -> int:
    """BATCH executions inserted in one transaction, then finished in one statement."""
    executions = [_execution(n * BATCH + i, "running", OWNER) for i in range(BATCH)]
    steps = [step for e in executions for step in _steps(e[0], e[9])]
    await driver.start_batch(executions, steps)
    finished = await driver.finish_batch([e[0] for e in executions], executions[-1][9] + 5)
    if finished != BATCH:
        raise RuntimeError(f"a batch finish updated {finished} of {BATCH} rows")
    return BATCH


async def op_claim(driver: Driver, n: int) -> int:
    """One claim of up to BATCH queued executions with their steps."""
    claimed, steps = await driver.claim(f"runner-{n % CLIENTS:04d}", T0_MS + n + LEASE_MS)
    if steps != claimed * STEPS:
        raise RuntimeError(f"claimed {claimed} executions but read {steps} steps")
    return 1 if claimed else 0


async def op_read(driver: Driver, n: int) -> int:
    """One execution and its steps, by team and id (a spread of stored ones)."""
    k = (n * 7919) % READ_EXECUTIONS
    found, steps = await driver.read(f"team-{k % TEAMS}", _execution_id(k))
    if (found, steps) != (1, STEPS):
        raise RuntimeError(f"read of {_execution_id(k)} found {found} and {steps} steps")
    return 1


async def fill(admin: asyncpg.Connection, count: int, status: str) -> None:
    """count executions in this status, with their steps, copied in (setup, not measured)."""
    executions = [_execution(n, status, None) for n in range(count)]
    steps = [step for e in executions for step in _steps(e[0], e[9])]
    await admin.copy_records_to_table("executions", records=executions,
                                      columns=EXECUTION_COLUMNS)
    await admin.copy_records_to_table("steps", records=steps, columns=STEP_COLUMNS)


@dataclass(frozen=True)
class Case:
    """One workload: what an operation is and how the tables start."""

    name: str
    unit: str
    operation: Operation
    queued: int = 0  # executions waiting in the queue at the start
    stored: int = 0  # finished executions stored at the start


@dataclass(frozen=True)
class Figure:
    """One driver on one case."""

    case: str
    driver: str
    unit: str
    ops: int
    seconds: float
    cpu_seconds: float

    @property
    def ops_per_s(self) -> float:
        """Throughput over the measured wall time."""
        return self.ops / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_op(self) -> float:
        """This process's CPU per operation, in microseconds."""
        return self.cpu_seconds / self.ops * 1e6 if self.ops else 0.0


async def drive(driver: Driver, operation: Operation, counter: itertools.count[int],
                max_ops: int, seconds: float) -> tuple[int, float, float]:
    """CLIENTS concurrent loops of operation until max_ops units or seconds pass."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while done < max_ops and time.perf_counter() < deadline:
            units = await operation(driver, next(counter))
            if units == 0:
                return
            done += units

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return done, time.perf_counter() - wall, time.process_time() - cpu


async def measure(admin: asyncpg.Connection, url: str, case: Case, driver_name: str,
                  max_ops: int, seconds: float) -> Figure:
    """One case on one driver, on fresh tables, after a warm-up."""
    await admin.execute("TRUNCATE executions, steps")
    if case.queued:
        await fill(admin, case.queued, "queued")
    if case.stored:
        await fill(admin, case.stored, "succeeded")
    await admin.execute("VACUUM ANALYZE executions, steps")
    await admin.execute("CHECKPOINT")  # so no checkpoint of the setup lands in the measure
    driver = await open_driver(driver_name, url)
    try:
        counter = itertools.count(case.stored + case.queued)
        await drive(driver, case.operation, counter, WARMUP_OPS, WARMUP_SECONDS)
        ops, wall, cpu = await drive(driver, case.operation, counter, max_ops, seconds)
    finally:
        await driver.close()
    return Figure(case.name, driver_name, case.unit, ops, wall, cpu)


def cases(max_ops: int, claims: int) -> list[Case]:
    """The four workloads; the claim queue holds enough for warm-up and claims claims."""
    queue = (claims + WARMUP_OPS + CLIENTS) * BATCH
    return [
        Case("run", "executions", op_run),
        Case("run-batch32", "executions", op_run_batch),
        Case("claim32", "claims", op_claim, queued=queue),
        Case("read", "reads", op_read, stored=READ_EXECUTIONS),
    ]


def scratch_url(url: str, database: str) -> str:
    """url with its database replaced."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def run(url: str, drivers: Sequence[str], seconds: float, max_ops: int,
              claims: int) -> list[Figure]:
    """Every case on every driver, in a scratch database dropped at the end."""
    database = f"pgdrv_bench_{os.getpid()}"
    server = await asyncpg.connect(url)
    try:
        await server.execute(f'CREATE DATABASE "{database}"')
        try:
            scratch = scratch_url(url, database)
            admin = await asyncpg.connect(scratch)
            try:
                await admin.execute(SCHEMA)
                figures = []
                for case in cases(max_ops, claims):
                    bound = min(max_ops, claims) if case.unit == "claims" else max_ops
                    for name in drivers:
                        figure = await measure(admin, scratch, case, name, bound, seconds)
                        print(f"  {case.name:<12} {name:<16} {figure.ops:>7} {case.unit} "
                              f"in {figure.seconds:5.2f} s", flush=True)
                        figures.append(figure)
            finally:
                await admin.close()
        finally:
            await server.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await server.close()
    return figures


def table(figures: list[Figure]) -> list[str]:
    """Lines of the results table; ratios are against plain asyncpg on the same case."""
    base = {f.case: f for f in figures if f.driver == "asyncpg"}
    lines = [f"{'case':<12} {'driver':<16} {'unit':<10} {'ops/s':>9} {'CPU µs/op':>10} "
             f"{'ops/s ÷ asyncpg':>15} {'CPU ÷ asyncpg':>13}"]
    for f in figures:
        ref = base.get(f.case)
        speed = f"{f.ops_per_s / ref.ops_per_s:.2f}" if ref and ref.ops_per_s else "-"
        cost = f"{f.cpu_us_per_op / ref.cpu_us_per_op:.2f}" if ref and ref.cpu_us_per_op else "-"
        lines.append(f"{f.case:<12} {f.driver:<16} {f.unit:<10} {f.ops_per_s:>9.0f} "
                     f"{f.cpu_us_per_op:>10.1f} {speed:>15} {cost:>13}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.pg_drivers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL,
                        help=f"a server to create the scratch database on ({DEFAULT_URL})")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="time bound of each case and driver (5)")
    parser.add_argument("--ops", type=int, default=20_000,
                        help="count bound of each case and driver, in its unit (20,000)")
    parser.add_argument("--claims", type=int, default=2_000,
                        help="count bound of the claim case; the queue is filled for it (2,000)")
    parser.add_argument("--drivers", default=",".join(DRIVERS),
                        help=f"drivers, in the order each case runs them ({','.join(DRIVERS)})")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help="where to write the JSON results")
    args = parser.parse_args(argv)
    drivers = [name.strip() for name in args.drivers.split(",") if name.strip()]
    unknown = sorted(set(drivers) - set(DRIVERS))
    if unknown:
        parser.error(f"unknown drivers: {', '.join(unknown)}")
    loop_runner = event_loop_runner()
    print(f"{CLIENTS} clients, pool of {POOL_SIZE}, ≤ {args.seconds:g} s or ≤ {args.ops} ops "
          f"per case, loop {loop_runner.__module__}, asyncpg {asyncpg.__version__}, "
          f"psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}, {psycopg.pq.__impl__})")
    figures = loop_runner(run(args.url, drivers, args.seconds, args.ops, args.claims))
    print()
    for line in table(figures):
        print(line)
    results = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "versions": {"asyncpg": asyncpg.__version__, "psycopg": psycopg.__version__,
                     "libpq": psycopg.pq.version()},
        "settings": {"clients": CLIENTS, "pool": POOL_SIZE, "seconds": args.seconds,
                     "ops": args.ops, "claims": args.claims, "loop": loop_runner.__module__},
        "figures": [asdict(f) | {"ops_per_s": f.ops_per_s, "cpu_us_per_op": f.cpu_us_per_op}
                    for f in figures],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
