"""Custom events fanned out: ``python -m bench.events [--events N] [--subscribers K]``.

One user has K active installations subscribed to one event (100 by default). Each
``POST /run/event`` commits K executions before it answers; the bench fires events one at a
time and from several clients, then waits until every execution has finished, and prints:
events answered per second, executions committed per second by the fan-out, the event
call's p50 / p99, and the executions finished per second through the workers. Every loop is
bounded by a count and a deadline; every answer is checked (status, K execution ids).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.client import Connection, Reply
from bench.phases import VALUES, percentile
from bench.run import event_loop_runner
from bench.server import HEADERS, WORKFLOW_FILE, Server

EVENT = "bench.order.paid"
_DEADLINE_SECONDS = 120.0
_FINISH_SECONDS = 300.0
_CLIENTS = 4


@dataclass
class Fired:
    """The outcome of one loop of event calls."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    executions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def subscriber_definition(n: int) -> dict[str, Any]:
    """The benchmark workflow (examples/order-summary.yaml), named ``n``, on the event."""
    definition: dict[str, Any] = copy.deepcopy(yaml.safe_load(WORKFLOW_FILE.read_text()))
    definition["name"] = f"Order summary on event {n}"
    definition["trigger"] = {"type": "event", "event": EVENT,
                             "schema": definition["trigger"]["schema"]}
    return definition


def _json(reply: Reply, what: str) -> Any:
    if reply.status != 200:
        raise RuntimeError(f"{what} failed: {reply.status} {reply.body[:300]!r}")
    return reply.json()


async def setup(conn: Connection, subscribers: int) -> str:
    """A user with ``subscribers`` active installations of event workflows; its id."""
    user = _json(await conn.request("POST", "/users", {"username": "events@example.com"}),
                 "create user")["userId"]
    for n in range(subscribers):
        created = _json(await conn.request("POST", "/workflows", subscriber_definition(n)),
                        "create workflow")
        _json(await conn.request("PUT", "/workflows/activate",
                                 {"userId": user, "workflowId": created["workflowId"]}),
              "activate")
    return str(user)


def _check(fired: Fired, reply: Reply, subscribers: int) -> None:
    fired.latencies.append(reply.seconds)
    try:
        ids = reply.json()["executionIds"]
    except (ValueError, KeyError, TypeError):
        ids = None
    if reply.status != 200 or not isinstance(ids, list) or len(ids) != subscribers:
        if len(fired.problems) < 10:
            fired.problems.append(f"{reply.status} {reply.body[:200]!r}")
        return
    fired.executions.extend(ids)


async def fire(port: int, user: str, events: int, clients: int, subscribers: int) -> Fired:
    """``events`` calls of POST /run/event from ``clients`` connections, one at a time each."""
    fired = Fired()
    numbers = iter(range(events))
    deadline = time.monotonic() + _DEADLINE_SECONDS

    async def client() -> None:
        async with Connection("127.0.0.1", port, HEADERS) as conn:
            for n in numbers:
                if time.monotonic() > deadline:
                    return
                body = {"event": EVENT, "userId": user,
                        "data": {"label": f"order-{n}", "values": VALUES}}
                _check(fired, await conn.request("POST", "/run/event", body), subscribers)

    start = time.perf_counter()
    async with asyncio.timeout(_DEADLINE_SECONDS + 30):
        await asyncio.gather(*(client() for _ in range(clients)))
    fired.seconds = time.perf_counter() - start
    return fired


async def wait_finished(port: int, executions: list[str]) -> float:
    """Seconds until the last of ``executions`` reads back finished (checked newest first)."""
    start = time.perf_counter()
    deadline = time.monotonic() + _FINISH_SECONDS
    async with Connection("127.0.0.1", port, HEADERS) as conn:
        for execution_id in reversed(executions):
            while True:
                reply = await conn.request("GET", f"/logs/{execution_id}")
                status = _json(reply, "read execution")["data"]["status"]
                if status in ("succeeded", "failed", "canceled", "cancelled"):
                    if status != "succeeded":
                        raise RuntimeError(f"execution {execution_id} {status}")
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"executions not finished in {_FINISH_SECONDS:g} s")
                await asyncio.sleep(0.05)
    return time.perf_counter() - start


def _report(label: str, fired: Fired, subscribers: int) -> None:
    done = len(fired.latencies)
    rate = done / fired.seconds if fired.seconds else 0.0
    print(f"{label}: {done} events in {fired.seconds:.2f} s = {rate:,.0f} events/s, "
          f"{rate * subscribers:,.0f} executions committed/s; event call p50 "
          f"{percentile(fired.latencies, 0.5) * 1000:.1f} ms, p99 "
          f"{percentile(fired.latencies, 0.99) * 1000:.1f} ms")
    for problem in fired.problems:
        print(f"  problem: {problem}")


async def measure(folder: Path, events: int, subscribers: int) -> int:
    """Start a server, fan out, report; 1 when an answer was wrong."""
    server = Server(folder)
    await server.start()
    try:
        async with Connection("127.0.0.1", server.port, HEADERS) as conn:
            user = await setup(conn, subscribers)
        start = time.perf_counter()
        sequential = await fire(server.port, user, events // 2, 1, subscribers)
        _report("one client", sequential, subscribers)
        concurrent = await fire(server.port, user, events - events // 2, _CLIENTS,
                                subscribers)
        _report(f"{_CLIENTS} clients", concurrent, subscribers)
        executions = sequential.executions + concurrent.executions
        waited = await wait_finished(server.port, executions)
        total = time.perf_counter() - start
        print(f"all {len(executions):,} executions finished {waited:.2f} s after the last "
              f"event: {len(executions) / total:,.0f} executions finished/s from the first "
              "event to the last execution's end")
        return 1 if sequential.problems or concurrent.problems else 0
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the event fan-out bench."""
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200, help="events fired (200)")
    parser.add_argument("--subscribers", type=int, default=100,
                        help="installations subscribed to the event (100)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reflow-bench-events-") as folder:
        result: int = event_loop_runner()(measure(Path(folder), args.events,
                                                  args.subscribers))
    return result


if __name__ == "__main__":
    sys.exit(main())
