"""The worker: claims executions from the database, runs them, resumes abandoned ones."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from reflow.blocks import block_specs, load_blocks
from reflow.blocks.base import BlockContext, Outcome
from reflow.domain.definitions import BlockSpec, validate_definition
from reflow.domain.executions import (
    ExecutionRecord,
    ExecutionStatus,
    StepRecord,
    StepStatus,
    TriggerMode,
)
from reflow.engine import Engine, EngineConfig, Recorder, RunState, now_ms
from reflow.engine.compiled import CompiledWorkflow, compile_workflow
from reflow.ids import new_execution_id, new_object_id
from reflow.store.migrate import upgrade
from reflow.store.sqlite import SqliteStore
from reflow.worker import Worker

pytestmark = pytest.mark.anyio

TEAM_ID = new_object_id()
WORKFLOW_ID = new_object_id()
WAIT_LIMIT = 5.0  # seconds any wait for the worker may take before the test fails


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Effect:
    """A side-effecting test block: counts calls, sleeps ``seconds``, outputs ``value``."""

    type: ClassVar[str] = "effect"
    spec: ClassVar[BlockSpec] = BlockSpec(optional=frozenset({"value", "seconds"}))
    side_effects: ClassVar[bool] = True

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.started = asyncio.Event()

    async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
        """Note the call (by execution), sleep if asked, output the value."""
        self.calls.append(ctx.execution_id)
        self.started.set()
        await asyncio.sleep(params.get("seconds", 0))
        return Outcome(params.get("value"))


def compile_doc(effect: Effect, *blocks: dict[str, Any]) -> CompiledWorkflow:
    doc = {"name": "Test", "trigger": {"type": "api"}, "blocks": list(blocks)}
    definition = validate_definition(doc, {**block_specs(), Effect.type: Effect.spec})
    return compile_workflow(WORKFLOW_ID, 1, definition, {**load_blocks(), Effect.type: effect})


def queued(data: Any, **changes: Any) -> ExecutionRecord:
    """An execution as a CLI enqueues it: queued, no lease."""
    values: dict[str, Any] = {
        "id": new_execution_id(),
        "team_id": TEAM_ID,
        "workflow_id": WORKFLOW_ID,
        "installation_id": new_object_id(),
        "user_id": new_object_id(),
        "version": 1,
        "mode": TriggerMode.API,
        "trigger": orjson.dumps({"data": data}),
        "status": ExecutionStatus.QUEUED,
        "created_at": now_ms(),
    }
    values.update(changes)
    return ExecutionRecord(**values)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database built by the migrations once per module; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "worker.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
async def store(migrated: Path, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A migrated, empty SQLite store."""
    path = tmp_path / "worker.db"
    shutil.copyfile(migrated, path)
    opened = SqliteStore(str(path))
    try:
        yield opened
    finally:
        await opened.close()


class Runner:
    """A worker over one compiled workflow, prepared like ``RunService.prepare``."""

    def __init__(self, store: SqliteStore, compiled: CompiledWorkflow, **options: Any) -> None:
        self.store = store
        self.compiled = compiled
        self.engine = Engine(EngineConfig())
        options = {"concurrency": 4, "lease_seconds": 30.0, "poll_interval": 0.02, **options}
        self.worker = Worker(store, self.engine, self.prepare, **options)

    async def prepare(self, record: ExecutionRecord) -> RunState:
        recorder = Recorder(self.store, record, persisted=True)
        recorded, record.steps = record.steps, []
        trigger = orjson.loads(record.trigger)
        return self.engine.new_state(recorder, self.compiled, trigger, recorded)

    async def finished(self, ids: Iterable[str]) -> list[ExecutionRecord]:
        """Wait (bounded) until every execution is finished; return them as stored."""
        ids = list(ids)
        async with asyncio.timeout(WAIT_LIMIT):
            while True:
                records = [await self.store.get_execution(TEAM_ID, i) for i in ids]
                if all(r is not None and r.finished for r in records):
                    return [r for r in records if r is not None]
                await asyncio.sleep(0.01)


async def test_worker_claims_queued_executions_and_runs_them_to_the_end(
    store: SqliteStore,
) -> None:
    effect = Effect()
    compiled = compile_doc(
        effect,
        {"id": "call", "type": "effect", "with": {"value": "{{ trigger.data.n * 2 }}"}},
        {"id": "done", "type": "respond", "with": {"body": "{{ call }}"}},
    )
    runner = Runner(store, compiled)
    records = [queued({"n": n}) for n in range(6)]
    for record in records:
        await store.insert_execution(record)
    await runner.worker.start()
    try:
        done = await runner.finished(r.id for r in records)
    finally:
        await runner.worker.stop()
    assert [d.status for d in done] == [ExecutionStatus.SUCCEEDED] * 6
    assert [orjson.loads(d.output or b"null") for d in done] == [0, 2, 4, 6, 8, 10]
    assert all([s.block_id for s in d.steps] == ["call", "done"] for d in done)
    assert all(d.lease_owner is None and d.lease_expires is None for d in done)
    assert sorted(effect.calls) == sorted(r.id for r in records)  # each ran exactly once


async def test_expired_lease_of_a_dead_worker_is_claimed_and_resumed_from_its_last_step(
    store: SqliteStore,
) -> None:
    effect = Effect()
    compiled = compile_doc(
        effect,
        {"id": "first", "type": "effect", "with": {"value": "{{ trigger.data.n }}"}},
        {"id": "second", "type": "effect", "with": {"value": "{{ first + 1 }}"}},
        {"id": "done", "type": "respond", "with": {"body": "{{ second }}"}},
    )
    at = now_ms() - 60_000
    recorded = StepRecord(0, "first", StepStatus.SUCCEEDED, 1, at, at, b'{"value":41}', b"41")
    abandoned = queued({"n": 41}, status=ExecutionStatus.RUNNING, started_at=at,
                       lease_owner="dead-host:1:abc", lease_expires=now_ms() - 1,
                       steps=[recorded])
    await store.insert_execution(abandoned)
    runner = Runner(store, compiled)
    await runner.worker.start()
    try:
        (done,) = await runner.finished([abandoned.id])
    finally:
        await runner.worker.stop()
    assert done.status is ExecutionStatus.SUCCEEDED
    assert [(s.seq, s.block_id) for s in done.steps] == [(0, "first"), (1, "second"),
                                                          (2, "done")]
    assert effect.calls == [abandoned.id]  # only "second": "first" was recorded
    assert orjson.loads(done.output or b"null") == 42
    assert done.started_at == at


async def test_live_lease_of_another_worker_is_left_alone(store: SqliteStore) -> None:
    effect = Effect()
    compiled = compile_doc(effect, {"id": "call", "type": "effect", "with": {"value": 1}})
    taken = queued(None, status=ExecutionStatus.RUNNING, started_at=now_ms(),
                   lease_owner="other:1:abc", lease_expires=now_ms() + 60_000)
    await store.insert_execution(taken)
    runner = Runner(store, compiled)
    await runner.worker.start()
    runner.worker.wake()
    await asyncio.sleep(0.1)  # several poll intervals
    await runner.worker.stop()
    assert effect.calls == []
    assert await store.execution_status(taken.id) == "running"


async def test_stop_lets_running_executions_finish(store: SqliteStore) -> None:
    effect = Effect()
    compiled = compile_doc(effect, {"id": "call", "type": "effect",
                                    "with": {"value": 1, "seconds": 0.2}})
    runner = Runner(store, compiled)
    record = queued(None)
    await store.insert_execution(record)
    await runner.worker.start()
    async with asyncio.timeout(WAIT_LIMIT):
        await effect.started.wait()
    await runner.worker.stop(grace=WAIT_LIMIT)
    assert await store.execution_status(record.id) == "succeeded"
    assert runner.worker.running == {}


async def test_stopped_worker_claims_nothing_more(store: SqliteStore) -> None:
    effect = Effect()
    compiled = compile_doc(effect, {"id": "call", "type": "effect", "with": {"value": 1}})
    runner = Runner(store, compiled)
    await runner.worker.start()
    await runner.worker.stop()
    late = queued(None)
    await store.insert_execution(late)
    runner.worker.wake()
    await asyncio.sleep(0.1)
    assert await store.execution_status(late.id) == "queued"


async def test_stop_after_grace_cancels_and_leaves_the_execution_to_resume(
    store: SqliteStore,
) -> None:
    effect = Effect()
    compiled = compile_doc(effect, {"id": "call", "type": "effect",
                                    "with": {"value": 1, "seconds": 10}})
    runner = Runner(store, compiled)
    record = queued(None)
    await store.insert_execution(record)
    await runner.worker.start()
    async with asyncio.timeout(WAIT_LIMIT):
        await effect.started.wait()
    await runner.worker.stop(grace=0.05)
    stored = await store.get_execution(TEAM_ID, record.id)
    # Not failed: still running under the stopped worker's lease, claimable once it expires.
    assert stored is not None
    assert stored.status is ExecutionStatus.RUNNING
    assert stored.lease_owner == runner.worker.owner
    assert stored.steps == []


async def test_heartbeat_keeps_a_long_run_leased(store: SqliteStore) -> None:
    effect = Effect()
    compiled = compile_doc(effect, {"id": "call", "type": "effect",
                                    "with": {"value": 1, "seconds": 0.8}})
    # Renewed every lease/3 = 0.1s: only a stall of 0.2s could let the lease lapse.
    runner = Runner(store, compiled, lease_seconds=0.3)
    record = queued(None)
    await store.insert_execution(record)
    await runner.worker.start()
    try:
        async with asyncio.timeout(WAIT_LIMIT):
            await effect.started.wait()
        await asyncio.sleep(0.6)  # two lease lengths
        now = now_ms()
        assert await store.claim_executions("thief", now, now + 30_000, 10) == []
        (done,) = await runner.finished([record.id])
    finally:
        await runner.worker.stop()
    assert done.status is ExecutionStatus.SUCCEEDED
    assert effect.calls == [record.id]
