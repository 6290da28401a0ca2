"""Prometheus metrics of this process, on a registry of reflow's own (``GET /metrics``).

Everything here is per process: each ``serve`` or worker process counts what it did and
exposes it on its own ``/metrics``; Prometheus sums across processes. Only the queue depth
is read from the database, at scrape time, so it is the same whichever process answers.

The hooks sit on the run path (about 2,700 executions/s), so each one is a dict lookup of
a cached label child and an increment or observation: no I/O, no allocation per call
beyond what the counters themselves do. docs/operations.md lists the metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from reflow.domain.executions import ExecutionRecord, StepRecord
from reflow.errors import StoreError
from reflow.store.base import Store

log = logging.getLogger(__name__)

# A ``*_created`` series beside every counter and histogram child would double the series
# of reflow_executions_total (one per workflow) for a timestamp Prometheus does not need.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()

# From a millisecond (a claim right after the commit, a transform step) to a minute (a
# backlog, an http step at its timeout).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)
# Claims take at most the worker's free slots (REFLOW_WORKER_CONCURRENCY).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# A scrape must not hang on a stalled database: the queue depth is skipped past this.
QUEUE_DEPTH_TIMEOUT = 2.0

EXECUTIONS = Counter(
    "reflow_executions", "Executions that finished in this process, by final status "
    "and workflow id.", ("status", "workflow"), registry=REGISTRY)
STARTED = Counter(
    "reflow_executions_started", "Executions this process started running, by trigger "
    "mode (a resumed one counts again).", ("mode",), registry=REGISTRY)
QUEUE_DEPTH = Gauge(
    "reflow_queue_depth", "Queued executions in the database, read at scrape time "
    "(NaN when the database did not answer).", registry=REGISTRY)
WAITING = Gauge(
    "reflow_waiting_executions", "Executions waiting for a delay's time, read at scrape "
    "time (NaN when the database did not answer).", registry=REGISTRY)
WAKE_OVERDUE = Gauge(
    "reflow_waiting_overdue_seconds", "How long the soonest waiting execution is past its "
    "wake time (0 when none is due): above a few seconds, nothing wakes them.",
    registry=REGISTRY)
CLAIM_LATENCY = Histogram(
    "reflow_claim_latency_seconds", "From a queued execution's commit to its claim by "
    "this process's worker.", registry=REGISTRY, buckets=LATENCY_BUCKETS)
CLAIM_BATCH = Histogram(
    "reflow_claim_batch_size", "Executions per non-empty claim of this process's worker.",
    registry=REGISTRY, buckets=BATCH_BUCKETS)
STEP_DURATION = Histogram(
    "reflow_step_duration_seconds", "How long each block run (step) took, by step status "
    "(steps reused by a rerun are not counted).", ("status",), registry=REGISTRY,
    buckets=LATENCY_BUCKETS)
PURGED = Counter(
    "reflow_purged_executions", "Finished executions this process deleted past the log "
    "retention window.", registry=REGISTRY)
POOL = Gauge(
    "reflow_db_pool_connections", "This process's database connection pool: in_use, idle "
    "and max (absent for SQLite).", ("state",), registry=REGISTRY)
RUNNING = Gauge(
    "reflow_running_executions", "Executions running in this process's worker, at scrape "
    "time.", registry=REGISTRY)
LEASE_LOST = Counter(
    "reflow_lease_lost", "Executions this process dropped because another worker "
    "took their lease over (this one stalled past it).", registry=REGISTRY)
ERROR_STREAM = Counter(
    "reflow_error_stream_posts", "Error stream POSTs this process made, by outcome: "
    "delivered, retried (failed, tried again later) or dead (failed, given up).",
    ("outcome",), registry=REGISTRY)

# Label children by label values: ``.labels()`` takes a lock and builds a key each call.
_finished: dict[tuple[str, str], Counter] = {}
_started: dict[str, Counter] = {}
_steps: dict[str, Histogram] = {}


def committed(record: ExecutionRecord, steps: Sequence[StepRecord]) -> None:
    """Count a commit of ``record`` with its new ``steps``: their durations, and the
    execution itself when this commit is its final one."""
    for step in steps:
        if step.reused:
            continue
        child = _steps.get(step.status)
        if child is None:
            child = _steps[step.status] = STEP_DURATION.labels(step.status.value)
        child.observe((step.stopped_at - step.started_at) / 1000)
    if record.finished:
        finished(record)


def finished(record: ExecutionRecord) -> None:
    """Count an execution whose final status this process committed."""
    key = (record.status, record.workflow_id)
    child = _finished.get(key)
    if child is None:
        child = _finished[key] = EXECUTIONS.labels(record.status.value, record.workflow_id)
    child.inc()


def started(record: ExecutionRecord) -> None:
    """Count an execution this process starts running."""
    child = _started.get(record.mode)
    if child is None:
        child = _started[record.mode] = STARTED.labels(record.mode.value)
    child.inc()


def claimed(records: Sequence[ExecutionRecord], now: int) -> None:
    """Observe a non-empty claim made at ``now`` (ms): its size, and the wait of each
    execution that was queued (a claim sets ``started_at`` to ``now`` only for those; a
    resumed one kept the ``started_at`` of its first run)."""
    CLAIM_BATCH.observe(len(records))
    for record in records:
        if record.started_at == now:
            CLAIM_LATENCY.observe(max(now - record.created_at, 0) / 1000)


def lease_lost() -> None:
    """Count an execution dropped because another worker holds its lease now."""
    LEASE_LOST.inc()


def count_purged(n: int) -> None:
    """Count ``n`` executions deleted by the retention purge."""
    if n:
        PURGED.inc(n)


def error_stream_post(outcome: str) -> None:
    """Count an error stream POST: ``delivered``, ``retried`` or ``dead``."""
    ERROR_STREAM.labels(outcome).inc()


def observe_pool(in_use: int, idle: int, maximum: int) -> None:
    """Record the database pool's connections as they are now."""
    POOL.labels("in_use").set(in_use)
    POOL.labels("idle").set(idle)
    POOL.labels("max").set(maximum)


async def render(store: Store, running: int, now: int) -> bytes:
    """The scrape: the gauges read now (queue depth, waiting executions, pool, running
    executions), then every metric in Prometheus' text format."""
    try:
        async with asyncio.timeout(QUEUE_DEPTH_TIMEOUT):
            QUEUE_DEPTH.set(await store.queue_depth())
            waiting, soonest = await store.waiting()
        WAITING.set(waiting)
        WAKE_OVERDUE.set(max(0.0, (now - soonest) / 1000) if soonest is not None else 0.0)
    except (StoreError, TimeoutError) as exc:
        # The rest of the scrape is still worth having; /readyz reports the database.
        log.warning("queue depth for /metrics unavailable: %s", exc)
        for gauge in (QUEUE_DEPTH, WAITING, WAKE_OVERDUE):
            gauge.set(float("nan"))
    pool_usage = getattr(store, "pool_usage", None)
    if pool_usage is not None:
        observe_pool(*pool_usage())
    else:
        POOL.clear()  # SQLite: no pool (even if an earlier store in this process had one)
    RUNNING.set(running)
    return generate_latest(REGISTRY)
