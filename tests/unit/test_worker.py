"""The worker: claims executions from the database, runs them, resumes abandoned ones."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from engine_support import (
    TEAM_ID,
    Effect,
    compile_doc,
    queued_record,
    running_record,
    workflow,
)

from reflow.domain.executions import ExecutionRecord, ExecutionStatus, StepRecord, StepStatus
from reflow.engine import Engine, EngineConfig, now_ms
from reflow.engine.compiled import CompiledWorkflow
from reflow.errors import NotFound
from reflow.executor import InProcessExecutor, Job, JobBook
from reflow.store.sqlite import SqliteStore
from reflow.worker import Worker, new_owner

pytestmark = pytest.mark.anyio

WAIT_LIMIT = 5.0  # seconds any wait for the worker may take before the test fails


class Runner:
    """A worker over one compiled workflow, prepared like ``RunService.prepare``."""

    def __init__(self, store: SqliteStore, compiled: CompiledWorkflow, **options: Any) -> None:
        self.store = store
        self.compiled = compiled
        self.engine = Engine(EngineConfig())
        options = {"concurrency": 4, "poll_interval": 0.02, **options}
        self.book = JobBook(store, new_owner(), options.pop("lease_seconds", 30.0))
        self.worker = Worker(self.book, InProcessExecutor(self.engine, self.book), self.prepare,
                             **options)

    async def prepare(self, record: ExecutionRecord) -> Job:
        recorded, record.steps = record.steps, []
        trigger = orjson.loads(record.trigger)
        return Job(record, self.compiled, trigger, recorded, persisted=True)

    def job(self, record: ExecutionRecord) -> Job:
        """A run started by this process, not yet stored (as RunService starts one)."""
        return Job(record, self.compiled, {"data": None}, [], persisted=False)

    async def finished(self, ids: Iterable[str]) -> list[ExecutionRecord]:
        """Wait (bounded) until every execution is finished; return them as stored."""
        ids = list(ids)
        async with asyncio.timeout(WAIT_LIMIT):
            while True:
                records = [await self.store.get_execution(TEAM_ID, i) for i in ids]
                if all(r is not None and r.finished for r in records):
                    return [r for r in records if r is not None]
                await asyncio.sleep(0.01)

    async def run_to_end(self, ids: Iterable[str]) -> list[ExecutionRecord]:
        """Start the worker, wait (bounded) until every execution finished, stop the worker."""
        await self.worker.start()
        try:
            return await self.finished(ids)
        finally:
            await self.worker.stop()


def single_call(effect: Effect, **params: Any) -> CompiledWorkflow:
    """A workflow of one ``call`` block that runs ``effect`` with ``params``."""
    return compile_doc(workflow({"id": "call", "type": "effect", "with": params}), effect)


async def slow_run_started(
    store: SqliteStore, seconds: float, **options: Any
) -> tuple[Runner, Effect, ExecutionRecord]:
    """A started worker, already running one execution whose effect sleeps ``seconds``."""
    effect = Effect()
    runner = Runner(store, single_call(effect, value=1, seconds=seconds), **options)
    return runner, effect, await started_on(runner, effect)


async def started_on(runner: Runner, effect: Effect) -> ExecutionRecord:
    """Queue one execution, start the worker and wait until its effect runs; the record."""
    record = queued_record(None)
    await runner.store.insert_execution(record)
    await runner.worker.start()
    try:
        async with asyncio.timeout(WAIT_LIMIT):
            await effect.started.wait()
    except BaseException:
        await runner.worker.stop()
        raise
    return record


async def test_worker_claims_queued_executions_and_runs_them_to_the_end(
    store: SqliteStore,
) -> None:
    effect = Effect()
    compiled = compile_doc(workflow(
        {"id": "call", "type": "effect", "with": {"value": "{{ trigger.data.n * 2 }}"}},
        {"id": "done", "type": "respond", "with": {"body": "{{ call }}"}},
    ), effect)
    runner = Runner(store, compiled)
    records = [queued_record({"n": n}) for n in range(6)]
    for record in records:
        await store.insert_execution(record)
    done = await runner.run_to_end(r.id for r in records)
    assert [d.status for d in done] == [ExecutionStatus.SUCCEEDED] * 6
    assert [orjson.loads(d.output or b"null") for d in done] == [0, 2, 4, 6, 8, 10]
    assert all([s.block_id for s in d.steps] == ["call", "done"] for d in done)
    assert all(d.lease_owner is None and d.lease_expires is None for d in done)
    assert sorted(effect.execution_ids) == sorted(r.id for r in records)  # each ran exactly once


async def test_expired_lease_of_a_dead_worker_is_claimed_and_resumed_from_its_last_step(
    store: SqliteStore,
) -> None:
    effect = Effect()
    compiled = compile_doc(workflow(
        {"id": "first", "type": "effect", "with": {"value": "{{ trigger.data.n }}"}},
        {"id": "second", "type": "effect", "with": {"value": "{{ first + 1 }}"}},
        {"id": "done", "type": "respond", "with": {"body": "{{ second }}"}},
    ), effect)
    at = now_ms() - 60_000
    recorded = StepRecord(0, "first", StepStatus.SUCCEEDED, 1, at, at, b'{"value":41}', b"41")
    abandoned = queued_record({"n": 41}, status=ExecutionStatus.RUNNING, started_at=at,
                              lease_owner="dead-host:1:abc", lease_expires=now_ms() - 1,
                              steps=[recorded])
    await store.insert_execution(abandoned)
    (done,) = await Runner(store, compiled).run_to_end([abandoned.id])
    assert done.status is ExecutionStatus.SUCCEEDED
    assert [(s.seq, s.block_id) for s in done.steps] == [(0, "first"), (1, "second"),
                                                          (2, "done")]
    assert effect.execution_ids == [abandoned.id]  # only "second": "first" was recorded
    assert orjson.loads(done.output or b"null") == 42
    assert done.started_at == at


async def test_live_lease_of_another_worker_is_left_alone(store: SqliteStore) -> None:
    effect = Effect()
    taken = queued_record(None, status=ExecutionStatus.RUNNING, started_at=now_ms(),
                          lease_owner="other:1:abc", lease_expires=now_ms() + 60_000)
    await store.insert_execution(taken)
    runner = Runner(store, single_call(effect, value=1))
    await runner.worker.start()
    runner.worker.wake()
    await asyncio.sleep(0.1)  # several poll intervals
    await runner.worker.stop()
    assert effect.calls == []
    assert await store.execution_status(TEAM_ID, taken.id) == "running"


async def test_stop_lets_running_executions_finish(store: SqliteStore) -> None:
    runner, _, record = await slow_run_started(store, seconds=0.2)
    await runner.worker.stop(grace=WAIT_LIMIT)
    assert await store.execution_status(TEAM_ID, record.id) == "succeeded"
    assert runner.worker.running == {}


async def test_stopped_worker_claims_nothing_more(store: SqliteStore) -> None:
    runner = Runner(store, single_call(Effect(), value=1))
    await runner.worker.start()
    await runner.worker.stop()
    late = queued_record(None)
    await store.insert_execution(late)
    runner.worker.wake()
    await asyncio.sleep(0.1)
    assert await store.execution_status(TEAM_ID, late.id) == "queued"


async def test_stop_after_grace_cancels_and_releases_the_execution_to_resume(
    store: SqliteStore,
) -> None:
    runner, _, record = await slow_run_started(store, seconds=10)
    await runner.worker.stop(grace=0.05)
    stored = await store.get_execution(TEAM_ID, record.id)
    # Not failed: still running, its lease given back so another worker claims it at once,
    # and not counted as a resume when it does (nobody died).
    assert stored is not None
    assert stored.status is ExecutionStatus.RUNNING
    assert (stored.lease_owner, stored.lease_expires) == (None, None)
    assert stored.steps == []
    [claimed] = await store.claim_executions("next", now_ms(), now_ms() + 30_000, 10)
    assert (claimed.id, claimed.resumes) == (record.id, 0)


async def test_heartbeat_keeps_a_long_run_leased(store: SqliteStore) -> None:
    # Renewed every lease/3 = 0.1s: only a stall of 0.2s could let the lease lapse.
    runner, effect, record = await slow_run_started(store, seconds=0.8, lease_seconds=0.3)
    try:
        await asyncio.sleep(0.6)  # two lease lengths
        now = now_ms()
        assert await store.claim_executions("thief", now, now + 30_000, 10) == []
        (done,) = await runner.finished([record.id])
    finally:
        await runner.worker.stop()
    assert done.status is ExecutionStatus.SUCCEEDED
    assert effect.execution_ids == [record.id]


async def test_an_execution_that_cannot_be_prepared_is_failed_not_claimed_forever(
    store: SqliteStore,
) -> None:
    runner = Runner(store, single_call(Effect(), value=1))

    async def broken(record: ExecutionRecord) -> Job:
        raise NotFound("workflow has no version 9")

    runner.worker.prepare = broken
    record = queued_record(None)
    await store.insert_execution(record)
    [done] = await runner.run_to_end([record.id])
    assert done.status is ExecutionStatus.FAILED
    assert done.lease_owner is None
    assert orjson.loads(done.error or b"null") == {
        "message": "cannot run: workflow has no version 9", "blockId": None}


async def test_an_execution_running_here_is_not_started_again_when_its_lease_looks_expired(
    store: SqliteStore,
) -> None:
    # A run answered at its end is first inserted late, with the lease it took at the
    # start: the claim loop must not start a second copy of what already runs here.
    effect = Effect()
    runner = Runner(store, single_call(effect, value=1, seconds=0.5), poll_interval=0.01)
    record = running_record(None, lease_owner=runner.worker.owner, lease_expires=now_ms() - 1)
    job = runner.job(record)
    await runner.book.ensure(job)
    record.lease_expires = now_ms() - 1
    await store.save_execution(record, [], owner=runner.worker.owner)
    runner.worker.spawn(job)
    [done] = await runner.run_to_end([record.id])
    assert done.status is ExecutionStatus.SUCCEEDED
    assert effect.execution_ids == [record.id]


async def test_the_heartbeat_keeps_the_lease_of_a_run_not_yet_stored_current(
    store: SqliteStore,
) -> None:
    effect = Effect()
    runner = Runner(store, single_call(effect, value=1, seconds=0.6), lease_seconds=1)
    record = running_record(None, lease_owner=runner.worker.owner, lease_expires=now_ms())
    runner.worker.spawn(runner.job(record))
    await runner.worker.start()
    try:
        await asyncio.sleep(0.5)
        assert (record.lease_expires or 0) > now_ms()  # renewed in memory before its insert
    finally:
        await runner.worker.stop()


async def _resume_abandoned(store: SqliteStore, effect: Effect, resumes: int) -> ExecutionRecord:
    """Run an execution a dead process left running after ``resumes`` earlier resumes."""
    abandoned = queued_record(None, status=ExecutionStatus.RUNNING, started_at=now_ms(),
                              lease_owner="dead:1:abc", lease_expires=now_ms() - 1,
                              resumes=resumes)
    await store.insert_execution(abandoned)
    [done] = await Runner(store, single_call(effect, value=1)).run_to_end([abandoned.id])
    return done


async def test_an_execution_that_keeps_killing_its_process_is_failed_instead_of_resumed(
    store: SqliteStore,
) -> None:
    # Resumed twice already (the default limit), and its process died again.
    effect = Effect()
    done = await _resume_abandoned(store, effect, resumes=2)
    assert done.status is ExecutionStatus.FAILED
    assert done.resumes == 3
    message = orjson.loads(done.error or b"null")["message"]
    assert "stopped 3 times" in message and "not resumed again" in message
    assert effect.calls == []  # never run a third time


async def test_an_abandoned_execution_within_the_limit_resumes_and_counts_it(
    store: SqliteStore,
) -> None:
    done = await _resume_abandoned(store, Effect(), resumes=1)
    assert done.status is ExecutionStatus.SUCCEEDED
    assert done.resumes == 2


async def test_a_cancel_flagged_in_the_database_stops_a_running_execution_before_its_next_block(
    store: SqliteStore,
) -> None:
    effect = Effect()
    compiled = compile_doc(workflow(
        {"id": "slow", "type": "effect", "with": {"value": 1, "seconds": 0.3}},
        {"id": "after", "type": "effect", "with": {"value": 2}},
    ), effect)
    runner = Runner(store, compiled)
    record = await started_on(runner, effect)
    try:
        # What `reflow cancel` does from another process: only the flag is written.
        await store.request_cancel(TEAM_ID, record.id, now_ms(), b"null")
        (done,) = await runner.finished([record.id])
    finally:
        await runner.worker.stop()
    assert done.status is ExecutionStatus.CANCELLED
    assert [s.block_id for s in done.steps] == ["slow"]
    assert orjson.loads(done.error or b"null") == {
        "message": "cancelled before block 'after' ran", "blockId": "after"}
