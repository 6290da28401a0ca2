"""The pure blocks: what each outputs and what it asks of the step loop."""

from __future__ import annotations

from typing import Any

import pytest

from reflow.blocks.base import BlockContext, Outcome
from reflow.blocks.pure import Branch, Fail, Filter, Respond, Transform
from reflow.errors import BlockFailed

pytestmark = pytest.mark.anyio

CTX = BlockContext(execution_id="ex1", block_id="b", attempt=1, idempotency_key="ex1:b")


@pytest.mark.parametrize("value", [{"total": 120, "items": [1, 2]}, [1, "a"], "text", 3, None])
async def test_transform_outputs_its_value(value: Any) -> None:
    assert await Transform().run({"value": value}, CTX) == Outcome(value)


@pytest.mark.parametrize("when", [True, 1, -0.5, "no", [0], {"a": None}])
async def test_filter_passes_on_a_truthy_condition(when: Any) -> None:
    assert await Filter().run({"when": when}, CTX) == Outcome(True, stop=False)


@pytest.mark.parametrize("when", [False, None, 0, 0.0, "", [], {}])
async def test_filter_stops_the_execution_on_a_falsy_condition(when: Any) -> None:
    assert await Filter().run({"when": when}, CTX) == Outcome(False, stop=True)


@pytest.mark.parametrize(("condition", "arm"), [(True, "then"), ("yes", "then"), (0, "else")])
async def test_branch_runs_the_arm_its_condition_picks(condition: Any, arm: str) -> None:
    assert await Branch().run({"if": condition}, CTX) == Outcome(arm, children=arm)


async def test_respond_answers_200_with_its_body_by_default() -> None:
    outcome = await Respond().run({"body": {"notified": True}}, CTX)
    assert outcome == Outcome({"notified": True}, respond_status=200)


async def test_respond_without_body_outputs_none() -> None:
    assert await Respond().run({"status": 204}, CTX) == Outcome(None, respond_status=204)


@pytest.mark.parametrize("status", [99, 600, "200", 200.0, True, None])
async def test_respond_refuses_a_status_that_is_not_an_http_code(status: Any) -> None:
    with pytest.raises(BlockFailed, match="status must be an HTTP status code") as failure:
        await Respond().run({"status": status}, CTX)
    assert failure.value.retryable is False


async def test_fail_raises_its_message_without_retry() -> None:
    with pytest.raises(BlockFailed) as failure:
        await Fail().run({"message": "order 7 has no customer"}, CTX)
    assert failure.value.message == "order 7 has no customer"
    assert failure.value.retryable is False


async def test_fail_with_a_non_string_message_shows_its_repr() -> None:
    with pytest.raises(BlockFailed) as failure:
        await Fail().run({"message": {"code": 7}}, CTX)
    assert failure.value.message == "{'code': 7}"


@pytest.mark.parametrize("block", [Transform, Filter, Branch, Respond, Fail])
def test_pure_blocks_have_no_side_effects(block: Any) -> None:
    assert block.side_effects is False
