"""Webhook calls accepted: ``python -m bench.webhooks [--calls N] [--clients C]``.

One user has two copies of the benchmark workflow (examples/order-summary.yaml) triggered
by webhooks: a plain one, and one that checks a GitHub-style HMAC-SHA256 signature and
deduplicates on a delivery id header. Each is called ``--calls`` times from ``--clients``
keep-alive connections, without an API key, as a sender would; an answer (200 with the
execution id) means the execution is committed. Then every execution must finish and be
stored with its three steps, and resent delivery ids must answer their first execution.

Prints calls accepted per second and the call's p50 / p99 for each, and writes them to
bench/results/webhooks.json.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime
import hashlib
import hmac
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import yaml

from bench import database
from bench.client import Connection, Reply
from bench.phases import VALUES, percentile
from bench.run import RESULTS, event_loop_runner
from bench.server import HEADERS, WORKFLOW_FILE, Server

SECRET = "bench-webhook-secret"
_DEADLINE_SECONDS = 120.0
_FINISH_SECONDS = 120.0
_RESENT = 100


@dataclass
class Loop:
    """The outcome of one loop of webhook calls."""

    label: str
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    executions: list[tuple[int, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Calls answered per second."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def figures(self) -> dict[str, float]:
        """What the loop measured."""
        return {"callsPerSecond": self.rate, "calls": len(self.latencies),
                "p50Ms": percentile(self.latencies, 0.5) * 1000,
                "p99Ms": percentile(self.latencies, 0.99) * 1000}


def definition(name: str, **trigger: Any) -> dict[str, Any]:
    """The benchmark workflow, named ``name``, triggered by a webhook."""
    found: dict[str, Any] = copy.deepcopy(yaml.safe_load(WORKFLOW_FILE.read_text()))
    found["name"] = name
    found["trigger"] = {"type": "webhook", **trigger}
    return found


SIGNED = {"verify": {"header": "X-Hub-Signature-256", "secret": "benchSecret",
                     "prefix": "sha256="},
          "dedupe": {"header": "X-Delivery"}}


def _json(reply: Reply, what: str) -> Any:
    if reply.status != 200:
        raise RuntimeError(f"{what} failed: {reply.status} {reply.body[:300]!r}")
    return reply.json()


async def setup(conn: Connection) -> tuple[str, str]:
    """The two webhook copies of one user: their URL paths (plain, signed)."""
    _json(await conn.request("PUT", "/env", {"env": {"benchSecret": SECRET}}), "set env")
    user = _json(await conn.request("POST", "/users", {"username": "hooks@example.com"}),
                 "create user")["userId"]
    paths = []
    for name, trigger in (("Order hook", {}), ("Signed order hook", SIGNED)):
        workflow = _json(await conn.request("POST", "/workflows", definition(name, **trigger)),
                         "create workflow")["workflowId"]
        _json(await conn.request("PUT", "/workflows/activate",
                                 {"userId": user, "workflowId": workflow}), "activate")
        detail = _json(await conn.request(
            "GET", f"/workflows/{workflow}?userId={quote(user)}"), "get workflow")
        paths.append(urlsplit(detail["data"]["webhookUrl"]).path)
    return paths[0], paths[1]


def call_bytes(conn: Connection, path: str, n: int, signed: bool) -> bytes:
    """The raw request for order ``n``: its JSON body, and when ``signed`` its signature
    and delivery id (computed before the clock starts)."""
    body = orjson.dumps({"label": f"order-{n}", "values": VALUES})
    raw = conn.encode("POST", path, body)
    if not signed:
        return raw
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    extra = f"x-hub-signature-256: sha256={signature}\r\nx-delivery: d-{n}\r\n".encode()
    line, _, rest = raw.partition(b"\r\n")
    return line + b"\r\n" + extra + rest


async def call_loop(port: int, loop: Loop, requests: list[tuple[int, bytes]],
                    clients: int) -> None:
    """Send every request from ``clients`` connections, one at a time each."""
    queue = iter(requests)
    deadline = time.monotonic() + _DEADLINE_SECONDS
    replies: list[tuple[int, Reply]] = []

    async def client(conn: Connection) -> None:
        for n, raw in queue:
            if time.monotonic() > deadline:
                loop.problems.append(f"stopped by the {_DEADLINE_SECONDS:g} s limit")
                return
            replies.append((n, await conn.send(raw)))

    connections = [Connection("127.0.0.1", port, {}) for _ in range(clients)]
    for conn in connections:
        await conn.__aenter__()
    try:
        start = time.perf_counter()
        async with asyncio.timeout(_DEADLINE_SECONDS + 30):
            await asyncio.gather(*(client(conn) for conn in connections))
        loop.seconds = time.perf_counter() - start
    finally:
        for conn in connections:
            await conn.close()
    for n, reply in replies:  # checked after the clock stops
        loop.latencies.append(reply.seconds)
        try:
            answer = reply.json()
            loop.executions.append((n, answer["executionId"]))
            ok = reply.status == 200 and not answer.get("duplicate", False)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok and len(loop.problems) < 10:
            loop.problems.append(f"order {n}: {reply.status} {reply.body[:200]!r}")


async def resend(port: int, path: str, sent: Loop) -> list[str]:
    """Send some signed deliveries again: each must answer its first execution."""
    problems = []
    async with Connection("127.0.0.1", port, {}) as conn:
        for n, execution_id in sent.executions[:_RESENT]:
            reply = await conn.send(call_bytes(conn, path, n, signed=True))
            answer = reply.json() if reply.status == 200 else {}
            if answer.get("executionId") != execution_id or not answer.get("duplicate"):
                problems.append(f"resent order {n}: {reply.status} {reply.body[:200]!r}")
    return problems


async def stored(server: Server, executions: list[tuple[int, str]]) -> list[str]:
    """Wait until every execution is stored finished with its steps; what is not."""
    deadline = time.monotonic() + _FINISH_SECONDS
    while True:
        missing = database.stored_problems(server.db_path, executions)
        if not missing or time.monotonic() > deadline:
            return missing[:10]
        await asyncio.sleep(0.2)


def _print(loop: Loop) -> None:
    figures = loop.figures()
    print(f"{loop.label}: {figures['calls']:,.0f} calls in {loop.seconds:.2f} s = "
          f"{figures['callsPerSecond']:,.0f} calls accepted/s; call p50 "
          f"{figures['p50Ms']:.1f} ms, p99 {figures['p99Ms']:.1f} ms")
    for problem in loop.problems:
        print(f"  problem: {problem}")


async def measure(folder: Path, calls: int, clients: int, output: Path) -> int:
    """Start a server, call its webhook URLs, report; 1 when an answer was wrong."""
    server = Server(folder)
    await server.start()
    try:
        async with Connection("127.0.0.1", server.port, HEADERS) as conn:
            plain_path, signed_path = await setup(conn)
        loops = []
        for label, path, signed, first in (
                ("plain", plain_path, False, 0),
                ("signed + dedupe", signed_path, True, calls)):
            loop = Loop(f"{label}, {clients} clients")
            encoder = Connection("127.0.0.1", server.port, {})
            requests = [(n, call_bytes(encoder, path, n, signed))
                        for n in range(first, first + calls)]
            await call_loop(server.port, loop, requests, clients)
            _print(loop)
            loops.append(loop)
        problems = [p for loop in loops for p in loop.problems]
        problems += await stored(server, [e for loop in loops for e in loop.executions])
        problems += await resend(server.port, signed_path, loops[1])
        for problem in problems[:20]:
            print(f"PROBLEM: {problem}")
        if not problems:
            print("checks: every call answered 200, every execution stored succeeded with "
                  f"its steps, {_RESENT} resent deliveries answered their first execution")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(orjson.dumps({
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "clients": clients,
            "figures": {loop.label: loop.figures() for loop in loops},
            "checksPassed": not problems,
            "problems": problems,
        }, option=orjson.OPT_INDENT_2))
        print(f"results: {output}")
        return 1 if problems else 0
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the webhook bench."""
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5_000,
                        help="calls per webhook (5,000; at least the 100 resent)")
    parser.add_argument("--clients", type=int, default=16, help="connections (16)")
    parser.add_argument("--output", type=Path, default=RESULTS / "webhooks.json",
                        help="where to write the JSON results (%(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reflow-bench-webhooks-") as folder:
        result: int = event_loop_runner()(measure(Path(folder), max(args.calls, _RESENT),
                                                  args.clients, args.output))
    return result


if __name__ == "__main__":
    sys.exit(main())
