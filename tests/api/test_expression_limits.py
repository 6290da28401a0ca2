"""Expressions cannot take the API down: too large to compile is a 422 naming the block, and a
result nested too deeply fails its step; the server answers the next request either way.

The requests run in this test's own process: had the engine crashed on them (a native stack
overflow, as a chain of ~9,400 operators did while validating), the test run itself would die.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.expressions import MAX_NESTING, MAX_VALUE_DEPTH
from support import LONG_CHAINS, ORDER_DATA, ORDER_OUTPUT, ORDER_SUMMARY


def with_expression(source: str) -> dict[str, Any]:
    """A definition whose third block (``blocks[2]``) computes ``source``."""
    return {
        "name": "limits",
        "trigger": {"type": "api"},
        "blocks": [
            {"id": "first", "type": "transform", "with": {"value": "{{ trigger.data }}"}},
            {"id": "second", "type": "transform", "with": {"value": 2}},
            {"id": "third", "type": "transform", "with": {"value": "{{ " + source + " }}"}},
            {"id": "done", "type": "respond", "with": {"body": "{{ third }}"}},
        ],
    }


@pytest.mark.parametrize("operator", LONG_CHAINS)
def test_a_chain_of_ten_thousand_operators_answers_422_naming_the_block(
    client: TestClient, operator: str
) -> None:
    response = client.post("/workflows", json=with_expression(LONG_CHAINS[operator]))
    assert response.status_code == 422, response.text
    body = response.json()
    problems = {p["path"]: p["reason"] for p in body["problems"]}
    assert list(problems) == ["blocks[2].with.value"]
    assert problems["blocks[2].with.value"].startswith("expression is too large to compile")
    assert "blocks[2].with.value: expression is too large to compile" in body["message"]
    # The same process answers the next request.
    assert client.post("/workflows", json=ORDER_SUMMARY).status_code == 200


def test_a_chain_just_over_the_limit_says_how_long_it_is_and_the_limit(
    client: TestClient,
) -> None:
    chain = "1" + "+1" * (MAX_NESTING + 1)
    response = client.post("/workflows", json=with_expression(chain))
    assert response.status_code == 422, response.text
    [problem] = response.json()["problems"]
    assert problem == {
        "path": "blocks[2].with.value",
        "reason": f"expression is too large to compile ({MAX_NESTING + 1} operators nested "
                  f"in one chain; at most {MAX_NESTING})",
    }


def test_the_longest_accepted_chain_is_saved_and_runs(
    client: TestClient, installed: Callable[..., tuple[str, str]],
) -> None:
    chain = "1" + "+1" * (MAX_NESTING - 1)
    workflow_id, user_id = installed(with_expression(chain))
    response = client.post("/run/workflow", params={"wait": 10}, json={
        "workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA,
    })
    assert response.status_code == 200, response.text
    assert response.json()["output"] == MAX_NESTING


def test_a_result_nested_too_deeply_fails_its_run_and_the_server_keeps_serving(
    client: TestClient, installed: Callable[..., tuple[str, str]],
) -> None:
    deep = '$reduce([1..20000], function($acc, $i){ {"a": $acc} }, {})'
    workflow_id, user_id = installed(with_expression(deep))
    response = client.post("/run/workflow", params={"wait": 10}, json={
        "workflowId": workflow_id, "userId": user_id, "data": {},
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert f"nested more than {MAX_VALUE_DEPTH} levels deep" in str(body["error"])
    # Another workflow still runs to its usual output.
    workflow_id, user_id = installed(ORDER_SUMMARY)
    response = client.post("/run/workflow", params={"wait": 10}, json={
        "workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA,
    })
    assert response.json()["output"] == ORDER_OUTPUT
