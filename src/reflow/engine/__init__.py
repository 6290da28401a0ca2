"""Runs a workflow version for a trigger: the step loop, retries, timeouts, resume.

It knows nothing about HTTP. Each block's result is recorded as a step, keyed by its path
in the workflow: the block id and, inside loops, the item's index in each (``item``). A
resumed execution skips the steps recorded as succeeded and reuses their output, item by
item. A block's outcome may iterate (``loop``: the engine runs its blocks for each item)
or suspend (``delay``: the execution becomes ``waiting`` until a time, holding no worker).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from reflow.blocks.base import BlockContext, Iteration, Outcome, replay
from reflow.blocks.redaction import redact, secret_values
from reflow.domain.apps import binding_secrets
from reflow.domain.executions import (
    ExecutionRecord,
    ExecutionStatus,
    StepRecord,
    StepStatus,
    error_json,
)
from reflow.engine.compiled import CompiledBlock, CompiledWorkflow
from reflow.engine.recorder import Recorder
from reflow.errors import BlockFailed, Conflict, ExpressionError, StoreError
from reflow.ids import iso_ms, now_ms, parse_iso_ms

if TYPE_CHECKING:
    from reflow.blocks.http import HttpClients

__all__ = ["Engine", "EngineConfig", "Marker", "Recorder", "RunState", "now_ms"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The engine's limits, from Settings."""

    step_output_cap: int = 256 * 1024
    execution_timeout: float = 3600.0
    http_timeout: float = 30.0
    env: Mapping[str, Any] = field(default_factory=dict)


class StepFailedError(Exception):
    """A block failed for good; the execution fails with this step's error."""

    def __init__(self, message: str, block_id: str) -> None:
        super().__init__(message)
        self.message = message
        self.block_id = block_id


class ExecutionSuspendedError(Exception):
    """Every path still running waits for a time (a delay): the execution sleeps until
    ``until`` (ms since epoch) and is resumed then."""

    def __init__(self, until: int) -> None:
        super().__init__(until)
        self.until = until


class ExecutionTimeoutError(Exception):
    """The execution ran past its deadline."""


class ExecutionCancelledError(Exception):
    """A cancel arrived: the execution stops before its next block."""

    def __init__(self, block_id: str) -> None:
        super().__init__(block_id)
        self.block_id = block_id


Renew = Callable[[str, Mapping[str, Any]], Awaitable[Mapping[str, Any]]]


class Marker(Protocol):
    """Where the engine says which execution's block is evaluating on this thread right now.

    An executor process writes it to memory its parent can read, so when the process
    crashes or hangs the parent knows which execution did it (``executor.process``).
    """

    def enter(self, execution_id: str, block_id: str) -> None:
        """A block of this execution starts synchronous work (rendering, a pure block)."""

    def leave(self) -> None:
        """The synchronous work ended."""


class _NoMarker:
    def enter(self, execution_id: str, block_id: str) -> None:
        pass

    def leave(self) -> None:
        pass


@dataclass(slots=True)
class Scope:
    """Where blocks run: the expressions' context, and the item path inside loops."""

    context: dict[str, Any]
    # The item's index in each enclosing loop ("3", "3.0"); None outside loops.
    item: str | None = None

    def for_item(self, index: int, value: Any) -> Scope:
        """The scope of one loop item: the outer context plus ``item`` and ``index``; the
        item's own block outputs stay in it (items do not see each other's)."""
        context = dict(self.context)
        context["item"], context["index"] = value, index
        return Scope(context, str(index) if self.item is None else f"{self.item}.{index}")


@dataclass(slots=True)
class RunState:
    """One execution being run: its record, expression context and recorded steps."""

    recorder: Recorder
    workflow: CompiledWorkflow
    context: dict[str, Any]
    # Steps recorded by an earlier run of this execution (resume, or a rerun's reused
    # ones), succeeded or waiting, by (block id, item path).
    recorded: dict[tuple[str, str | None], StepRecord]
    next_seq: int
    deadline: float
    credentials: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    # The respond block's body as computed: the stored output is redacted and capped,
    # but the caller waiting on this run is answered with the body itself.
    response: Any = None
    responded: bool = False
    # Set by a cancel; checked before each block.
    cancel_requested: bool = False
    # Renews an OAuth binding a target refused (app, binding used -> new binding): the
    # executor's way to the serving process (docs/architecture.md "Credentials in runs").
    renew: Renew | None = None
    # This process's clock minus the system's (ms): delays read the serving process's
    # clock, injected in tests, even in an executor process.
    clock_offset: int = 0

    @property
    def record(self) -> ExecutionRecord:
        """The execution's record (mutated as it runs, written by the recorder)."""
        return self.recorder.record

    def now(self) -> int:
        """Now on the serving process's clock (ms since epoch)."""
        return now_ms() + self.clock_offset


class Engine:
    """Runs executions; one instance per process, shared by every run."""

    def __init__(
        self, config: EngineConfig, http: HttpClients | None = None,
        marker: Marker | None = None,
    ) -> None:
        self.config = config
        self.http = http
        self.marker: Marker = marker or _NoMarker()

    def new_state(
        self,
        recorder: Recorder,
        workflow: CompiledWorkflow,
        trigger: Mapping[str, Any],
        recorded: list[StepRecord] | None = None,
        env: Mapping[str, Any] | None = None,
        credentials: Mapping[str, Mapping[str, Any]] | None = None,
        config: Mapping[str, Any] | None = None,
        config_secrets: tuple[str, ...] = (),
        clock_offset: int = 0,
    ) -> RunState:
        """Prepare an execution to run (``recorded``: steps of an earlier, interrupted run;
        ``env``: the team's expression env, the config's when None; ``credentials``: the
        run's bindings by app name, for the blocks only, never the expressions; ``config``:
        the installation's configured fields, read as ``config.<name>``, whose secret
        values ``config_secrets`` are hidden from the steps like a credential's;
        ``clock_offset``: the serving process's clock minus the system's, in ms)."""
        record = recorder.record
        steps = recorded or []
        timeout = workflow.definition.timeout or self.config.execution_timeout
        context: dict[str, Any] = {
            "trigger": trigger,
            "execution": {
                "id": record.id,
                "workflowId": record.workflow_id,
                "userId": record.user_id,
                "version": record.version,
                "mode": record.mode.value,
                "rerunOf": record.rerun_of,
            },
            "env": self.config.env if env is None else env,
            "config": config or {},
        }
        return RunState(
            recorder=recorder,
            workflow=workflow,
            context=context,
            recorded={s.key: s for s in steps if s.status is not StepStatus.FAILED},
            next_seq=max(s.seq for s in steps) + 1 if steps else 0,
            deadline=time.monotonic() + timeout,
            credentials=credentials or {},
            # The trigger's secret-field values and the credentials' values are hidden
            # wherever a step repeats them.
            secrets=(secret_values(trigger) + binding_secrets(credentials)
                     if credentials else secret_values(trigger)) + config_secrets,
            clock_offset=clock_offset,
        )

    async def run(self, state: RunState) -> ExecutionRecord:
        """Run to a final status and commit it; returns the finished record."""
        record = state.record
        if record.started_at is None:
            record.started_at = now_ms()
        record.status = ExecutionStatus.RUNNING
        try:
            await self._run_blocks(state.workflow.blocks, state, Scope(state.context))
        except ExecutionSuspendedError as exc:
            # Nothing of it stays here: the row says when to resume (migration 0016).
            record.status = ExecutionStatus.WAITING
            record.wake_at = record.lease_expires = exc.until
            record.lease_owner = None
        except StepFailedError as exc:
            self._finish(record, ExecutionStatus.FAILED, redact(exc.message, state.secrets),
                         exc.block_id)
        except ExecutionCancelledError as exc:
            self._finish(record, ExecutionStatus.CANCELLED,
                         f"cancelled before block {exc.block_id!r} ran", exc.block_id)
        except ExecutionTimeoutError:
            limit = state.workflow.definition.timeout or self.config.execution_timeout
            self._finish(record, ExecutionStatus.FAILED,
                         f"execution timed out after {limit:g}s", None)
        except (StoreError, Conflict):
            raise  # the lease runs out and the execution resumes once the database is back
        except Exception as exc:
            # A bug in reflow, not in the workflow: fail this execution with a clear
            # message rather than leaving it to be claimed and crash again forever.
            log.exception("execution %s failed on an internal error", record.id)
            self._finish(record, ExecutionStatus.FAILED,
                         redact(f"internal error: {type(exc).__name__}: {exc}", state.secrets),
                         None)
        else:
            self._finish(record, ExecutionStatus.SUCCEEDED, None, None)
        await state.recorder.flush()
        return record

    @staticmethod
    def _finish(
        record: ExecutionRecord, status: ExecutionStatus, message: str | None, block_id: str | None
    ) -> None:
        record.status = status
        record.stopped_at = now_ms()
        record.lease_owner = None
        record.lease_expires = None
        if message is not None:
            record.error = orjson.dumps(error_json(message, block_id))

    async def _run_blocks(
        self, blocks: tuple[CompiledBlock, ...], state: RunState, scope: Scope
    ) -> bool:
        """Run blocks in order; False when a filter stopped the execution (or, inside a
        loop, the item)."""
        for compiled in blocks:
            if state.cancel_requested:
                raise ExecutionCancelledError(compiled.id)
            if time.monotonic() > state.deadline:
                raise ExecutionTimeoutError
            outcome = await self._outcome(compiled, state, scope)
            scope.context[compiled.id] = outcome.output
            if outcome.respond_status is not None:
                state.response, state.responded = outcome.output, True
                state.record.output = self._capped(redact(outcome.output, state.secrets))[0]
                state.record.response_status = outcome.respond_status
            if outcome.stop:
                return False
            if outcome.children is not None:
                arm = compiled.children.get(outcome.children, ())
                if not await self._run_blocks(arm, state, scope):
                    return False
        return True

    async def _outcome(self, compiled: CompiledBlock, state: RunState, scope: Scope) -> Outcome:
        """The block's outcome at this path: run now, or its recorded step's (a waiting
        delay goes on or waits again)."""
        prior = state.recorded.get((compiled.id, scope.item))
        if prior is None:
            return await self._run_step(compiled, state, scope)
        if prior.status is StepStatus.WAITING:
            return await self._resume_wait(compiled, prior, state, scope)
        output = orjson.loads(prior.output) if prior.output is not None else None
        outcome = replay(compiled.block, output)
        if outcome.respond_status is not None and state.record.response_status:
            outcome = replace(outcome, respond_status=state.record.response_status)
        return outcome

    async def _run_step(self, compiled: CompiledBlock, state: RunState, scope: Scope) -> Outcome:
        """Run one block with its retries and timeout (and a loop's items), and record its
        step."""
        started = now_ms()
        seq = state.next_seq
        state.next_seq += 1
        self.marker.enter(state.record.id, compiled.id)
        try:
            params = compiled.params.render(scope.context)
        except ExpressionError as exc:
            self.marker.leave()
            await self._record(state, compiled, scope, seq, started, {}, None, exc.message, 1)
            raise StepFailedError(exc.message, compiled.id) from exc
        finally:
            self.marker.leave()  # whatever the render raised
        outcome, error, attempts = await self._attempts(compiled, params, state, scope)
        if outcome is not None and outcome.iterate is not None:
            try:
                outcome = replace(outcome, iterate=None, output=await self._iterate(
                    compiled, outcome.iterate, state, scope))
            except StepFailedError as exc:
                await self._record(state, compiled, scope, seq, started, params, None,
                                   exc.message, attempts)
                raise
        if outcome is not None and outcome.suspend_until is not None:
            await self._record(state, compiled, scope, seq, started, params, outcome.output,
                               None, attempts, waiting=True)
            raise ExecutionSuspendedError(outcome.suspend_until)
        await self._record(state, compiled, scope, seq, started, params,
                           outcome.output if outcome else None, error, attempts)
        if outcome is None:
            raise StepFailedError(error or "block failed", compiled.id)
        return outcome

    async def _resume_wait(
        self, compiled: CompiledBlock, prior: StepRecord, state: RunState, scope: Scope
    ) -> Outcome:
        """A delay that was waiting: done once its time has come, else still waiting."""
        waited = orjson.loads(prior.output) if prior.output is not None else {}
        until = parse_iso_ms(waited["until"])
        now = state.now()
        if now < until:
            raise ExecutionSuspendedError(until)
        output = {"until": waited["until"], "resumedAt": iso_ms(now)}
        # Written again under its seq: the step ends when the wait does.
        step = replace(prior, status=StepStatus.SUCCEEDED, stopped_at=now_ms(),
                       output=orjson.dumps(output), reused=False)
        state.recorded[(compiled.id, scope.item)] = step
        state.recorder.add(step)
        return Outcome(output)

    async def _iterate(
        self, compiled: CompiledBlock, iteration: Iteration, state: RunState, scope: Scope
    ) -> list[Any]:
        """Run a loop's blocks for each item, ``concurrency`` lanes at a time; the items'
        outputs (each an object of its blocks' outputs, by block id).

        A failed item stops new items from starting (the others in flight finish) and
        fails the loop, unless the loop collects failures (then the item's output holds
        ``error``). An item that waits keeps its lane; once every lane is done or waiting,
        the execution waits for the soonest. Recorded items are replayed, not run again.
        """
        arm = compiled.children.get(iteration.arm, ())
        ids = {b.id for b in _descendants(arm)}
        items = iteration.items
        outputs: list[Any] = [None] * len(items)
        failures: dict[int, StepFailedError] = {}
        waits: list[int] = []
        queue = iter(range(len(items)))

        async def lane() -> None:
            for index in queue:  # shared: each lane takes the next item
                if failures and not iteration.collect:
                    return
                inner = scope.for_item(index, items[index])
                try:
                    await self._run_blocks(arm, state, inner)
                except StepFailedError as exc:
                    failures[index] = exc
                    error = {"message": exc.message, "blockId": exc.block_id}
                    outputs[index] = {**_outputs(inner, ids), "error": error}
                    continue
                except ExecutionSuspendedError as exc:
                    waits.append(exc.until)
                    return
                outputs[index] = _outputs(inner, ids)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(iteration.concurrency, len(items))):
                    group.create_task(lane())
        except BaseExceptionGroup as raised:  # a cancel, the deadline, the database
            raise raised.exceptions[0] from None
        if failures and not iteration.collect:
            index = min(failures)
            first = failures[index]
            raise StepFailedError(f"item {index}: {first.message}", first.block_id)
        if waits:
            raise ExecutionSuspendedError(min(waits))
        return outputs

    async def _attempts(
        self, compiled: CompiledBlock, params: Any, state: RunState, scope: Scope
    ) -> tuple[Outcome | None, str | None, int]:
        block, definition = compiled.block, compiled.definition
        policy = definition.retry
        limit = definition.timeout or self.config.http_timeout
        attempt = 0
        while True:
            attempt += 1
            remaining = state.deadline - time.monotonic()
            ctx = BlockContext(
                execution_id=state.record.id,
                block_id=compiled.id,
                attempt=attempt,
                idempotency_key=(f"{state.record.id}:{compiled.id}" if scope.item is None
                                 else f"{state.record.id}:{compiled.id}:{scope.item}"),
                http=self.http,
                team_id=state.record.team_id,
                credentials=state.credentials,
                timeout=max(0.0, min(limit, remaining)),
                renew_credential=(None if state.renew is None
                                  else functools.partial(self._renew, state)),
                now=state.now(),
            )
            try:
                if block.side_effects or definition.timeout is not None:
                    async with asyncio.timeout(ctx.timeout):
                        return await block.run(params, ctx), None, attempt
                self.marker.enter(state.record.id, compiled.id)
                try:
                    return await block.run(params, ctx), None, attempt
                finally:
                    self.marker.leave()
            except BlockFailed as exc:
                error, retryable = exc.message, exc.retryable
            except ExpressionError as exc:
                error, retryable = exc.message, False
            except TimeoutError:
                error, retryable = f"timed out after {limit:g}s", True
                if time.monotonic() >= state.deadline:
                    # Record the block that hung, so the logs show where the time went.
                    overall = state.workflow.definition.timeout or self.config.execution_timeout
                    return None, f"execution timed out after {overall:g}s", attempt
            except Exception as exc:  # a block's own bug must fail the step, not the worker
                error, retryable = f"{type(exc).__name__}: {exc}", True
            if not retryable or attempt >= policy.attempts:
                return None, error, attempt
            delay = min(policy.delay(attempt), max(0.0, state.deadline - time.monotonic()))
            await asyncio.sleep(delay)

    async def _renew(self, state: RunState, app: str) -> Mapping[str, Any]:
        """The app's binding renewed for the rest of the run; its new token is hidden from
        the steps like the first."""
        assert state.renew is not None
        renewed = await state.renew(app, state.credentials.get(app, {}))
        state.credentials = {**state.credentials, app: renewed}
        state.secrets += binding_secrets({app: renewed})
        return renewed

    def _capped(self, value: Any) -> tuple[bytes, bool]:
        """JSON for storage, replaced by a marker with a preview when over the cap."""
        encoded = orjson.dumps(value)
        if len(encoded) <= self.config.step_output_cap:
            return encoded, False
        return orjson.dumps({
            "truncated": True,
            "bytes": len(encoded),
            "preview": encoded[:1024].decode("utf-8", "ignore"),
        }), True

    async def _record(
        self,
        state: RunState,
        compiled: CompiledBlock,
        scope: Scope,
        seq: int,
        started: int,
        params: Any,
        output: Any,
        error: str | None,
        attempts: int,
        *,
        waiting: bool = False,
    ) -> None:
        encoded_output, output_cut = None, False
        self.marker.enter(state.record.id, compiled.id)
        try:
            if error is None:
                encoded_output, output_cut = self._capped(redact(output, state.secrets))
            encoded_input, input_cut = self._capped(redact(params, state.secrets))
        finally:
            self.marker.leave()
        status = (StepStatus.FAILED if error is not None
                  else StepStatus.WAITING if waiting else StepStatus.SUCCEEDED)
        step = StepRecord(
            seq=seq,
            block_id=compiled.id,
            status=status,
            attempts=attempts,
            started_at=started,
            stopped_at=now_ms(),
            input=encoded_input,
            output=encoded_output,
            error=redact(error, state.secrets),
            truncated=output_cut or input_cut,
            item=scope.item,
        )
        state.recorder.add(step)
        # A succeeded side effect is committed before the next block runs; a failed one
        # rides with the execution's final status, so a resume never repeats it.
        if compiled.block.side_effects and error is None:
            await state.recorder.flush()


def _descendants(blocks: tuple[CompiledBlock, ...]) -> list[CompiledBlock]:
    """The blocks and every block nested in them."""
    found: list[CompiledBlock] = []
    for block in blocks:
        found.append(block)
        for arm in block.children.values():
            found.extend(_descendants(arm))
    return found


def _outputs(scope: Scope, ids: set[str]) -> dict[str, Any]:
    """One loop item's output: the outputs of its blocks that ran, by block id."""
    return {key: value for key, value in scope.context.items() if key in ids}
