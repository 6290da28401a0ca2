"""The benchmark: one reflow server on a fresh database, measured from outside.

    .venv/bin/python -m bench            # full run (make bench)
    .venv/bin/python -m bench --quick    # smoke run, under a minute
    .venv/bin/python -m bench --profile  # also sample the server with py-spy under load
    .venv/bin/python -m bench --postgres [URL]  # PostgreSQL: serve alone, API + workers

Prints a table (figure, value, target, n8n's figure) and writes the results as JSON.
Exits 1 when a response was wrong, an execution was not stored, or a loop ran out of time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import math
import os
import platform
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

import reflow
from bench import database, phases
from bench.client import Connection, Reply
from bench.phases import Sample, Target
from bench.profile import Profiler, Summary
from bench.server import HEADERS, ROOT, WORKFLOW_FILE, Server
from reflow.store.sqlite import DEFAULT_WAL_LIMIT

RESULTS = Path(__file__).resolve().parent / "results"
WORKFLOW_NAME = "Order summary"
PHASE_SECONDS = 120.0
# Above this share of the machine's CPU used by other processes, the figures are suspect.
BUSY_SHARE = 0.10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
# The server runs with the default REFLOW_SQLITE_WAL_LIMIT.
WAL_LIMIT_MIB = DEFAULT_WAL_LIMIT / MIB


@dataclass(frozen=True)
class Sizes:
    """How much each loop does."""

    warmup: int = 50
    sequential: int = 500
    concurrent: int = 5_000
    clients: int = 16
    stored: int = 100_000  # executions in the database while logs and reruns are measured
    logs: int = 200
    reruns: int = 200
    profile: int = 20_000  # runs sampled by py-spy (slow: it stops the server per sample)


QUICK = Sizes(warmup=20, sequential=100, concurrent=1_000, stored=10_000, logs=50, reruns=50,
              profile=1_000)


@dataclass(frozen=True)
class Figure:
    """One line of the table."""

    key: str
    label: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None  # None: no target
    peer: str = ""  # n8n 2.8.4 on the same machine (DESIGN.md "Performance")

    def row(self) -> tuple[str, str, str, str]:
        """The table cells."""
        mark = "" if self.ok is None else (" ok" if self.ok else " MISSED")
        value = "n/a" if math.isnan(self.value) else f"{self.value:,.{_digits(self.value)}f}"
        return self.label, f"{value} {self.unit}", f"{self.target}{mark}", self.peer


def _digits(value: float) -> int:
    return 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2


@dataclass
class Run:
    """Everything measured, gathered as the bench goes."""

    sizes: Sizes
    figures: list[Figure] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how to read figures (printed below)
    raw: dict[str, Any] = field(default_factory=dict)
    profile: Summary | None = None
    disk: database.DiskPeaks | None = None  # file sizes during (b)

    def add(self, figure: Figure) -> None:
        """Record a figure."""
        self.figures.append(figure)

    def check(self, name: str, sample: Sample) -> None:
        """Keep a loop's problems (and whether it ran out of time)."""
        found = list(sample.problems)
        if sample.problem_count > len(found):
            found.append(f"... {sample.problem_count - len(found)} more")
        if sample.timed_out:
            found.append(f"stopped by the {PHASE_SECONDS:g} s limit")
        if found:
            self.problems[name] = found

    @property
    def ok(self) -> bool:
        """No wrong answer, nothing missing, no loop cut short."""
        return not self.problems


def _ms_figures(key: str, label: str, sample: Sample, values: list[float] | None = None
                ) -> tuple[Figure, Figure]:
    """Median and p99 of a loop's latencies (or of ``values``), without targets."""
    return (Figure(f"{key}_p50_ms", f"{label}: median", sample.ms(0.5, values), "ms"),
            Figure(f"{key}_p99_ms", f"{label}: p99", sample.ms(0.99, values), "ms"))


def _under(figure: Figure, limit: float, target: str, peer: str = "") -> Figure:
    """``figure`` with a target it meets when below ``limit``."""
    return replace(figure, target=target, ok=figure.value < limit, peer=peer)


async def _setup(server: Server) -> Target:
    """A user of the benchmark workflow (applied by ``serve --apply``), activated for it."""
    async with Connection("127.0.0.1", server.port, HEADERS) as conn:
        reply = await conn.request("GET", f"/workflows/{quote(WORKFLOW_NAME)}/versions")
        workflow_id = _field(reply, "workflowId")
        reply = await conn.request("POST", "/users", {"username": "bench@example.com"})
        user_id = _field(reply, "userId")
        reply = await conn.request("PUT", "/workflows/activate",
                                   {"userId": user_id, "workflowId": workflow_id})
        _field(reply, "activated")
    return Target("127.0.0.1", server.port, HEADERS, workflow_id, user_id)


def _field(reply: Reply, name: str) -> Any:
    if reply.status != 200:
        raise RuntimeError(f"setup failed: {reply.status} {reply.body[:300]!r}")
    return reply.json()[name]


async def _load(run: Run, server: Server, target: Target) -> list[tuple[int, str]]:
    """(a) runs one at a time, (b) from many clients; returns the executions made."""
    sizes = run.sizes
    warm = await phases.run_sequential(
        target, sizes.warmup, 0, PHASE_SECONDS,
        stored=lambda executions: database.stored_problems(server.db_path, executions),
    )
    run.check("warm-up", warm)
    sequential = await phases.run_sequential(target, sizes.sequential, sizes.warmup,
                                             PHASE_SECONDS)
    run.check("sequential runs", sequential)
    median, p99 = _ms_figures("sequential", "run one at a time", sequential)
    run.add(_under(median, 3, "< 3 ms", "27 ms"))
    run.add(p99)
    concurrent = await _concurrent(run, server, target, sizes.warmup + sizes.sequential)
    return warm.executions + sequential.executions + concurrent.executions


async def _concurrent(run: Run, server: Server, target: Target, first: int) -> Sample:
    """(b), with the CPU each party used meanwhile: server threads, this client, the rest."""
    sizes = run.sizes
    machine_before = _machine_busy_seconds()
    (main_before, others_before), client_before = server.cpu_seconds(), _own_cpu_seconds()
    executors_before = server.executor_cpu_seconds()
    async with database.disk_peaks(server.db_path) as run.disk:
        sample = await phases.run_concurrent(target, sizes.concurrent, sizes.clients, first,
                                             PHASE_SECONDS)
    (main_after, others_after), client_after = server.cpu_seconds(), _own_cpu_seconds()
    executors_after = server.executor_cpu_seconds()
    machine = _machine_busy_seconds() - machine_before
    run.check("concurrent runs", sample)
    done = len(sample.latencies)
    rate = done / sample.seconds if sample.seconds else math.nan
    label = f"runs from {sizes.clients} clients"
    run.add(Figure("throughput_per_s", f"{label}: throughput", rate, "exec/s", ">= 2,000",
                   rate >= 2000, "61 exec/s"))
    run.figures.extend(_ms_figures("concurrent", label, sample))
    cpu = {"serverMainThread": main_after - main_before,
           "serverOtherThreads": others_after - others_before,
           "executors": executors_after - executors_before,
           "client": client_after - client_before}
    # CPU the rest of the machine used meanwhile (someone's tests, say) was not ours.
    cpu["otherProcesses"] = machine - sum(cpu.values())
    us_per_exec = 1e6 / done if done else math.nan
    run.add(Figure("server_cpu_us_per_exec", "server CPU per execution: event loop",
                   cpu["serverMainThread"] * us_per_exec, "µs"))
    run.add(Figure("server_other_threads_cpu_us_per_exec",
                   "server CPU per execution: other threads",
                   cpu["serverOtherThreads"] * us_per_exec, "µs"))
    run.add(Figure("executor_cpu_us_per_exec", "executor processes CPU per execution",
                   cpu["executors"] * us_per_exec, "µs"))
    run.raw["concurrent"] = {"runs": done, "seconds": sample.seconds, "cpuSeconds": cpu}
    capacity = sample.seconds * (os.cpu_count() or 1)
    if capacity and cpu["otherProcesses"] > BUSY_SHARE * capacity:
        run.warnings.append(
            f"other processes used {cpu['otherProcesses'] / capacity:.0%} of the machine's CPU "
            "during the load: throughput and latencies are worse than on a quiet machine"
        )
    return sample


def _machine_busy_seconds() -> float:
    """CPU time every process on the machine has used (not idle, not waiting for I/O)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _bytes_per_execution(run: Run, server: Server, label: str, key: str) -> tuple[int, int]:
    size = database.size_after_checkpoint(server.db_path)
    count = database.count_executions(server.db_path)
    per = size / count if count else math.nan
    run.add(Figure(key, f"database per execution ({label})", per, "B", "< 2 KB (2,048 B)",
                   per < 2048, "8 KB"))
    return size, count


def _disk_during_load(run: Run, stored_bytes: int) -> None:
    """The database's files at their largest during (b), against what the load stored."""
    disk = run.disk
    if disk is None:
        return
    label = f"during {run.sizes.clients} clients"
    stored = stored_bytes / MIB
    run.add(Figure("disk_peak_mib", f"database + WAL, peak {label}", disk.total / MIB, "MiB",
                   f"< {stored + WAL_LIMIT_MIB:,.0f} MiB (stored + WAL limit)",
                   disk.total / MIB < stored + WAL_LIMIT_MIB))
    run.add(Figure("wal_peak_mib", f"WAL alone, peak {label}", disk.wal / MIB, "MiB",
                   f"< {WAL_LIMIT_MIB:g} MiB", disk.wal / MIB < WAL_LIMIT_MIB))
    run.raw["diskDuringLoad"] = {
        "peakBytes": disk.total, "peakWalBytes": disk.wal, "peakDatabaseBytes": disk.database,
        "storedBytesAfterLoad": stored_bytes, "walLimitBytes": DEFAULT_WAL_LIMIT,
        "samples": {"columns": ["seconds", "database", "wal", "shm"], "rows": disk.samples},
    }


async def _stored_logs_reruns(run: Run, server: Server, target: Target,
                              executions: list[tuple[int, str]]) -> None:
    """Check storage, fill to ``sizes.stored``, then (c) logs and (d) reruns."""
    sizes = run.sizes
    missing = database.stored_problems(server.db_path, executions)
    if missing:
        run.problems["stored after load"] = missing[:20]
    size_before, count_before = _bytes_per_execution(run, server, "after the load",
                                                     "db_bytes_per_exec_after_load")
    _disk_during_load(run, size_before)
    started = time.perf_counter()
    added = database.fill(server.db_path, target.workflow_id, sizes.stored)
    run.raw["fill"] = {"added": added, "seconds": time.perf_counter() - started}
    size_after, count_after = _bytes_per_execution(run, server, f"at {count_before + added:,}",
                                                   "db_bytes_per_exec_filled")
    run.raw["database"] = {"bytesAfterLoad": size_before, "executionsAfterLoad": count_before,
                           "bytesFilled": size_after, "executionsFilled": count_after}

    stored = f"{count_after:,} stored"
    for limit in (10, 30):
        logs = await phases.read_logs(target, sizes.logs, limit, PHASE_SECONDS)
        run.check(f"logs limit {limit}", logs)
        median, p99 = _ms_figures(f"logs{limit}", f"logs page of {limit}, {stored}", logs)
        run.add(median)
        run.add(_under(p99, 20, "< 20 ms") if limit == 10 else p99)

    step = max(1, len(executions) // sizes.reruns)
    reruns = await phases.rerun(target, executions[::step][: sizes.reruns], PHASE_SECONDS)
    run.check("reruns", reruns)
    missing = database.stored_problems(server.db_path, reruns.executions)
    if missing:
        run.problems["reruns stored"] = missing[:20]
    run.figures.extend(_ms_figures("rerun", f"rerun call, {stored}", reruns))
    run.figures.extend(_ms_figures("rerun_finished", "rerun until read back finished", reruns,
                                   reruns.until_finished))


async def _measure(
    run: Run, folder: Path, profile: bool, executor_processes: int | None = None
) -> None:
    server = Server(folder, executor_processes=executor_processes)
    await server.start()
    try:
        target = await _setup(server)
        executions = await _load(run, server, target)
        await _stored_logs_reruns(run, server, target, executions)
        memory = server.memory_kib()
        peak = memory.get("VmHWM", 0) / 1024
        run.add(Figure("peak_rss_mib", "server peak resident memory", peak, "MiB",
                       "< 150 MiB", peak < 150, "600 MiB"))
        executors = server.executor_memory_kib() / 1024
        run.add(Figure("executor_peak_rss_mib", "executor processes peak resident memory",
                       executors, "MiB"))
        run.raw["memoryKiB"] = {**memory, "executorsVmHWM": int(executors * 1024)}
        if profile:
            run.profile = await _profile(run, server, target)
    except BaseException:
        print(f"the bench stopped early; the server's log ends with:\n{server.tail()}",
              file=sys.stderr)
        raise
    finally:
        run.raw["serverExit"] = server.stop()
        log = server.tail(lines=200)
        run.raw["serverLogTail"] = log
        if "Traceback" in log or " ERROR " in log:
            run.problems["server log"] = log.splitlines()[-20:]


async def _profile(run: Run, server: Server, target: Target) -> Summary:
    """A separate loop after the measured ones, so sampling slows none of the figures.

    Shares are turned into µs with the CPU per execution measured without sampling:
    py-spy's pauses inflate the server's own CPU time.
    """
    RESULTS.mkdir(exist_ok=True)
    profiler = Profiler(server.pid, RESULTS / "profile.txt")
    await asyncio.sleep(1.0)  # py-spy attaching
    sample = await phases.run_concurrent(target, run.sizes.profile, run.sizes.clients,
                                         10_000_000, PHASE_SECONDS)
    run.check("profiled runs", sample)
    cost = next((f.value for f in run.figures if f.key == "server_cpu_us_per_exec"), None)
    run.raw["profiled"] = {"runs": len(sample.latencies), "seconds": sample.seconds}
    return profiler.stop(cost)


def _git_commit() -> str | None:
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return None


def _machine() -> dict[str, Any]:
    return {
        "cpuCount": os.cpu_count(),
        "cpuModel": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "reflow": reflow.__version__,
        "gitCommit": _git_commit(),
        "server": f"python -m reflow serve --apply {WORKFLOW_FILE.relative_to(ROOT)}",
    }


def _table(run: Run) -> list[str]:
    rows = [("figure", "value", "target", "n8n 2.8.4"), *(f.row() for f in run.figures)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _report(run: Run, output: Path, quick: bool) -> None:
    for line in _table(run):
        print(line)
    if run.profile is not None:
        print()
        for line in run.profile.lines():
            print(line)
    print()
    for note in run.notes:
        print(f"note: {note}")
    for warning in run.warnings:
        print(f"WARNING: {warning}")
    if run.ok:
        print("checks: every response correct, every execution and its steps stored")
    else:
        for name, found in run.problems.items():
            print(f"PROBLEM in {name}:")
            for text in found:
                print(f"  {text}")
    results = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": _machine(),
        "sizes": asdict(run.sizes),
        "figures": {f.key: {"value": None if math.isnan(f.value) else f.value, "unit": f.unit,
                            "target": f.target or None, "ok": f.ok} for f in run.figures},
        "checksPassed": run.ok,
        "problems": run.problems,
        "warnings": run.warnings,
        "raw": run.raw,
        "profile": run.profile.as_json() if run.profile else None,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"results: {output}")


def event_loop_runner() -> Callable[[Any], Any]:
    """uvloop's runner when installed (as the server uses it), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] installs it
        return asyncio.run
    return uvloop.run


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every check passed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smaller loops (100 sequential, 1,000 concurrent, 10,000 stored)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the server with py-spy during an extra loaded run "
                             "(writes bench/results/profile.txt)")
    parser.add_argument("--output", type=Path,
                        help="where to write the JSON results (bench/results/latest.json; "
                             "postgres.json with --postgres)")
    parser.add_argument("--concurrent", type=int, metavar="N",
                        help="runs in the 16-client loop (5,000; 1,000 with --quick): "
                             "100,000 holds the maximum load about 40 s for the disk figures")
    parser.add_argument("--executor-processes", type=int, metavar="N",
                        help="REFLOW_EXECUTOR_PROCESSES for the server (default: reflow's, 1; "
                             "0 runs the engine in the serving process, for comparison)")
    parser.add_argument("--postgres", nargs="?", metavar="URL",
                        const="postgresql://postgres@127.0.0.1:5432/test",
                        help="measure on PostgreSQL instead (bench/postgres.py): a scratch "
                             "database on the server at URL (default: %(const)s)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    if args.concurrent:
        sizes = replace(sizes, concurrent=args.concurrent)
    run = Run(sizes)
    output = args.output or RESULTS / ("postgres.json" if args.postgres else "latest.json")
    with tempfile.TemporaryDirectory(prefix="reflow-bench-") as folder:
        if args.postgres:
            from bench import postgres  # it builds on this module

            event_loop_runner()(postgres.measure(run, Path(folder), args.postgres))
        else:
            event_loop_runner()(_measure(run, Path(folder), args.profile,
                                          args.executor_processes))
    _report(run, output, args.quick)
    return 0 if run.ok else 1
