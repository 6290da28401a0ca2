"""``reflow purge`` and ``reflow teams retention``: an operator's purge, dry and real."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from reflow.cli import cli

DAY_MS = 86_400_000


def _cli(folder: Path, *args: str, code: int = 0) -> Result:
    env = {"REFLOW_DATABASE_URL": f"sqlite:///{folder / 'reflow.db'}", "REFLOW_ENV": "dev",
           "REFLOW_DEV_KEY_FILE": str(folder / "dev-key")}
    result = CliRunner(env=env).invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def _json(folder: Path, *args: str) -> Any:
    return json.loads(_cli(folder, *args, "--json").stdout)


def _old_executions(folder: Path, team_id: str, days_ago: list[int]) -> None:
    """Finished executions stopped that many days ago, three steps each."""
    with sqlite3.connect(folder / "reflow.db") as db:
        now = time.time_ns() // 1_000_000
        for n, days in enumerate(days_ago):
            at = now - days * DAY_MS
            execution_id = f"x{n:020d}"
            db.execute("INSERT INTO executions (id, team_id, workflow_id, installation_id, "
                       "user_id, version, mode, trigger, status, created_at, started_at, "
                       "stopped_at) VALUES (?, ?, 'w', 'i', 'u', 1, 'api', x'7b7d', "
                       "'succeeded', ?, ?, ?)", (execution_id, team_id, at, at, at))
            db.executemany("INSERT INTO steps (execution_id, seq, block_id, status, attempts, "
                           "started_at, stopped_at, input, reused, truncated) VALUES "
                           "(?, ?, 'b', 'succeeded', 1, ?, ?, x'7b7d', 0, 0)",
                           [(execution_id, seq, at, at) for seq in range(3)])


def test_purge_dry_run_counts_then_purge_deletes_with_progress(tmp_path: Path) -> None:
    _cli(tmp_path, "db", "upgrade")
    team = _json(tmp_path, "teams", "list")[0]["teamId"]
    _old_executions(tmp_path, team, [10, 9, 8, 3, 1])
    dry = _json(tmp_path, "purge", "--dry-run")
    assert (dry["dryRun"], dry["executions"]) == (True, 3)
    assert _json(tmp_path, "purge", "--dry-run", "--before", "2d")["executions"] == 4
    done = _cli(tmp_path, "purge")
    assert "deleted 3 executions" in done.stdout
    assert "team window of team" in done.stderr  # the progress line
    assert _json(tmp_path, "purge", "--dry-run")["executions"] == 0
    assert _json(tmp_path, "purge", "--before", "2d", "--team", team)["executions"] == 1
    with sqlite3.connect(tmp_path / "reflow.db") as db:
        assert db.execute("SELECT count(*) FROM steps").fetchone()[0] == 3


def test_teams_retention_shows_sets_and_resets_a_teams_window(tmp_path: Path) -> None:
    _cli(tmp_path, "db", "upgrade")
    team = _json(tmp_path, "teams", "list")[0]["teamId"]
    assert _json(tmp_path, "teams", "retention", team)["inherited"] is True
    assert _json(tmp_path, "teams", "retention", team, "30d")["window"] == "30 days"
    _old_executions(tmp_path, team, [10])
    assert _json(tmp_path, "purge", "--dry-run")["executions"] == 0  # 30 days now
    assert _json(tmp_path, "teams", "retention", team, "default")["inherited"] is True
    refused = _cli(tmp_path, "teams", "retention", team, "soon", code=2)
    assert "WINDOW:" in refused.stderr
    assert "--before" in _cli(tmp_path, "purge", "--before", "whenever", code=2).stderr
