"""The PostgreSQL mode: ``python -m bench --postgres [URL]``.

Creates a scratch database ``reflow_bench_<pid>`` on the server at URL (``serve`` migrates
it), then measures the benchmark workflow at ``sizes.clients`` clients in each layout:

- ``serve`` alone (API and worker in one process),
- ``serve --no-worker`` (API only) with 1, 2 and 4 ``reflow worker`` processes.

Each layout starts fresh processes, warms up, then runs the measured phase: POST
/run/workflow without ``wait`` (bounded in count and time), then waits until the queue has
drained and checks that every acknowledged execution finished and was stored. Figures per
layout: acknowledged and finished executions per second, commit-to-claim latency
(``started_at - created_at``), PostgreSQL transactions per execution (``pg_stat_database``),
CPU per execution of each process kind and of PostgreSQL, the database's size during the
load, and a projection to larger machines. The scratch database is dropped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from bench import phases
from bench.client import Reply
from bench.phases import Sample, Target, expected_output
from bench.run import (
    BUSY_SHARE,
    MIB,
    PHASE_SECONDS,
    Figure,
    Run,
    _machine_busy_seconds,
    _own_cpu_seconds,
    _setup,
)
from bench.server import Server, fresh_secret_key

WORKER_COUNTS = (1, 2, 4)
PROJECTED_VCPUS = (8, 32, 64)
MAX_TRANSACTIONS_PER_EXEC = 2.0
MIN_SERVE_RATE = 1_500.0
# PostgreSQL 15 publishes a backend's transaction counts when it goes idle, at most once a
# second, and an idle backend's leftovers after PGSTAT_IDLE_INTERVAL (10 s): wait past it.
_STATS_SETTLE_SECONDS = 11.0
# After the settle, the idle rate (worker polls) is measured over this long.
_IDLE_SECONDS = 3.0
_DRAIN_POLL_SECONDS = 0.05
_SIZE_POLL_SECONDS = 0.1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_FINISHED = ("succeeded", "failed", "canceled")
_STEPS_PER_EXECUTION = 3


@dataclass(frozen=True)
class Layout:
    """Which processes serve: ``serve`` alone (workers=0) or API only plus workers."""

    workers: int

    @property
    def key(self) -> str:
        """The figures' key prefix."""
        return "pg_serve" if self.workers == 0 else f"pg_api_{self.workers}w"

    @property
    def label(self) -> str:
        """How the table names it."""
        if self.workers == 0:
            return "PG serve alone"
        return f"PG API + {self.workers} worker{'s' if self.workers > 1 else ''}"


@dataclass
class Processes:
    """The reflow processes of one layout."""

    api: Server
    workers: list[Server] = field(default_factory=list)

    @property
    def all(self) -> list[Server]:
        """The API process first, then the workers."""
        return [self.api, *self.workers]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: API process, worker processes, their executor processes."""
        return {
            "api": sum(self.api.cpu_seconds()),
            "workers": sum(sum(w.cpu_seconds()) for w in self.workers),
            "executors": sum(p.executor_cpu_seconds() for p in self.all),
        }


@dataclass
class Monitor:
    """Connections that watch the database from outside the measured processes.

    ``admin`` is on the URL's own database, so its queries count neither in the scratch
    database's transactions nor in its backends' CPU; ``scratch`` reads the executions and
    counts its own transactions so they can be taken off.
    """

    admin: asyncpg.Connection
    scratch: asyncpg.Connection
    database: str
    scratch_pid: int = 0
    admin_pid: int = 0
    own_transactions: int = 0

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """A query on the scratch database (one transaction, counted)."""
        self.own_transactions += 1
        rows: list[asyncpg.Record] = await self.scratch.fetch(sql, *args)
        return rows

    async def transactions(self) -> int:
        """Commits plus rollbacks of the scratch database, as published so far."""
        await self.admin.execute("SELECT pg_stat_clear_snapshot()")
        value = await self.admin.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
            self.database)
        return int(value)

    async def size(self) -> int:
        """The scratch database's bytes on disk."""
        return int(await self.admin.fetchval("SELECT pg_database_size($1)", self.database))

    async def postgres_cpu(self) -> dict[int, float]:
        """CPU seconds of each PostgreSQL process that works for the scratch database.

        That is its backends (but not this monitor's) and the shared processes (postmaster,
        WAL writer, checkpointer...); backends of other databases (other people's tests)
        are left out. A backend that exits during a phase takes its CPU with it.
        """
        rows = await self.admin.fetch("SELECT pid, datname FROM pg_stat_activity")
        others = {r["pid"] for r in rows
                  if r["datname"] not in (None, self.database)} | {self.scratch_pid}
        found: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in others:
                continue
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if "(postgres)" not in stat:
                    continue
                found[int(entry.name)] = _cpu_seconds(stat)
        return found

    def own_cpu(self) -> float:
        """CPU seconds of this monitor's two backends (the bench's, not reflow's)."""
        total = 0.0
        for pid in (self.admin_pid, self.scratch_pid):
            with contextlib.suppress(OSError):
                total += _cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
        return total


def _cpu_seconds(stat: str) -> float:
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def scratch_url(url: str, database: str) -> str:
    """``url`` with its database replaced."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextlib.asynccontextmanager
async def scratch_database(url: str) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    """A fresh database on the server at ``url``, dropped afterwards; (admin conn, name)."""
    name = f"reflow_bench_{os.getpid()}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin, name
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@dataclass
class SizePeaks:
    """``pg_database_size`` during a phase (bytes)."""

    start: int = 0
    peak: int = 0
    end: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def size_peaks(monitor: Monitor) -> AsyncIterator[SizePeaks]:
    """Sample the scratch database's size every 0.1 s while the block runs."""
    peaks = SizePeaks()
    start = time.perf_counter()

    async def sample() -> int:
        size = await monitor.size()
        peaks.samples.append((round(time.perf_counter() - start, 3), size))
        peaks.peak = max(peaks.peak, size)
        return size

    async def sampling() -> None:
        while True:
            await sample()
            await asyncio.sleep(_SIZE_POLL_SECONDS)

    peaks.start = await sample()
    task = asyncio.create_task(sampling())
    try:
        yield peaks
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        peaks.end = await sample()


def _run_request(target: Target, n: int) -> dict[str, Any]:
    return {"workflowId": target.workflow_id, "userId": target.user_id,
            "data": {"label": f"order-{n}", "values": phases.VALUES}}


async def submit(target: Target, count: int, clients: int, first: int, timeout: float
                 ) -> Sample:
    """``count`` runs without ``wait`` from ``clients`` connections, one request at a time
    each; ``latencies`` are the acknowledgements, ``executions`` what they acknowledged."""
    sample = Sample()
    orders = iter(range(first, first + count))
    deadline = time.monotonic() + timeout
    replies: list[tuple[int, Reply]] = []

    async def client() -> None:
        async with target.connect() as conn:
            for n in orders:  # shared iterator: the clients take the next order in turn
                if time.monotonic() > deadline:
                    sample.timed_out = True
                    return
                raw = conn.encode("POST", "/run/workflow", _run_request(target, n))
                replies.append((n, await conn.send(raw)))

    start = time.perf_counter()
    async with asyncio.timeout(timeout + 30):
        await asyncio.gather(*(client() for _ in range(clients)))
    sample.seconds = time.perf_counter() - start
    for n, reply in replies:
        sample.latencies.append(reply.seconds)
        try:
            execution_id = reply.json()["executionId"] if reply.status == 200 else None
        except (ValueError, KeyError, TypeError):
            execution_id = None
        if execution_id is None:
            sample.problem(f"run {n}: {reply.status} {reply.body[:200]!r}")
        else:
            sample.executions.append((n, execution_id))
    return sample


_UNFINISHED = "SELECT count(*) FROM executions WHERE status IN ('queued', 'running', 'waiting')"


async def drain(monitor: Monitor, timeout: float) -> bool:
    """Wait until no execution is queued or running; False when ``timeout`` ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await monitor.fetch(_UNFINISHED)
        if rows[0][0] == 0:
            return True
        await asyncio.sleep(_DRAIN_POLL_SECONDS)
    return False


@dataclass
class Stored:
    """What the database holds for a phase's executions."""

    problems: list[str]
    claim_ms: list[float]  # started_at - created_at
    last_stopped_ms: int  # epoch ms


async def stored(monitor: Monitor, executions: list[tuple[int, str]]) -> Stored:
    """Check every execution succeeded with its output and steps; claim latencies."""
    ids = [execution_id for _, execution_id in executions]
    rows = {r["id"]: r for r in await monitor.fetch(
        "SELECT id, status, output, created_at, started_at, stopped_at FROM executions"
        " WHERE id = ANY($1::text[])", ids)}
    steps = {r["execution_id"]: r["n"] for r in await monitor.fetch(
        "SELECT execution_id, count(*) AS n FROM steps WHERE status = 'succeeded'"
        " AND execution_id = ANY($1::text[]) GROUP BY execution_id", ids)}
    result = Stored([], [], 0)
    for n, execution_id in executions:
        row = rows.get(execution_id)
        if row is None or row["status"] != "succeeded":
            result.problems.append(f"order {n}: execution {execution_id} stored as "
                                   f"{row and row['status']!r}")
            continue
        if steps.get(execution_id) != _STEPS_PER_EXECUTION:
            result.problems.append(f"order {n}: execution {execution_id} has "
                                   f"{steps.get(execution_id, 0)} succeeded steps stored")
        if row["output"] is None or orjson.loads(row["output"]) != expected_output(n):
            result.problems.append(f"order {n}: output {row['output']!r}")
        result.claim_ms.append(float(row["started_at"] - row["created_at"]))
        result.last_stopped_ms = max(result.last_stopped_ms, row["stopped_at"])
    return result


async def _settled_transactions(monitor: Monitor) -> tuple[int, float]:
    """Transactions once the stats have settled, and the idle rate (per second) after."""
    await asyncio.sleep(_STATS_SETTLE_SECONDS)
    first = await monitor.transactions()
    await asyncio.sleep(_IDLE_SECONDS)
    second = await monitor.transactions()
    return second, (second - first) / _IDLE_SECONDS


async def _start(layout: Layout, folder: Path, url: str, secret_key: str) -> Processes:
    api = Server(folder, database_url=url, no_worker=layout.workers > 0,
                 name=f"{layout.key}-api", secret_key=secret_key)
    processes = Processes(api)
    await api.start()  # migrates the database before any worker needs it
    for i in range(layout.workers):
        worker = Server(folder, database_url=url, role="worker", name=f"{layout.key}-w{i}",
                        secret_key=secret_key)
        processes.workers.append(worker)
        await worker.start()
    return processes


def _stop(run: Run, layout: Layout, processes: Processes) -> None:
    exits: dict[str, int | None] = {}
    for process in reversed(processes.all):
        exits[process.name] = process.stop()
        log = process.tail(lines=200)
        if "Traceback" in log or " ERROR " in log:
            run.problems[f"{process.name} log"] = log.splitlines()[-20:]
    run.raw.setdefault("postgres", {}).setdefault("exits", {})[layout.key] = exits


@dataclass
class Phase:
    """What one layout's measured phase gave."""

    sample: Sample
    stored: Stored
    drained: bool
    wall_start_ms: int
    transactions: int
    idle_rate: float
    settle_seconds: float
    cpu: dict[str, float]
    sizes: SizePeaks

    @property
    def finished(self) -> int:
        """Executions acknowledged and found finished."""
        return len(self.stored.claim_ms)

    @property
    def finished_seconds(self) -> float:
        """From the first request until the last acknowledged execution stopped."""
        return max(1e-3, (self.stored.last_stopped_ms - self.wall_start_ms) / 1000)


async def _phase(run: Run, target: Target, processes: Processes, monitor: Monitor,
                 first: int) -> Phase:
    """The measured load of one layout, from settled stats to settled stats."""
    sizes = run.sizes
    # Prepared now: preparing takes a transaction of its own, which would not be counted.
    await monitor.fetch(_UNFINISHED)
    before, idle_rate = await _settled_transactions(monitor)
    own_before = monitor.own_transactions
    cpu_before, pg_before = processes.cpu(), await monitor.postgres_cpu()
    client_before = _own_cpu_seconds() + monitor.own_cpu()
    machine_before = _machine_busy_seconds()
    wall_start_ms = time.time_ns() // 1_000_000
    async with size_peaks(monitor) as peaks:
        sample = await submit(target, sizes.concurrent, sizes.clients, first, PHASE_SECONDS)
        drained = await drain(monitor, PHASE_SECONDS)
    cpu_after, pg_after = processes.cpu(), await monitor.postgres_cpu()
    cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
    cpu["postgres"] = sum(v - pg_before.get(pid, 0.0) for pid, v in pg_after.items())
    # The load generator and its monitoring backends.
    cpu["client"] = _own_cpu_seconds() + monitor.own_cpu() - client_before
    cpu["machine"] = _machine_busy_seconds() - machine_before
    own = monitor.own_transactions - own_before
    settle_start = time.perf_counter()
    after = (await _settled_transactions(monitor))[0]
    settle = time.perf_counter() - settle_start
    found = await stored(monitor, sample.executions)  # after: asyncpg's introspection
    return Phase(sample, found, drained, wall_start_ms, after - before - own, idle_rate,
                 settle, cpu, peaks)


def _record(run: Run, layout: Layout, phase: Phase) -> None:
    """The figures of one layout's phase."""
    key, label, sample = layout.key, layout.label, phase.sample
    run.check(f"{label}: runs", sample)
    if not phase.drained:
        run.problems[f"{label}: drain"] = [f"queue not drained in {PHASE_SECONDS:g} s"]
    if phase.stored.problems:
        run.problems[f"{label}: stored"] = phase.stored.problems[:20]
    acked = len(sample.executions)
    ack_rate = acked / sample.seconds if sample.seconds else math.nan
    done_rate = phase.finished / phase.finished_seconds
    serve = layout.workers == 0
    target = f">= {MIN_SERVE_RATE:,.0f}" if serve else ""
    run.add(Figure(f"{key}_acked_per_s", f"{label}: acknowledged", ack_rate, "exec/s"))
    run.add(Figure(f"{key}_finished_per_s", f"{label}: finished (until drained)", done_rate,
                   "exec/s", target, done_rate >= MIN_SERVE_RATE if serve else None))
    run.add(Figure(f"{key}_ack_p50_ms", f"{label}: acknowledgement median",
                   sample.ms(0.5), "ms"))
    run.add(Figure(f"{key}_ack_p99_ms", f"{label}: acknowledgement p99", sample.ms(0.99), "ms"))
    run.add(Figure(f"{key}_claim_p50_ms", f"{label}: commit-to-claim median",
                   phases.percentile(phase.stored.claim_ms, 0.5), "ms"))
    run.add(Figure(f"{key}_claim_p99_ms", f"{label}: commit-to-claim p99",
                   phases.percentile(phase.stored.claim_ms, 0.99), "ms"))
    # The polls of idle workers while the stats settled after the load are not the load's.
    idle = phase.idle_rate * phase.settle_seconds
    per_exec = (phase.transactions - idle) / phase.finished if phase.finished else math.nan
    run.add(Figure(f"{key}_xact_per_exec", f"{label}: PG transactions per execution",
                   per_exec, "", f"<= {MAX_TRANSACTIONS_PER_EXEC:g}",
                   per_exec <= MAX_TRANSACTIONS_PER_EXEC))
    us = 1e6 / phase.finished if phase.finished else math.nan
    _check_quiet(run, label, phase)
    for kind, name in (("api", "serve process" if serve else "API process"),
                       ("workers", "worker processes"), ("executors", "executor processes"),
                       ("postgres", "PostgreSQL")):
        if kind == "workers" and serve:
            continue
        run.add(Figure(f"{key}_{kind}_cpu_us_per_exec", f"{label}: CPU per execution, {name}",
                       phase.cpu[kind] * us, "µs"))
    run.add(Figure(f"{key}_db_start_mib", f"{label}: database size at start",
                   phase.sizes.start / MIB, "MiB"))
    run.add(Figure(f"{key}_db_peak_mib", f"{label}: database size, peak",
                   phase.sizes.peak / MIB, "MiB"))
    run.add(Figure(f"{key}_db_end_mib", f"{label}: database size at end",
                   phase.sizes.end / MIB, "MiB"))
    run.raw.setdefault("postgres", {}).setdefault("layouts", {})[key] = {
        "acknowledged": acked, "ackSeconds": sample.seconds, "finished": phase.finished,
        "finishedSeconds": phase.finished_seconds, "cpuSeconds": phase.cpu,
        "transactions": phase.transactions, "idleTransactionsPerSecond": phase.idle_rate,
        "settleSeconds": phase.settle_seconds,
        "databaseBytes": {"start": phase.sizes.start, "peak": phase.sizes.peak,
                          "end": phase.sizes.end,
                          "samples": {"columns": ["seconds", "bytes"],
                                      "rows": phase.sizes.samples}},
    }


def _check_quiet(run: Run, label: str, phase: Phase) -> None:
    """Warn when other processes took a noticeable share of the machine during the load."""
    others = phase.cpu["machine"] - sum(v for k, v in phase.cpu.items() if k != "machine")
    phase.cpu["otherProcesses"] = others
    capacity = phase.finished_seconds * (os.cpu_count() or 1)
    if capacity and others > BUSY_SHARE * capacity:
        run.warnings.append(f"{label}: other processes used {others / capacity:.0%} of the "
                            "machine's CPU during the load: the figures are worse than on a "
                            "quiet machine")


def _project(run: Run, layout: Layout, phase: Phase) -> None:
    """Executions per second at larger machines, from this layout's CPU per execution."""
    if not phase.finished:
        return
    cost = sum(phase.cpu[k] for k in ("api", "workers", "executors", "postgres"))
    per_exec = cost / phase.finished
    for vcpus in PROJECTED_VCPUS:
        run.add(Figure(f"{layout.key}_projected_{vcpus}vcpu_per_s",
                       f"{layout.label}: projected at {vcpus} vCPU", vcpus / per_exec,
                       "exec/s", "projection"))
    run.raw["postgres"]["layouts"][layout.key]["cpuSecondsPerExec"] = per_exec


async def _layout(run: Run, layout: Layout, folder: Path, url: str, secret_key: str,
                  monitor: Monitor, target: Target | None, first: int) -> tuple[Target, int]:
    """Start the layout's processes, warm up, measure, stop; the target and next order."""
    processes = await _start(layout, folder, url, secret_key)
    try:
        api = processes.api
        # The user and its activation are made once per database.
        target = await _setup(api) if target is None else replace(target, port=api.port)
        warm = await phases.run_sequential(target, run.sizes.warmup, first, PHASE_SECONDS)
        run.check(f"{layout.label}: warm-up", warm)
        first += run.sizes.warmup
        phase = await _phase(run, target, processes, monitor, first)
        first += run.sizes.concurrent
        _record(run, layout, phase)
        _project(run, layout, phase)
        if layout.workers == 0:
            # The SQLite bench's own loop (POST ?wait=10), for the same figure on PostgreSQL.
            waited = await phases.run_concurrent(target, run.sizes.concurrent,
                                                 run.sizes.clients, first, PHASE_SECONDS)
            first += run.sizes.concurrent
            run.check(f"{layout.label}: runs with ?wait=10", waited)
            rate = len(waited.latencies) / waited.seconds if waited.seconds else math.nan
            run.add(Figure(f"{layout.key}_wait_per_s", f"{layout.label}: runs with ?wait=10",
                           rate, "exec/s"))
    except BaseException:
        for process in processes.all:
            print(f"the bench stopped early; {process.name}'s log ends with:\n"
                  f"{process.tail()}")
        raise
    finally:
        _stop(run, layout, processes)
    return target, first


async def measure(run: Run, folder: Path, url: str) -> None:
    """Every layout on one scratch database at ``url``'s server."""
    async with scratch_database(url) as (admin, name):
        database_url = scratch_url(url, name)
        server_version = await admin.fetchval("SHOW server_version")
        run.raw["postgres"] = {"server": server_version, "database": name,
                               "layouts": {}, "exits": {}}
        secret_key = fresh_secret_key()
        target: Target | None = None
        first = 0
        for workers in (0, *WORKER_COUNTS):
            scratch = await asyncpg.connect(database_url)
            try:
                monitor = Monitor(admin, scratch, name)
                monitor.scratch_pid = int(await scratch.fetchval("SELECT pg_backend_pid()"))
                monitor.admin_pid = int(await admin.fetchval("SELECT pg_backend_pid()"))
                target, first = await _layout(run, Layout(workers), folder, database_url,
                                              secret_key, monitor, target, first)
            finally:
                await scratch.close()
    run.notes.append(
        "projection: execs/s = vCPU / (CPU-seconds per execution of the API, worker and "
        "executor processes and PostgreSQL, measured here), assuming CPU is the only limit "
        "and scales linearly: enough processes to use every vCPU, no lock or I/O wait, no "
        "contention in PostgreSQL, and the load generator on another machine")
    run.notes.append(
        f"PG transactions per execution: pg_stat_database delta of the scratch database, "
        f"read {_STATS_SETTLE_SECONDS:g} s after the load (PostgreSQL 15 publishes idle "
        "backends' counts within 10 s), minus this bench's own reads and the idle workers' "
        "polls while the stats settled")
