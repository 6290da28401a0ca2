"""The engine over a real migrated SQLite store: steps, failures, retries, timeouts, resume."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import orjson
import pytest
from engine_support import (
    TEAM_ID,
    Effect,
    StoreWriter,
    compile_doc,
    running_record,
    workflow,
)

from reflow.blocks.base import BlockContext, Outcome
from reflow.blocks.redaction import SECRET_MARK
from reflow.domain.definitions import BlockSpec
from reflow.domain.executions import ExecutionRecord, ExecutionStatus, StepRecord, StepStatus
from reflow.engine import Engine, EngineConfig, Recorder, now_ms
from reflow.engine.compiled import CompiledWorkflow
from reflow.store.base import Store
from reflow.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

FAST_RETRY = {"attempts": 3, "backoff": "fixed", "initial": "10ms"}


# -- test blocks and store ---------------------------------------------------------------


class Sleep:
    """A side-effecting test block that sleeps ``seconds``."""

    type: ClassVar[str] = "sleep"
    spec: ClassVar[BlockSpec] = BlockSpec(required=frozenset({"seconds"}))
    side_effects: ClassVar[bool] = True

    def __init__(self) -> None:
        self.finished = 0

    async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
        """Sleep, then output how long."""
        await asyncio.sleep(params["seconds"])
        self.finished += 1
        return Outcome(params["seconds"])


class CountingStore(StoreWriter):
    """A Store that notes each write: (kind, block ids of the steps written, status)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.writes: list[tuple[str, list[str], str]] = []

    async def insert_execution(
        self, execution: ExecutionRecord, idempotency_key: str | None = None
    ) -> None:
        """Note, then insert."""
        self.writes.append(("insert", [s.block_id for s in execution.steps],
                            execution.status.value))
        await super().insert_execution(execution, idempotency_key)

    async def save_execution(
        self, execution: ExecutionRecord, new_steps: Sequence[StepRecord]
    ) -> None:
        """Note, then save."""
        self.writes.append(("save", [s.block_id for s in new_steps], execution.status.value))
        await super().save_execution(execution, new_steps)


@pytest.fixture
def store(store: SqliteStore) -> CountingStore:
    """The folder's migrated SQLite store (this overrides it), counting its writes."""
    return CountingStore(store)


# -- helpers -----------------------------------------------------------------------------


def succeeded_step(seq: int, block_id: str, output: Any) -> StepRecord:
    return StepRecord(seq, block_id, StepStatus.SUCCEEDED, 1, now_ms(), now_ms(),
                      orjson.dumps({}), orjson.dumps(output))


class Harness:
    """Runs compiled workflows the way RunService and the worker do."""

    def __init__(self, store: CountingStore) -> None:
        self.store = store
        self.as_store = cast(Store, store)

    async def run(
        self, compiled: CompiledWorkflow, data: Any = None, *, config: EngineConfig | None = None,
        committed_first: bool = True,
    ) -> ExecutionRecord:
        """Start like ``RunService._start`` and return the execution as stored."""
        record = running_record(data)
        recorder = Recorder(self.as_store, record, persisted=False)
        if committed_first:
            await recorder.flush()
        engine = Engine(config or EngineConfig())
        await engine.run(engine.new_state(recorder, compiled, {"data": data}))
        return await self.stored(record.id)

    async def resume(
        self, compiled: CompiledWorkflow, record: ExecutionRecord
    ) -> ExecutionRecord:
        """Continue a stored execution like ``RunService.prepare`` after a claim."""
        recorder = Recorder(self.as_store, record, persisted=True)
        recorded, record.steps = record.steps, []
        engine = Engine(EngineConfig())
        state = engine.new_state(recorder, compiled, orjson.loads(record.trigger), recorded)
        await engine.run(state)
        return await self.stored(record.id)

    async def stored(self, execution_id: str) -> ExecutionRecord:
        stored = await self.store.inner.get_execution(TEAM_ID, execution_id)
        assert stored is not None
        return stored


@pytest.fixture
def harness(store: CountingStore) -> Harness:
    return Harness(store)


def error_of(record: ExecutionRecord) -> Any:
    return None if record.error is None else orjson.loads(record.error)


def steps_of(record: ExecutionRecord) -> list[tuple[int, str, str]]:
    return [(s.seq, s.block_id, s.status.value) for s in record.steps]


def output_of(step: StepRecord) -> Any:
    return None if step.output is None else orjson.loads(step.output)


# -- the step log ------------------------------------------------------------------------

ORDER = workflow(
    {"id": "label", "type": "transform",
     "with": {"value": {"upper": "{{ $uppercase(trigger.data.label) }}"}}},
    {"id": "total", "type": "transform", "with": {"value": "{{ $sum(trigger.data.values) }}"}},
    {"id": "done", "type": "respond",
     "with": {"body": {"label": "{{ label.upper }}", "total": "{{ total }}"}}},
)


async def test_steps_are_recorded_in_order_with_resolved_inputs_and_outputs(
    harness: Harness,
) -> None:
    done = await harness.run(compile_doc(ORDER), {"label": "abc", "values": [1, 2, 3]})
    assert done.status is ExecutionStatus.SUCCEEDED
    assert steps_of(done) == [(0, "label", "succeeded"), (1, "total", "succeeded"),
                              (2, "done", "succeeded")]
    inputs = [orjson.loads(s.input) for s in done.steps]
    assert inputs == [{"value": {"upper": "ABC"}}, {"value": 6},
                      {"body": {"label": "ABC", "total": 6}}]
    assert [output_of(s) for s in done.steps] == [{"upper": "ABC"}, 6, {"label": "ABC", "total": 6}]
    assert all(s.attempts == 1 and s.started_at <= s.stopped_at for s in done.steps)
    assert done.started_at is not None and done.stopped_at is not None
    assert done.started_at <= done.stopped_at
    assert (done.lease_owner, done.lease_expires, done.error) == (None, None, None)


async def test_respond_sets_the_output_and_response_status(harness: Harness) -> None:
    compiled = compile_doc(workflow(
        {"id": "done", "type": "respond",
         "with": {"body": {"id": "{{ trigger.data.id }}"}, "status": 201}},
    ))
    done = await harness.run(compiled, {"id": 7})
    assert orjson.loads(done.output or b"null") == {"id": 7}
    assert done.response_status == 201


async def test_a_run_without_respond_has_no_output(harness: Harness) -> None:
    compiled = compile_doc(workflow({"id": "t", "type": "transform", "with": {"value": 1}}))
    done = await harness.run(compiled)
    assert (done.status, done.output, done.response_status) == (ExecutionStatus.SUCCEEDED,
                                                                 None, None)


# -- failures ----------------------------------------------------------------------------


async def test_failing_block_fails_the_execution_and_later_blocks_do_not_run(
    harness: Harness,
) -> None:
    effect = Effect()
    compiled = compile_doc(workflow(
        {"id": "first", "type": "transform", "with": {"value": 1}},
        {"id": "stop", "type": "fail", "with": {"message": "order {{ trigger.data.id }} refused"}},
        {"id": "after", "type": "effect", "with": {"value": 2}},
    ), effect)
    done = await harness.run(compiled, {"id": 7})
    assert done.status is ExecutionStatus.FAILED
    assert error_of(done) == {"message": "order 7 refused", "blockId": "stop"}
    assert steps_of(done) == [(0, "first", "succeeded"), (1, "stop", "failed")]
    assert done.steps[1].error == "order 7 refused"
    assert done.steps[1].output is None
    assert effect.calls == []


async def test_error_function_in_a_template_fails_the_block_with_its_message(
    harness: Harness,
) -> None:
    compiled = compile_doc(workflow(
        {"id": "check", "type": "transform", "with": {"value": "{{ $error('x') }}"}},
        {"id": "after", "type": "transform", "with": {"value": 1}},
    ))
    done = await harness.run(compiled)
    assert done.status is ExecutionStatus.FAILED
    assert error_of(done) == {"message": "x", "blockId": "check"}
    assert steps_of(done) == [(0, "check", "failed")]
    assert done.steps[0].error == "x"


async def test_a_block_that_raises_an_unexpected_exception_fails_its_step(
    harness: Harness,
) -> None:
    class Broken(Effect):
        type: ClassVar[str] = "broken"

        async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
            raise KeyError("missing")

    done = await harness.run(compile_doc(workflow({"id": "b", "type": "broken"}), Broken()))
    assert done.status is ExecutionStatus.FAILED
    assert error_of(done) == {"message": "KeyError: 'missing'", "blockId": "b"}


async def test_an_output_that_is_not_json_fails_the_execution_as_an_internal_error(
    harness: Harness,
) -> None:
    # A plugged-in block returning a set: reflow cannot store it, and must say so rather
    # than leave the execution running to be claimed and fail again forever.
    class Unstorable(Effect):
        type: ClassVar[str] = "unstorable"

        async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
            return Outcome({1, 2})

    done = await harness.run(compile_doc(workflow({"id": "u", "type": "unstorable"}),
                                         Unstorable()))
    assert done.status is ExecutionStatus.FAILED
    assert done.stopped_at is not None and done.lease_owner is None
    assert error_of(done)["message"].startswith("internal error: TypeError")


# -- retries and timeouts ----------------------------------------------------------------


async def test_retries_with_backoff_until_the_block_succeeds(harness: Harness) -> None:
    effect = Effect()
    compiled = compile_doc(workflow(
        {"id": "call", "type": "effect", "with": {"value": "ok", "fail_first": 2},
         "retry": {"attempts": 3, "backoff": "exponential", "initial": "10ms"}},
    ), effect)
    started = time.monotonic()
    done = await harness.run(compiled)
    elapsed = time.monotonic() - started
    assert done.status is ExecutionStatus.SUCCEEDED
    assert steps_of(done) == [(0, "call", "succeeded")]
    assert done.steps[0].attempts == 3
    assert output_of(done.steps[0]) == "ok"
    assert [ctx.attempt for _, ctx in effect.calls] == [1, 2, 3]
    # One idempotency key for every attempt, so a target can deduplicate retries.
    assert len({ctx.idempotency_key for _, ctx in effect.calls}) == 1
    assert elapsed >= 0.010 + 0.020  # exponential: 10ms, then 20ms


async def test_retries_stop_at_the_attempt_limit(harness: Harness) -> None:
    effect = Effect()
    compiled = compile_doc(workflow(
        {"id": "call", "type": "effect", "with": {"fail_first": 10}, "retry": FAST_RETRY},
    ), effect)
    done = await harness.run(compiled)
    assert done.status is ExecutionStatus.FAILED
    assert done.steps[0].attempts == 3
    assert done.steps[0].error == "failure 3"
    assert error_of(done) == {"message": "failure 3", "blockId": "call"}
    assert len(effect.calls) == 3


async def test_non_retryable_failure_stops_at_attempt_1(harness: Harness) -> None:
    effect = Effect()
    compiled = compile_doc(workflow(
        {"id": "call", "type": "effect", "with": {"fail_first": 10, "retryable": False},
         "retry": FAST_RETRY},
    ), effect)
    done = await harness.run(compiled)
    assert done.status is ExecutionStatus.FAILED
    assert done.steps[0].attempts == 1
    assert len(effect.calls) == 1


async def test_block_timeout_fails_the_step(harness: Harness) -> None:
    sleep = Sleep()
    compiled = compile_doc(workflow(
        {"id": "slow", "type": "sleep", "with": {"seconds": 5}, "timeout": "50ms"},
        {"id": "after", "type": "transform", "with": {"value": 1}},
    ), sleep)
    started = time.monotonic()
    done = await harness.run(compiled)
    assert time.monotonic() - started < 2
    assert done.status is ExecutionStatus.FAILED
    assert steps_of(done) == [(0, "slow", "failed")]
    assert sleep.finished == 0
    error = error_of(done)
    assert error["blockId"] == "slow"
    # The limit is stated with its unit, like the execution timeout's message.
    assert error["message"] == "timed out after 0.05s"


async def test_block_timeout_is_retried_like_any_failure(harness: Harness) -> None:
    compiled = compile_doc(workflow(
        {"id": "slow", "type": "sleep", "with": {"seconds": 5}, "timeout": "20ms",
         "retry": {"attempts": 2, "backoff": "fixed", "initial": "10ms"}},
    ), Sleep())
    done = await harness.run(compiled)
    assert done.status is ExecutionStatus.FAILED
    assert done.steps[0].attempts == 2


async def test_execution_timeout_from_the_definition_fails_the_execution(
    harness: Harness,
) -> None:
    sleep = Sleep()
    compiled = compile_doc(workflow(
        {"id": "slow", "type": "sleep", "with": {"seconds": 5}},
        {"id": "after", "type": "transform", "with": {"value": 1}},
        timeout="100ms",
    ), sleep)
    started = time.monotonic()
    done = await harness.run(compiled)
    assert time.monotonic() - started < 2
    assert done.status is ExecutionStatus.FAILED
    assert error_of(done)["message"] == "execution timed out after 0.1s"
    assert sleep.finished == 0
    assert "after" not in [s.block_id for s in done.steps]


async def test_execution_timeout_from_the_settings_applies_without_one_in_the_definition(
    harness: Harness,
) -> None:
    compiled = compile_doc(workflow({"id": "slow", "type": "sleep", "with": {"seconds": 5}}),
                           Sleep())
    done = await harness.run(compiled, config=EngineConfig(execution_timeout=0.1))
    assert done.status is ExecutionStatus.FAILED
    assert error_of(done)["message"] == "execution timed out after 0.1s"


# -- flow: filter and branch -------------------------------------------------------------


async def test_false_filter_ends_the_execution_as_succeeded(harness: Harness) -> None:
    effect = Effect()
    compiled = compile_doc(workflow(
        {"id": "big_only", "type": "filter", "with": {"when": "{{ trigger.data.total > 100 }}"}},
        {"id": "notify", "type": "effect", "with": {"value": 1}},
    ), effect)
    done = await harness.run(compiled, {"total": 5})
    assert done.status is ExecutionStatus.SUCCEEDED
    assert steps_of(done) == [(0, "big_only", "succeeded")]
    assert output_of(done.steps[0]) is False
    assert effect.calls == []


async def test_true_filter_lets_the_execution_continue(harness: Harness) -> None:
    compiled = compile_doc(workflow(
        {"id": "big_only", "type": "filter", "with": {"when": "{{ trigger.data.total > 100 }}"}},
        {"id": "after", "type": "transform", "with": {"value": 1}},
    ))
    done = await harness.run(compiled, {"total": 500})
    assert [s.block_id for s in done.steps] == ["big_only", "after"]


BRANCHY = workflow(
    {"id": "size", "type": "branch", "with": {
        "if": "{{ trigger.data.total > 100 }}",
        "then": [{"id": "big", "type": "transform", "with": {"value": "big"}}],
        "else": [{"id": "small", "type": "transform", "with": {"value": "small"}}],
    }},
    {"id": "done", "type": "respond", "with": {"body": "{{ $exists(big) ? big : small }}"}},
)


@pytest.mark.parametrize(("total", "arm", "block"), [(500, "then", "big"), (5, "else", "small")])
async def test_branch_runs_the_chosen_arm_and_records_the_branch_step(
    harness: Harness, total: int, arm: str, block: str
) -> None:
    done = await harness.run(compile_doc(BRANCHY), {"total": total})
    assert done.status is ExecutionStatus.SUCCEEDED
    assert [s.block_id for s in done.steps] == ["size", block, "done"]
    assert output_of(done.steps[0]) == arm
    assert orjson.loads(done.output or b"null") == block


# -- what is written ---------------------------------------------------------------------


async def test_output_over_the_cap_is_stored_truncated_but_later_blocks_see_it_whole(
    harness: Harness,
) -> None:
    compiled = compile_doc(workflow(
        {"id": "big", "type": "transform", "with": {"value": "{{ trigger.data.text }}"}},
        {"id": "size", "type": "transform", "with": {"value": "{{ $length(big) }}"}},
    ))
    text = "a" * 1000
    done = await harness.run(compiled, {"text": text}, config=EngineConfig(step_output_cap=100))
    big, size = done.steps
    assert big.truncated is True
    marker = output_of(big)
    assert marker["truncated"] is True
    assert marker["bytes"] == len(orjson.dumps(text))
    assert len(big.output or b"") < 2 * 1024
    assert (size.truncated, output_of(size)) == (False, 1000)
    # The resolved input of `big` is as large as its output: it is capped the same way.
    stored_input = orjson.loads(big.input)
    assert stored_input["truncated"] is True
    assert stored_input["bytes"] == len(orjson.dumps({"value": text}))


async def test_secrets_are_redacted_before_they_are_written(harness: Harness) -> None:
    effect = Effect()
    login = {"user": "ann", "password": "hunter2-secret",
             "headers": {"authorization": "Bearer abc.def", "accept": "json"}}
    compiled = compile_doc(workflow(
        {"id": "login", "type": "effect", "with": {"value": login}},
    ), effect)
    done = await harness.run(compiled)
    # The block itself got the real values.
    assert effect.calls[0][0]["value"] == login
    redacted = {"user": "ann", "password": SECRET_MARK,
                "headers": {"authorization": SECRET_MARK, "accept": "json"}}
    step = done.steps[0]
    assert orjson.loads(step.input) == {"value": redacted}
    assert output_of(step) == redacted
    assert b"hunter2-secret" not in step.input + (step.output or b"")
    assert b"abc.def" not in step.input + (step.output or b"")


# -- when steps reach the database -------------------------------------------------------


async def test_pure_steps_ride_with_the_next_side_effecting_commit(
    harness: Harness, store: CountingStore
) -> None:
    writes_seen: list[tuple[str, int]] = []
    effect = Effect(on_call=lambda block_id: writes_seen.append((block_id, len(store.writes))))
    compiled = compile_doc(workflow(
        {"id": "t1", "type": "transform", "with": {"value": 1}},
        {"id": "t2", "type": "transform", "with": {"value": 2}},
        {"id": "e1", "type": "effect", "with": {"value": 3}},
        {"id": "e2", "type": "effect", "with": {"value": 4}},
        {"id": "t3", "type": "transform", "with": {"value": 5}},
        {"id": "done", "type": "respond", "with": {"body": 6}},
    ), effect)
    await harness.run(compiled)
    # When e1 runs only the initial insert is written (t1, t2 wait); when e2 runs, e1's
    # step (with t1, t2) is already committed.
    assert writes_seen == [("e1", 1), ("e2", 2)]
    assert store.writes == [
        ("insert", [], "running"),
        ("save", ["t1", "t2", "e1"], "running"),
        ("save", ["e2"], "running"),
        ("save", ["t3", "done"], "succeeded"),
    ]


async def test_a_run_answered_at_its_end_commits_a_pure_workflow_once(
    harness: Harness, store: CountingStore
) -> None:
    done = await harness.run(compile_doc(ORDER), {"label": "a", "values": [1]},
                             committed_first=False)
    assert store.writes == [("insert", ["label", "total", "done"], "succeeded")]
    assert done.status is ExecutionStatus.SUCCEEDED


# -- resume ------------------------------------------------------------------------------

RESUMABLE = workflow(
    {"id": "t1", "type": "transform", "with": {"value": "{{ trigger.data.n + 1 }}"}},
    {"id": "call", "type": "effect", "with": {"value": "{{ t1 * 10 }}"}},
    {"id": "t2", "type": "transform", "with": {"value": "{{ call + 1 }}"}},
    {"id": "done", "type": "respond", "with": {"body": "{{ t2 }}"}},
)


async def _interrupted(store: CountingStore, steps: list[StepRecord]) -> ExecutionRecord:
    """An execution that a dead worker left running after recording ``steps``."""
    record = running_record({"n": 1}, steps=steps, lease_owner="dead", lease_expires=now_ms() - 1)
    await store.insert_execution(record)
    return record


async def test_resume_continues_after_the_recorded_steps_reusing_their_outputs(
    harness: Harness, store: CountingStore
) -> None:
    effect = Effect()
    # Recorded outputs differ from what a fresh run computes, to show which one is used.
    recorded = [succeeded_step(0, "t1", 50), succeeded_step(1, "call", 777)]
    record = await _interrupted(store, recorded)
    done = await harness.resume(compile_doc(RESUMABLE, effect), record)
    assert effect.calls == []  # the recorded side effect is not repeated
    assert done.status is ExecutionStatus.SUCCEEDED
    assert steps_of(done) == [(0, "t1", "succeeded"), (1, "call", "succeeded"),
                              (2, "t2", "succeeded"), (3, "done", "succeeded")]
    assert output_of(done.steps[2]) == 778
    assert orjson.loads(done.output or b"null") == 778


async def test_resume_reruns_a_block_whose_recorded_step_failed(
    harness: Harness, store: CountingStore
) -> None:
    effect = Effect()
    failed = StepRecord(1, "call", StepStatus.FAILED, 1, now_ms(), now_ms(), b"{}", None,
                        error="connection reset")
    record = await _interrupted(store, [succeeded_step(0, "t1", 2), failed])
    done = await harness.resume(compile_doc(RESUMABLE, effect), record)
    assert [params["value"] for params, _ in effect.calls] == [20]
    assert steps_of(done) == [(0, "t1", "succeeded"), (1, "call", "failed"),
                              (2, "call", "succeeded"), (3, "t2", "succeeded"),
                              (4, "done", "succeeded")]
    assert orjson.loads(done.output or b"null") == 21


async def test_resume_follows_the_recorded_branch_decision(
    harness: Harness, store: CountingStore
) -> None:
    # The trigger would pick "then" today; the recorded run took "else", and resumes there.
    record = running_record({"total": 500}, steps=[succeeded_step(0, "size", "else")])
    await store.insert_execution(record)
    done = await harness.resume(compile_doc(BRANCHY), record)
    assert [s.block_id for s in done.steps] == ["size", "small", "done"]
    assert [s.seq for s in done.steps] == [0, 1, 2]


async def test_resume_after_a_recorded_false_filter_runs_nothing_more(
    harness: Harness, store: CountingStore
) -> None:
    effect = Effect()
    compiled = compile_doc(workflow(
        {"id": "gate", "type": "filter", "with": {"when": True}},
        {"id": "notify", "type": "effect", "with": {"value": 1}},
    ), effect)
    record = running_record(None, steps=[succeeded_step(0, "gate", False)])
    await store.insert_execution(record)
    done = await harness.resume(compiled, record)
    assert done.status is ExecutionStatus.SUCCEEDED
    assert effect.calls == []


# -- loops and delays ----------------------------------------------------------------------

LOOPING = workflow(
    {"id": "each", "type": "loop", "with": {"over": "{{ trigger.data.items }}",
                                            "blocks": [
        {"id": "call", "type": "effect", "with": {"value": "{{ item * 100 }}"}},
    ]}},
    {"id": "done", "type": "respond", "with": {"body": "{{ each.call }}"}},
)


def item_step(seq: int, block_id: str, item: str, output: Any) -> StepRecord:
    step = succeeded_step(seq, block_id, output)
    step.item = item
    return step


async def test_a_resumed_loop_does_not_repeat_its_finished_items(
    harness: Harness, store: CountingStore
) -> None:
    effect = Effect()
    # Items 0 and 1 were called before the crash (their recorded outputs differ from what
    # a fresh call gives, to show which is used); item 2 was not.
    record = running_record({"items": [1, 2, 3]}, steps=[
        item_step(1, "call", "0", 7), item_step(2, "call", "1", 8)])
    await store.insert_execution(record)
    done = await harness.resume(compile_doc(LOOPING, effect), record)
    assert done.status is ExecutionStatus.SUCCEEDED
    assert [(params["value"], ctx.idempotency_key.rsplit(":", 2)[1:])
            for params, ctx in effect.calls] == [(300, ["call", "2"])]
    assert orjson.loads(done.output or b"null") == [7, 8, 300]


async def test_a_loop_with_no_items_outputs_an_empty_list(harness: Harness) -> None:
    done = await harness.run(compile_doc(LOOPING, Effect()), {"items": []})
    assert done.status is ExecutionStatus.SUCCEEDED
    assert output_of(done.steps[0]) == []


async def test_a_loop_over_too_many_items_fails_its_step(harness: Harness) -> None:
    done = await harness.run(compile_doc(LOOPING, Effect()), {"items": list(range(10_001))})
    assert done.status is ExecutionStatus.FAILED
    assert "at most 10000" in error_of(done)["message"]


async def test_a_delay_suspends_the_execution_as_waiting_with_its_wake_time(
    harness: Harness,
) -> None:
    compiled = compile_doc(workflow({"id": "wait", "type": "delay", "with": {"for": "90s"}}))
    before = now_ms()
    done = await harness.run(compiled)
    assert done.status is ExecutionStatus.WAITING and done.stopped_at is None
    assert done.lease_owner is None
    assert done.wake_at is not None and before + 90_000 <= done.wake_at <= now_ms() + 90_000
    assert steps_of(done) == [(0, "wait", "waiting")]
