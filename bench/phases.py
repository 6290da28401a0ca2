"""The measured loops: runs one at a time and from many clients, logs pages, reruns.

Every loop is bounded by a count and a deadline; every response is checked, and a wrong
one is recorded as a problem (the figures of a run with problems are not to be trusted).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bench.client import Connection, Reply

VALUES = list(range(1, 21))
_MAX_PROBLEMS = 20
_FINISHED = ("succeeded", "failed", "canceled")
_POLL_SECONDS = 5.0
# A loop stops taking new requests at its deadline; one request hanging past the deadline
# by this much aborts the bench (the server is stuck).
_HANG_SECONDS = 30.0


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def expected_output(n: int) -> dict[str, Any]:
    """What the benchmark workflow answers for order ``n``."""
    return {"label_upper": f"ORDER-{n}", "value_count": len(VALUES), "total": sum(VALUES)}


@dataclass(frozen=True)
class Target:
    """Where and what to call: the server, and the installed workflow's ids."""

    host: str
    port: int
    headers: dict[str, str]
    workflow_id: str
    user_id: str

    def connect(self) -> Connection:
        """A new keep-alive connection to the server."""
        return Connection(self.host, self.port, self.headers)


@dataclass
class Sample:
    """The outcome of one measured loop."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    timed_out: bool = False
    # (n, executionId) of every execution the loop made, to check they were stored.
    executions: list[tuple[int, str]] = field(default_factory=list)
    # Reruns only: from the rerun call until the new execution read back finished.
    until_finished: list[float] = field(default_factory=list)

    def problem(self, text: str) -> None:
        """Record a wrong response (keeps the first few texts)."""
        self.problem_count += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)

    def ms(self, q: float, values: list[float] | None = None) -> float:
        """A latency percentile in milliseconds."""
        return percentile(self.latencies if values is None else values, q) * 1000


def _run_request(conn: Connection, target: Target, n: int) -> bytes:
    body = {"workflowId": target.workflow_id, "userId": target.user_id,
            "data": {"label": f"order-{n}", "values": VALUES}}
    return conn.encode("POST", "/run/workflow?wait=10", body)


def _check_run(sample: Sample, n: int, reply: Reply) -> None:
    try:
        answer = reply.json()
        execution_id = answer["executionId"]
    except (ValueError, KeyError, TypeError):
        sample.problem(f"run {n}: {reply.status} {reply.body[:200]!r}")
        return
    sample.executions.append((n, execution_id))
    if reply.status != 200 or answer.get("status") != "succeeded":
        sample.problem(f"run {n}: {reply.status} {reply.body[:200]!r}")
    elif answer.get("output") != expected_output(n):
        sample.problem(f"run {n}: output {answer.get('output')!r} != {expected_output(n)!r}")


async def run_sequential(
    target: Target, count: int, first: int, timeout: float,
    stored: Callable[[list[tuple[int, str]]], list[str]] | None = None,
) -> Sample:
    """``count`` synchronous runs one at a time on one connection, orders ``first``...

    With ``stored`` (which lists what is missing from the database), each execution is
    looked up as soon as its answer arrives: a 200 must mean it is committed already.
    """
    sample = Sample()
    deadline = time.monotonic() + timeout
    async with asyncio.timeout(timeout + _HANG_SECONDS), target.connect() as conn:
        start = time.perf_counter()
        for n in range(first, first + count):
            if time.monotonic() > deadline:
                sample.timed_out = True
                break
            reply = await conn.send(_run_request(conn, target, n))
            sample.latencies.append(reply.seconds)
            _check_run(sample, n, reply)
            if stored is not None and sample.executions:
                for missing in stored(sample.executions[-1:]):
                    sample.problem(f"answered before committed: {missing}")
        sample.seconds = time.perf_counter() - start
    return sample


async def run_concurrent(
    target: Target, count: int, clients: int, first: int, timeout: float
) -> Sample:
    """``count`` synchronous runs from ``clients`` connections, each one request at a time."""
    sample = Sample()
    orders = iter(range(first, first + count))
    deadline = time.monotonic() + timeout
    replies: list[tuple[int, Reply]] = []

    async def client(conn: Connection) -> None:
        for n in orders:  # shared iterator: the clients take the next order in turn
            if time.monotonic() > deadline:
                sample.timed_out = True
                return
            replies.append((n, await conn.send(_run_request(conn, target, n))))

    async with contextlib.AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(target.connect())
                       for _ in range(clients)]
        start = time.perf_counter()
        async with asyncio.timeout(timeout + _HANG_SECONDS):
            await asyncio.gather(*(client(conn) for conn in connections))
        sample.seconds = time.perf_counter() - start
    # Checked after the clock stops, so checking costs the load nothing.
    for n, reply in replies:
        sample.latencies.append(reply.seconds)
        _check_run(sample, n, reply)
    return sample


async def read_logs(target: Target, count: int, limit: int, timeout: float) -> Sample:
    """``count`` requests for the newest page of the user's logs, ``limit`` items a page."""
    sample = Sample()
    path = (f"/workflows/{quote(target.workflow_id)}/logs"
            f"?userId={quote(target.user_id)}&limit={limit}")
    deadline = time.monotonic() + timeout
    async with asyncio.timeout(timeout + _HANG_SECONDS), target.connect() as conn:
        raw = conn.encode("GET", path)
        await conn.send(raw)  # warm-up: first use of the route
        start = time.perf_counter()
        for _ in range(count):
            if time.monotonic() > deadline:
                sample.timed_out = True
                break
            reply = await conn.send(raw)
            sample.latencies.append(reply.seconds)
            _check_logs(sample, reply, limit)
        sample.seconds = time.perf_counter() - start
    return sample


def _check_logs(sample: Sample, reply: Reply, limit: int) -> None:
    try:
        items = reply.json()["data"]
        complete = all(len(item["results"]) == 3 and item["finished"] for item in items)
    except (ValueError, KeyError, TypeError):
        sample.problem(f"logs: {reply.status} {reply.body[:200]!r}")
        return
    if reply.status != 200 or len(items) != limit or not complete:
        sample.problem(f"logs: {reply.status}, {len(items)} items (limit {limit})")


async def rerun(target: Target, sources: list[tuple[int, str]], timeout: float) -> Sample:
    """Rerun each source execution, then read the new one until it has finished.

    ``latencies`` is the rerun call; ``until_finished`` the time from the call until the
    new execution read back finished (as a client polling ``/logs/{id}`` sees it).
    """
    sample = Sample()
    deadline = time.monotonic() + timeout
    base = f"/workflows/{quote(target.workflow_id)}/rerun/"
    async with asyncio.timeout(timeout + _HANG_SECONDS), target.connect() as conn:
        start = time.perf_counter()
        for n, source in sources:
            if time.monotonic() > deadline:
                sample.timed_out = True
                break
            reply = await conn.request("POST", f"{base}{source}?userId={quote(target.user_id)}")
            sample.latencies.append(reply.seconds)
            try:
                new_id = reply.json()["executionId"] if reply.status == 200 else None
            except (ValueError, KeyError, TypeError):
                new_id = None
            if new_id is None:
                sample.problem(f"rerun of {source}: {reply.status} {reply.body[:200]!r}")
                continue
            sample.executions.append((n, new_id))
            finished = await _until_finished(conn, sample, n, new_id)
            if finished is not None:
                sample.until_finished.append(reply.seconds + finished)
        sample.seconds = time.perf_counter() - start
    return sample


async def _until_finished(conn: Connection, sample: Sample, n: int, execution_id: str
                          ) -> float | None:
    raw = conn.encode("GET", f"/logs/{execution_id}")
    start = time.perf_counter()
    while time.perf_counter() - start < _POLL_SECONDS:
        reply = await conn.send(raw)
        detail = reply.json().get("data", {}) if reply.status == 200 else {}
        if detail.get("status") in _FINISHED:
            if detail.get("output") != expected_output(n) or detail.get("status") != "succeeded":
                sample.problem(f"rerun {execution_id}: {detail.get('status')} "
                               f"{detail.get('output')!r}")
            return time.perf_counter() - start
        if reply.status != 200:
            sample.problem(f"rerun {execution_id}: /logs answered {reply.status}")
            return None
    sample.problem(f"rerun {execution_id}: not finished after {_POLL_SECONDS:g} s")
    return None
