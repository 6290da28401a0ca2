"""A test block, compiled workflows and execution records for the engine and worker tests.

Imported as ``from engine_support import ...`` (pytest puts this folder on ``sys.path``);
the fixtures they run on (``store``, ``anyio_backend``) are in this folder's conftest.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import orjson

from reflow.blocks import block_specs, load_blocks
from reflow.blocks.base import Block, BlockContext, Outcome
from reflow.domain.definitions import BlockSpec, validate_definition
from reflow.domain.executions import ExecutionRecord, ExecutionStatus, StepRecord, TriggerMode
from reflow.engine import now_ms
from reflow.engine.compiled import CompiledWorkflow, compile_workflow
from reflow.errors import BlockFailed
from reflow.ids import new_execution_id, new_object_id
from reflow.services.workflows import definition_from_document
from reflow.store.base import Store

TEAM_ID = new_object_id()
WORKFLOW_ID = new_object_id()


class Effect:
    """A side-effecting test block: sleeps, fails its first calls, then outputs ``value``.

    The params ``seconds``, ``fail_first`` and ``retryable`` steer it; ``calls`` keeps each
    call's params and context, in order.
    """

    type: ClassVar[str] = "effect"
    spec: ClassVar[BlockSpec] = BlockSpec(
        optional=frozenset({"value", "seconds", "fail_first", "retryable"})
    )
    side_effects: ClassVar[bool] = True

    def __init__(self, on_call: Callable[[str], None] | None = None) -> None:
        self.calls: list[tuple[Mapping[str, Any], BlockContext]] = []
        self.on_call = on_call
        self.started = asyncio.Event()

    @property
    def execution_ids(self) -> list[str]:
        """The execution of each call, in call order."""
        return [ctx.execution_id for _, ctx in self.calls]

    async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
        """Record the call, sleep if asked, then fail or output the value."""
        self.calls.append((params, ctx))
        if self.on_call is not None:
            self.on_call(ctx.block_id)
        self.started.set()
        if params.get("seconds"):
            await asyncio.sleep(params["seconds"])
        if len(self.calls) <= params.get("fail_first", 0):
            raise BlockFailed(f"failure {len(self.calls)}",
                              retryable=params.get("retryable", True))
        return Outcome(params.get("value"))


def workflow(*blocks: dict[str, Any], **top: Any) -> dict[str, Any]:
    """An api-triggered definition of ``blocks``, plus top-level fields."""
    return {"name": "Test", "trigger": {"type": "api"}, "blocks": list(blocks), **top}


def compile_doc(doc: dict[str, Any], *extra: Block) -> CompiledWorkflow:
    """Validate and compile a definition; ``extra`` test blocks join the built-ins."""
    if extra:
        specs = {**block_specs(), **{b.type: b.spec for b in extra}}
        definition = validate_definition(doc, specs)
    else:
        definition = definition_from_document(doc)
    registry = {**load_blocks(), **{b.type: b for b in extra}}
    return compile_workflow(WORKFLOW_ID, 1, definition, registry)


def queued_record(data: Any, **changes: Any) -> ExecutionRecord:
    """An execution as a CLI enqueues it: queued, no lease."""
    now = now_ms()
    values: dict[str, Any] = {
        "id": new_execution_id(now),
        "team_id": TEAM_ID,
        "workflow_id": WORKFLOW_ID,
        "installation_id": new_object_id(),
        "user_id": new_object_id(),
        "version": 1,
        "mode": TriggerMode.API,
        "trigger": orjson.dumps({"data": data}),
        "status": ExecutionStatus.QUEUED,
        "created_at": now,
    }
    values.update(changes)
    return ExecutionRecord(**values)


def running_record(data: Any, **changes: Any) -> ExecutionRecord:
    """An execution as RunService starts one: running under this process's live lease."""
    now = now_ms()
    running: dict[str, Any] = {
        "id": new_execution_id(now),
        "status": ExecutionStatus.RUNNING,
        "created_at": now,
        "started_at": now,
        "lease_owner": "test-worker",
        "lease_expires": now + 30_000,
    }
    return queued_record(data, **{**running, **changes})


class StoreWriter:
    """A recorder's writer straight onto a Store, writing each execution under the lease it
    was inserted with (as ``JobBook`` does for a worker)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.owners: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def insert_execution(
        self, execution: ExecutionRecord, idempotency_key: str | None = None
    ) -> None:
        """Insert, remembering the lease's owner."""
        self.owners[execution.id] = execution.lease_owner or ""
        await self.inner.insert_execution(execution, idempotency_key)

    async def save_execution(
        self, execution: ExecutionRecord, new_steps: Sequence[StepRecord]
    ) -> None:
        """Save under the lease the execution was inserted with."""
        await self.inner.save_execution(execution, new_steps, owner=self.owners[execution.id])
