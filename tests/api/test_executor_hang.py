"""An executor stuck in one evaluation is killed by the watchdog, and the block that did it
fails at once (it would hang again), while other teams' runs go on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from reflow.settings import Settings
from support import heavy_workflow, other_team_runs_meanwhile, start_run, wait_finished

# One built-in call of several seconds: the engine's own clock cannot interrupt it.
HANGS = '{{ $length($pad("x", 400000000)) }}'
# The same inside a map: the budget is not checked between these items (31 s measured).
HANGS_IN_A_MAP = '{{ $count($map([1..30], function($i) {$pad("x", 100000000)})) }}'


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """One executor process with a 1.5 s hang watchdog."""
    return make_settings(executor_processes=1, executor_hang_timeout=1.5)


@pytest.mark.parametrize("expression", [HANGS, HANGS_IN_A_MAP])
def test_a_run_that_hangs_its_executor_fails_its_block_at_once(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    other_team_headers: dict[str, str], expression: str,
) -> None:
    execution_id = start_run(client, *installed(heavy_workflow(expression, "Endless")))
    other_team_runs_meanwhile(client, other_team_headers)
    data = wait_finished(client, execution_id, timeout=60)
    assert data["status"] == "failed"
    assert data["error"] == {
        "message": "block 'heavy' stopped its executor process: it ran for more than 1.5s "
                   "without yielding; it is not resumed again",
        "blockId": "heavy",
    }


