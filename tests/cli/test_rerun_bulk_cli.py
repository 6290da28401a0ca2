"""``reflow rerun --since ...``: the bulk form of rerun, its dry run and its summary, beside
the single form."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reflow.cli import cli

CHECKED_YAML = """\
name: Checked
trigger: {type: api}
blocks:
  - id: check
    type: transform
    with: {value: "{{ trigger.data.ok ? 'fine' : $error('order not ok') }}"}
"""


class Cli:
    """``reflow`` in-process on one SQLite file (no server: the CLI runs the job)."""

    def __init__(self, folder: Path) -> None:
        self.env = {"REFLOW_DATABASE_URL": f"sqlite:///{folder / 'reflow.db'}",
                    "REFLOW_ENV": "dev", "REFLOW_DEV_KEY_FILE": str(folder / "dev-key"),
                    "REFLOW_EXECUTOR_PROCESSES": "0"}
        self.folder = folder

    def __call__(self, *args: str, code: int = 0) -> Result:
        result = CliRunner(env=self.env).invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def failed(tmp_path: Path) -> tuple[Cli, list[str]]:
    """Two failed executions of "Checked" for user demo, and their ids."""
    run = Cli(tmp_path)
    run("db", "upgrade")
    definition = tmp_path / "checked.yaml"
    definition.write_text(CHECKED_YAML)
    run("workflows", "apply", str(definition))
    run("users", "create", "demo")
    run("workflows", "activate", "Checked", "--user", "demo")
    ids = [run.json("run", "Checked", "--user", "demo", "--data", '{"ok": false}',
                    "--wait", "10")["executionId"] for _ in range(2)]
    return run, ids


def test_dry_run_lists_what_would_be_rerun_and_reruns_nothing(
    failed: tuple[Cli, list[str]],
) -> None:
    run, ids = failed
    listed = run.json("rerun", "--failed", "--since", "1h", "--dry-run")
    assert listed["total"] == 2
    assert [e["executionId"] for e in listed["executions"]] == ids
    assert listed["executions"][0]["error"] == "check: order not ok"
    text = run("rerun", "--since", "1h", "--dry-run").stdout
    assert ids[0] in text and "2 executions would be rerun" in text
    # 80 columns: each distinct error once below the table, with its count.
    assert "      2  check: order not ok" in text
    run.env["COLUMNS"] = "160"  # a wide console: the error in a column of its own
    wide = run("rerun", "--since", "1h", "--dry-run").stdout
    assert "│ check: order not ok" in wide and "errors, by" not in wide
    assert all(run.json("logs", "show", i)["reruns"] == [] for i in ids)


def test_bulk_rerun_runs_the_job_here_and_prints_a_summary(
    failed: tuple[Cli, list[str]],
) -> None:
    run, ids = failed
    summary = run.json("rerun", "--failed", "--since", "1h", "--workflow", "Checked",
                       "--user", "demo", "--error", "not ok")
    assert (summary["status"], summary["total"], summary["done"]) == ("done", 2, 2)
    assert summary["newExecutions"] == {"failed": 2}
    for source in ids:
        reruns = run.json("logs", "show", source)["reruns"]
        assert len(reruns) == 1
    text = run("rerun", "--since", "1h", "--until", "1m", "--block", "no-such").stdout
    assert "done" in text


def test_bulk_rerun_refuses_mixed_or_incomplete_forms(failed: tuple[Cli, list[str]]) -> None:
    run, ids = failed
    assert "not both" in run("rerun", "Checked", ids[0], "--since", "1h", code=2).stderr
    assert "--since is required" in run("rerun", "--failed", code=2).stderr
    assert "filter.until" in run("rerun", "--since", "1h", "--until", "2h", code=2).stderr
    assert "WORKFLOW EXECUTION_ID" in run("rerun", code=2).stderr
    single = run.json("rerun", "Checked", ids[0], "--wait", "10")
    assert single["status"] == "failed"
