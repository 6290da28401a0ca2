"""Bulk rerun: ``python -m bench.reruns [--failed N] [--postgres URL]``.

A real ``reflow serve`` (SQLite by default). N executions (10,000) of a workflow that
fails on its trigger data are run through the API; then new runs' latency is measured
idle (``POST /run/workflow?wait=``, from two clients, for 8 s), and again while one bulk
rerun job (``POST /reruns``) reruns every failed execution. Prints reruns per second from the job's
creation until every rerun execution has finished (target: at least 1,000/s), and the
new runs' p50 / p99 idle and meanwhile (target: p99 within 2x of idle).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.client import Connection, Reply
from bench.phases import percentile
from bench.run import event_loop_runner
from bench.server import HEADERS, Server

WORKFLOW: dict[str, Any] = {
    "name": "Bench rerun",
    "trigger": {"type": "api"},
    "blocks": [
        {"id": "total", "type": "transform", "with": {"value": "{{ $sum(trigger.data.values) }}"}},
        {"id": "check", "type": "transform",
         "with": {"value": "{{ trigger.data.fail ? $error('upstream down') : total }}"}},
        {"id": "done", "type": "respond", "with": {"body": {"total": "{{ check }}"}}},
    ],
}
_CLIENTS = 8
_PROBE_CLIENTS = 2
# Idle runs are measured this long, about as long as the job at 1,000/s: a p99 of a
# thousand runs (the tenth slowest) moved between 1.5 and 2.7 ms from one run to the next.
_IDLE_SECONDS = 8.0
_FINISH_SECONDS = 600.0
_FINISHED = ("succeeded", "failed", "cancelled")


def _json(reply: Reply, what: str) -> Any:
    if reply.status != 200:
        raise RuntimeError(f"{what} failed: {reply.status} {reply.body[:300]!r}")
    return reply.json()


async def setup(conn: Connection) -> tuple[str, str]:
    """The workflow and a user who installed it."""
    workflow = _json(await conn.request("POST", "/workflows", WORKFLOW), "create workflow")
    user = _json(await conn.request("POST", "/users", {"username": "reruns@example.com"}),
                 "create user")
    _json(await conn.request("PUT", "/workflows/activate", {
        "userId": user["userId"], "workflowId": workflow["workflowId"]}), "activate")
    return str(workflow["workflowId"]), str(user["userId"])


async def fail_many(port: int, workflow_id: str, user_id: str, count: int) -> None:
    """``count`` failed executions, run through the API from several clients."""
    numbers = iter(range(count))

    async def client() -> None:
        async with Connection("127.0.0.1", port, HEADERS) as conn:
            for n in numbers:
                body = {"workflowId": workflow_id, "userId": user_id,
                        "data": {"fail": True, "values": [n, 1]}}
                reply = await conn.request("POST", "/run/workflow?wait=10", body)
                if _json(reply, "failed run").get("status") != "failed":
                    raise RuntimeError(f"run did not fail: {reply.body[:200]!r}")

    await asyncio.gather(*(client() for _ in range(_CLIENTS)))


async def probe(port: int, workflow_id: str, user_id: str, stop: asyncio.Event
                ) -> list[float]:
    """New runs' latencies (``?wait=``, succeeding) from two clients, until ``stop``."""
    latencies: list[float] = []

    async def client() -> None:
        async with Connection("127.0.0.1", port, HEADERS) as conn:
            while not stop.is_set():
                body = {"workflowId": workflow_id, "userId": user_id,
                        "data": {"fail": False, "values": [1, 2, 3]}}
                reply = await conn.request("POST", "/run/workflow?wait=10", body)
                if _json(reply, "probe run").get("status") != "succeeded":
                    raise RuntimeError(f"probe run: {reply.body[:200]!r}")
                latencies.append(reply.seconds)

    await asyncio.gather(*(client() for _ in range(_PROBE_CLIENTS)))
    return latencies


async def follow(port: int, job_id: str) -> tuple[float, float, dict[str, int]]:
    """Seconds until every item is recorded, until every rerun has finished, and the new
    executions by status."""
    start = time.perf_counter()
    recorded = 0.0
    deadline = time.monotonic() + _FINISH_SECONDS
    async with Connection("127.0.0.1", port, HEADERS) as conn:
        while True:
            job = _json(await conn.request("GET", f"/reruns/{job_id}?limit=1"), "job")
            if job["pending"] == 0 and job["status"] == "done":
                recorded = time.perf_counter() - start
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"job not done in {_FINISH_SECONDS:g} s: {job}")
            await asyncio.sleep(0.05)
        while True:
            statuses: dict[str, int] = {}
            offset: int | None = 0
            while offset is not None:
                page = _json(await conn.request(
                    "GET", f"/reruns/{job_id}?offset={offset}&limit=1000"), "results")
                for result in page["results"]:
                    status = result.get("status") or result["state"]
                    statuses[status] = statuses.get(status, 0) + 1
                offset = page["nextOffset"]
            if all(s in _FINISHED for s in statuses):
                return recorded, time.perf_counter() - start, statuses
            if time.monotonic() > deadline:
                raise RuntimeError(f"reruns not finished in {_FINISH_SECONDS:g} s: {statuses}")
            await asyncio.sleep(0.05)


def _latency(label: str, values: list[float]) -> float:
    p99 = percentile(values, 0.99)
    print(f"new runs {label}: {len(values)} runs, p50 {percentile(values, 0.5) * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms")
    return p99


async def measure(folder: Path, failed: int, database_url: str | None,
                  rate: int | None = None) -> int:
    """Start a server, fail ``failed`` runs, rerun them all in one job; 1 if off target."""
    server = Server(folder, database_url=database_url,
                    settings={"REFLOW_RERUN_RATE": str(rate)} if rate else {})
    await server.start()
    try:
        async with Connection("127.0.0.1", server.port, HEADERS) as conn:
            workflow_id, user_id = await setup(conn)
        begun = time.perf_counter()
        await fail_many(server.port, workflow_id, user_id, failed)
        print(f"{failed:,} failed executions in {time.perf_counter() - begun:.1f} s")
        idle_stop = asyncio.Event()
        asyncio.get_running_loop().call_later(_IDLE_SECONDS, idle_stop.set)
        idle = await probe(server.port, workflow_id, user_id, idle_stop)
        idle_p99 = _latency("idle", idle)
        stop = asyncio.Event()
        during_task = asyncio.create_task(probe(server.port, workflow_id, user_id, stop))
        async with Connection("127.0.0.1", server.port, HEADERS) as conn:
            created = _json(await conn.request("POST", "/reruns", {
                "filter": {"workflowId": workflow_id, "since": "1h"}}), "create job")
        if created["total"] != failed:
            raise RuntimeError(f"the job selected {created['total']}, not {failed}")
        recorded, finished, statuses = await follow(server.port, created["jobId"])
        stop.set()
        during = await during_task
        print(f"bulk rerun of {failed:,}: every rerun started and recorded in {recorded:.2f} s "
              f"({failed / recorded:,.0f}/s), every rerun finished in {finished:.2f} s "
              f"= {failed / finished:,.0f} reruns/s (target 1,000/s); new executions: "
              f"{statuses}")
        during_p99 = _latency("during the job", during)
        ratio = during_p99 / idle_p99
        print(f"p99 during / idle = {ratio:.2f} (target at most 2)")
        return 0 if failed / finished >= 1000 and ratio <= 2 else 1
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the bulk rerun bench."""
    parser = argparse.ArgumentParser(prog="python -m bench.reruns", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--failed", type=int, default=10_000,
                        help="failed executions to rerun (10,000, a job's maximum)")
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="run on this PostgreSQL database, empty (a second run needs "
                        "it emptied again: the first team's key is made only once)")
    parser.add_argument("--rate", type=int, default=None,
                        help="the server's REFLOW_RERUN_RATE (its default when not given)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reflow-bench-reruns-") as folder:
        result: int = event_loop_runner()(measure(Path(folder), args.failed, args.postgres,
                                                  args.rate))
    return result


if __name__ == "__main__":
    sys.exit(main())
