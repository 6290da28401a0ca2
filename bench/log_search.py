"""The log search at scale: ``python -m bench.log_search [--executions N] [--postgres [URL]]``.

Starts ``reflow serve`` on a fresh database (a SQLite file, or a scratch PostgreSQL
database ``reflow_bench_<pid>`` on the server at URL), makes 1,000 users, 20 workflows
(three versions each, in five integrations) and 3,000 installations through the API, then
writes N executions (1,000,000 by default) straight into the executions table: spread
evenly over the last 7 days (the retention window), 97 % succeeded, 2 % failed, 1 %
cancelled, each of a random installation and version. (No steps: the search never reads
them.) PostgreSQL is then vacuumed and analysed, as autovacuum would have done by then;
SQLite is left as reflow leaves it (no ANALYZE).

Then, for each typical search, GET /logs is called ``--requests`` times (after a warm-up)
on one keep-alive connection, each with the next of a rotating set of values (users,
workflows, time windows), and p50 / p99 of the answer time are printed against the 20 ms
target. Every answer is checked (200, a full page, the pagination). The plan of each search
(EXPLAIN QUERY PLAN / EXPLAIN, read through the store) is printed too, and a search whose
plan reads the executions without an index is a problem. Results go to
``bench/results/log_search.json`` (``log_search_postgres.json``). Exits 1 on a problem.
"""

from __future__ import annotations

import argparse
import datetime
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import orjson

from bench.client import Connection, Reply
from bench.phases import percentile
from bench.postgres import scratch_database, scratch_url
from bench.run import RESULTS, _machine, event_loop_runner
from bench.server import HEADERS, Server
from reflow.ids import new_execution_id
from reflow.store.log_search import LogClause, LogOrder, LogPredicate, LogSearch

USERS = 1_000
WORKFLOWS = 20
INTEGRATIONS = 5
INSTALLATIONS_PER_USER = 3
VERSIONS = 3
DAYS = 7
TARGET_MS = 20.0
_BATCH = 50_000
_DAY_MS = 86_400_000
# (status, share of executions)
_STATUSES = (("succeeded", 0.97), ("failed", 0.02), ("cancelled", 0.01))
_COLUMNS = ("id", "team_id", "workflow_id", "installation_id", "user_id", "version", "mode",
            "trigger", "status", "created_at", "started_at", "stopped_at", "output",
            "response_status", "error")
_TRIGGER = b'{"data":{"label":"order-1","values":[1,2,3]}}'
_OUTPUT = b'{"label_upper":"ORDER-1","value_count":3,"total":6}'
_ERROR = b'{"message":"asked to fail","blockId":"total"}'


@dataclass
class Catalogue:
    """What the API made: the team, users, workflows and installations."""

    team_id: str
    users: list[str]
    usernames: list[str]
    workflows: list[str]
    integrations: list[str]
    installations: list[tuple[str, str, str]]  # (id, workflow_id, user_id)


@dataclass
class Case:
    """One typical search: its requests (rotated), and the store search it makes."""

    label: str
    paths: list[str]
    search: LogSearch
    index: str  # the index its plan should read the executions on
    full_page: bool = True  # every request fills a page of ``limit``


@dataclass
class Measured:
    """A case's figures."""

    label: str
    p50_ms: float
    p99_ms: float
    requests: int
    plan: list[str]
    problems: list[str] = field(default_factory=list)


def _reply_json(reply: Reply, what: str) -> Any:
    if reply.status != 200:
        raise RuntimeError(f"{what} failed: {reply.status} {reply.body[:300]!r}")
    return reply.json()


async def make_catalogue(server: Server, store_url: str) -> Catalogue:
    """Users, workflows (3 versions each, 5 integrations) and installations via the API."""
    async with Connection("127.0.0.1", server.port, HEADERS) as conn:
        usernames = [f"user{n:04d}@example.com" for n in range(USERS)]
        users: list[str] = []
        for start in range(0, USERS, 500):
            batch = [{"username": u, "fullName": f"Bench User {u[4:8]}"}
                     for u in usernames[start:start + 500]]
            body = _reply_json(await conn.request("POST", "/users/batch", {"users": batch}),
                               "POST /users/batch")
            users.extend(item["userId"] for item in body["data"])
        integrations = [f"bench-app-{n}" for n in range(INTEGRATIONS)]
        workflows = []
        for n in range(WORKFLOWS):
            definition: dict[str, Any] = {
                "name": f"Bench workflow {n:02d}", "integration": integrations[n % INTEGRATIONS],
                "trigger": {"type": "api"},
                "blocks": [{"id": "done", "type": "respond", "with": {"body": {"v": 1}}}]}
            created = _reply_json(await conn.request("POST", "/workflows", definition),
                                  "POST /workflows")
            workflow_id = created["workflowId"]
            for version in range(2, VERSIONS + 1):
                definition["blocks"][0]["with"]["body"] = {"v": version}
                _reply_json(await conn.request("PUT", f"/workflows/{workflow_id}/definition",
                                               definition), "PUT definition")
            workflows.append(workflow_id)
        rng = random.Random(7)
        for user_id in users:
            for workflow_id in rng.sample(workflows, INSTALLATIONS_PER_USER):
                _reply_json(await conn.request("PUT", "/workflows/activate", {
                    "userId": user_id, "workflowId": workflow_id}), "PUT /workflows/activate")
    team_id, installations = await _read_catalogue(store_url)
    return Catalogue(team_id, users, usernames, workflows, integrations, installations)


async def _read_catalogue(store_url: str) -> tuple[str, list[tuple[str, str, str]]]:
    sql_team = "SELECT id FROM teams"
    sql_installations = "SELECT id, workflow_id, user_id FROM installations ORDER BY id"
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            (team_id,) = db.execute(sql_team).fetchone()
            rows = [tuple(r) for r in db.execute(sql_installations)]
        return team_id, rows  # type: ignore[return-value]
    conn = await asyncpg.connect(store_url)
    try:
        team_id = await conn.fetchval(sql_team)
        rows = [tuple(r) for r in await conn.fetch(sql_installations)]
    finally:
        await conn.close()
    return team_id, rows  # type: ignore[return-value]


def _rows(catalogue: Catalogue, count: int, start: int, end: int, now: int
          ) -> list[tuple[Any, ...]]:
    """Executions ``start``..``end`` of ``count``, evenly over the last DAYS days."""
    rng = random.Random(start)
    first = now - DAYS * _DAY_MS
    step = DAYS * _DAY_MS / count
    statuses = [s for s, _ in _STATUSES]
    weights = [w for _, w in _STATUSES]
    rows = []
    for i in range(start, end):
        created = first + int(i * step)
        installation, workflow_id, user_id = rng.choice(catalogue.installations)
        status = rng.choices(statuses, weights)[0]
        stopped = created + rng.randint(5, 500)
        failed = status == "failed"
        rows.append((
            new_execution_id(created), catalogue.team_id, workflow_id, installation, user_id,
            rng.randint(1, VERSIONS), "api", _TRIGGER, status, created, created + 1, stopped,
            None if failed else _OUTPUT, None if failed else 200, _ERROR if failed else None,
        ))
    return rows


async def fill(store_url: str, catalogue: Catalogue, count: int) -> float:
    """Write ``count`` executions straight into the table; seconds taken."""
    started = time.perf_counter()
    now = int(time.time() * 1000)
    if store_url.startswith("sqlite:///"):
        sql = (f"INSERT INTO executions ({', '.join(_COLUMNS)}) "
               f"VALUES ({', '.join('?' for _ in _COLUMNS)})")
        with sqlite3.connect(store_url.removeprefix("sqlite:///"), isolation_level=None) as db:
            db.execute("PRAGMA busy_timeout = 10000")
            for start in range(0, count, _BATCH):
                rows = _rows(catalogue, count, start, min(count, start + _BATCH), now)
                db.execute("BEGIN IMMEDIATE")
                db.executemany(sql, rows)
                db.execute("COMMIT")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        conn = await asyncpg.connect(store_url)
        try:
            for start in range(0, count, _BATCH):
                rows = _rows(catalogue, count, start, min(count, start + _BATCH), now)
                await conn.copy_records_to_table("executions", records=rows,
                                                 columns=list(_COLUMNS))
            await conn.execute("VACUUM ANALYZE executions")
        finally:
            await conn.close()
    return time.perf_counter() - started


def _filters(*rules: tuple[str, str, Any]) -> str:
    return orjson.dumps([{"columns": {"value": c}, "operators": {"value": o},
                          "userinput": {"value": v}, "condition": {"value": "and"}}
                         for c, o, v in rules]).decode()


def _path(**params: Any) -> str:
    return "/logs?" + urlencode({k: v for k, v in params.items() if v is not None})


def _iso(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def cases(catalogue: Catalogue, rotate: int) -> list[Case]:
    """The typical searches, each with ``rotate`` different requests."""
    rng = random.Random(11)
    team = catalogue.team_id
    users = rng.sample(range(USERS), rotate)
    workflows = [catalogue.workflows[n % WORKFLOWS] for n in range(rotate)]
    now = int(time.time() * 1000)
    hours = [now - rng.randint(2, DAYS * 24 - 2) * 3_600_000 for _ in range(rotate)]
    failed = _filters(("message", "equals", "executionError"))
    user_eq = LogPredicate(LogClause.USER_EQ, (catalogue.users[users[0]],))
    workflow_eq = LogPredicate(LogClause.WORKFLOW_EQ, (workflows[0],))
    failed_eq = LogPredicate(LogClause.STATUS_EQ, ("failed",))
    window = LogPredicate(LogClause.CREATED_FROM, (hours[0],))
    window_end = LogPredicate(LogClause.CREATED_BEFORE, (hours[0] + 3_600_000,))
    return [
        Case("no filter", [_path()] * rotate, LogSearch(team), "ix_executions_team_created"),
        Case("by user (username)", [_path(associatedUserId=catalogue.usernames[u])
                                    for u in users],
             LogSearch(team, (user_eq,)), "ix_executions_team_user"),
        Case("by workflow", [_path(workflowId=w) for w in workflows],
             LogSearch(team, (workflow_eq,)), "ix_executions_team_workflow"),
        Case("failed only", [_path(filters=failed)] * rotate,
             LogSearch(team, groups=((failed_eq,),)), "ix_executions_team_status"),
        Case("createdAt range (1 h)", [_path(filters=_filters(
            ("createdAt", "greaterthan", _iso(h - 1)),
            ("createdAt", "lessthan", _iso(h + 3_600_000)))) for h in hours],
             LogSearch(team, groups=((window, window_end),)), "ix_executions_team_created"),
        Case("sort by completedAt", [_path(sortBy="completedAt")] * rotate,
             LogSearch(team, order=LogOrder.COMPLETED), "ix_executions_team_stopped"),
        # Beyond the six: combinations and the other orders.
        Case("failed, by workflow", [_path(filters=failed, workflowId=w) for w in workflows],
             LogSearch(team, (workflow_eq,), ((failed_eq,),)), "ix_executions_team_"),
        Case("by user, failed", [_path(filters=failed, associatedUserId=catalogue.users[u])
                                 for u in users],
             LogSearch(team, (user_eq,), ((failed_eq,),)), "ix_executions_team_",
             full_page=False),
        Case("by workflow, version 2", [_path(workflowId=w, filters=_filters(
            ("workflowVersion", "equals", 2))) for w in workflows],
             LogSearch(team, (workflow_eq,), ((LogPredicate(LogClause.VERSION_EQ, (2,)),),)),
             "ix_executions_team_workflow"),
        Case("by integration", [_path(filters=_filters(
            ("forgeWorkflow.integrationId._id", "equals", catalogue.integrations[n % 5])))
            for n in range(rotate)],
             LogSearch(team, groups=((LogPredicate(LogClause.INTEGRATION_EQ,
                                                   (catalogue.integrations[0],)),),)),
             "ix_executions_team_"),
        Case("sort by message", [_path(sortBy="message", sortOrder="asc")] * rotate,
             LogSearch(team, order=LogOrder.STATUS, descending=False),
             "ix_executions_team_status"),
        Case("by user, sort by completedAt", [_path(sortBy="completedAt",
                                                    associatedUserId=catalogue.users[u])
                                              for u in users],
             LogSearch(team, (user_eq,), order=LogOrder.COMPLETED), "ix_executions_team_"),
        Case("user name contains", [_path(filters=_filters(
            ("userId", "contains", f"user{u:04d}"))) for u in users],
             LogSearch(team, groups=((LogPredicate(LogClause.USER_IN, ([user_eq.values[0]],)),),)),
             "ix_executions_team_user"),
        Case("by user and workflow", [_path(associatedUserId=catalogue.users[u],
                                            workflowId=catalogue.workflows[u % WORKFLOWS])
                                      for u in users],
             LogSearch(team, (user_eq, workflow_eq)), "ix_executions_team_user",
             full_page=False),
        Case("page at skip 5,000", [_path(skip=5_000)] * rotate,
             LogSearch(team, offset=5_000), "ix_executions_team_created"),
    ]


async def measure(server: Server, case: Case, requests: int, limit: int = 10) -> Measured:
    """``requests`` calls of the case's rotating paths (after a warm-up round)."""
    latencies: list[float] = []
    problems: list[str] = []
    async with Connection("127.0.0.1", server.port, HEADERS) as conn:
        raws = [conn.encode("GET", path) for path in case.paths]
        for raw in raws[:5]:
            await conn.send(raw)
        for n in range(requests):
            reply = await conn.send(raws[n % len(raws)])
            latencies.append(reply.seconds)
            problem = _check(reply, limit, case.full_page)
            if problem and len(problems) < 5:
                problems.append(f"{case.paths[n % len(raws)]}: {problem}")
    return Measured(case.label, percentile(latencies, 0.5) * 1000,
                    percentile(latencies, 0.99) * 1000, requests, [], problems)


def _check(reply: Reply, limit: int, full_page: bool) -> str | None:
    if reply.status != 200:
        return f"{reply.status} {reply.body[:200]!r}"
    body = reply.json()
    items, pagination = body["notifications"], body["pagination"]
    if full_page and len(items) != limit:
        return f"{len(items)} items, not {limit}"
    if pagination["pageSize"] != limit or pagination["totalItems"] < len(items):
        return f"pagination {pagination}"
    return None


async def explain(store_url: str, search: LogSearch) -> list[str]:
    """The store's plans (page, count) for ``search``."""
    if store_url.startswith("sqlite:///"):
        from reflow.store.sqlite import SqliteStore

        store: Any = SqliteStore(store_url.removeprefix("sqlite:///"))
    else:
        from reflow.store.postgres import PostgresStore

        store = PostgresStore(store_url, pool_size=1)
    try:
        plans: list[str] = await store.explain_log_search(search)
        return plans
    finally:
        await store.close()


def plan_problems(search: LogSearch, plans: Sequence[str], index: str, *, chosen: bool
                  ) -> list[str]:
    """What is wrong with a search's plans: the executions read without an index, or (where
    reflow ``chosen`` the index: SQLite) the page not on the expected one. PostgreSQL picks
    by its statistics; the count of all of a one-team table's executions may even read the
    table itself, rightly: its first 10,000 rows are the count."""
    problems = []
    filtered = bool(search.scope) or search.groups != ((),)
    checked = plans if filtered else plans[:1]
    # PostgreSQL's sequential scan; SQLite's scan of the table itself (indented: a scan
    # of a subquery's rows is not indented, it reads the few rows the index gave).
    unindexed = [line.strip() for plan in checked for line in plan.splitlines()
                 if "Seq Scan on executions" in line or (line.startswith(" ")
                                                         and line.strip().startswith("SCAN e"))]
    if unindexed:
        problems.append(f"reads the executions without an index: {unindexed}")
    if chosen and index not in plans[0]:
        problems.append(f"the page does not read {index}")
    return problems


def report(measured: list[Measured], fill_seconds: float, count: int, backend: str,
           output: Path) -> bool:
    """Print the table and the plans; write the JSON; True when there was no problem."""
    width = max(len(m.label) for m in measured)
    print(f"GET /logs at {count:,} executions ({backend}; fill {fill_seconds:,.0f} s)")
    print(f"{'search'.ljust(width)}  {'p50':>8}  {'p99':>8}  target")
    for m in measured:
        mark = "ok" if m.p99_ms < TARGET_MS else "MISSED"
        print(f"{m.label.ljust(width)}  {m.p50_ms:6.2f}ms  {m.p99_ms:6.2f}ms  "
              f"p99 < {TARGET_MS:g} ms {mark}")
    for m in measured:
        print(f"\nplan of {m.label!r}:")
        for statement, plan in zip(("page", "count"), m.plan, strict=True):
            print(f"  {statement}:")
            for line in plan.splitlines():
                print(f"    {line}")
    problems = {m.label: m.problems for m in measured if m.problems}
    for label, found in problems.items():
        print(f"PROBLEM in {label}:")
        for text in found:
            print(f"  {text}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps({
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": _machine(), "backend": backend, "executions": count,
        "fillSeconds": fill_seconds,
        "searches": [{"label": m.label, "p50Ms": m.p50_ms, "p99Ms": m.p99_ms,
                      "requests": m.requests, "plans": m.plan, "problems": m.problems}
                     for m in measured],
    }, option=orjson.OPT_INDENT_2))
    print(f"results: {output}")
    return not problems


async def run(folder: Path, count: int, requests: int, postgres: str | None,
              output: Path) -> bool:
    """Fill, measure and report on one backend."""
    if postgres is None:
        return await _on(Server(folder), f"sqlite:///{folder / 'reflow.db'}", count, requests,
                         "SQLite", output)
    async with scratch_database(postgres) as (_, name):
        url = scratch_url(postgres, name)
        return await _on(Server(folder, database_url=url), url, count, requests,
                         "PostgreSQL", output)


async def _on(server: Server, store_url: str, count: int, requests: int, backend: str,
              output: Path) -> bool:
    await server.start()
    try:
        catalogue = await make_catalogue(server, store_url)
        print(f"filling {count:,} executions...", file=sys.stderr)
        seconds = await fill(store_url, catalogue, count)
        measured = []
        for case in cases(catalogue, rotate=50):
            print(f"measuring {case.label}...", file=sys.stderr)
            result = await measure(server, case, requests)
            result.plan = await explain(store_url, case.search)
            result.problems += plan_problems(case.search, result.plan, case.index,
                                             chosen=store_url.startswith("sqlite:"))
            measured.append(result)
    finally:
        server.stop()
    return report(measured, seconds, count, backend, output)


def main(argv: list[str] | None = None,
         runner: Callable[[Any], Any] | None = None) -> int:
    """Run the log search bench; 0 when every answer and plan was right."""
    parser = argparse.ArgumentParser(prog="python -m bench.log_search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=1_000_000,
                        help="executions in the database (%(default)s)")
    parser.add_argument("--requests", type=int, default=500,
                        help="GET /logs calls per search (%(default)s)")
    parser.add_argument("--postgres", nargs="?", metavar="URL",
                        const="postgresql://postgres@127.0.0.1:5432/test",
                        help="on PostgreSQL: a scratch database on the server at URL "
                             "(default: %(const)s)")
    parser.add_argument("--output", type=Path, help="the JSON results (bench/results/...)")
    args = parser.parse_args(argv)
    output = args.output or RESULTS / ("log_search_postgres.json" if args.postgres
                                       else "log_search.json")
    with tempfile.TemporaryDirectory(prefix="reflow-bench-logs-") as folder:
        ok = (runner or event_loop_runner())(run(Path(folder), args.executions, args.requests,
                                                 args.postgres, output))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
