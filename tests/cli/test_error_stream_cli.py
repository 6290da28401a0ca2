"""``reflow teams error-stream``: set, show and clear a team's error stream from the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from reflow.cli import cli
from support import TEST_SECRET_KEY


def _cli(folder: Path, *args: str, code: int = 0, secret_key: bool = True) -> Result:
    env: dict[str, str | None] = {
        "REFLOW_DATABASE_URL": f"sqlite:///{folder / 'reflow.db'}",
        "REFLOW_ENV": "dev",
        "REFLOW_DEV_KEY_FILE": str(folder / "dev-key"),
        "REFLOW_SECRET_KEY": TEST_SECRET_KEY if secret_key else None,  # None: unset
    }
    result = CliRunner(env=env).invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def _json(folder: Path, *args: str) -> Any:
    return json.loads(_cli(folder, *args, "--json").stdout)


def test_set_show_and_clear_a_teams_error_stream(tmp_path: Path) -> None:
    _cli(tmp_path, "db", "upgrade")
    other = _json(tmp_path, "teams", "create", "other")["teamId"]

    created = _json(tmp_path, "teams", "error-stream", "set", "https://errors.example.com/a")
    assert created["url"] == "https://errors.example.com/a"
    assert created["secret"].startswith("rfes_")
    assert created["signatureHeader"] == "X-Reflow-Signature"
    assert _json(tmp_path, "teams", "error-stream", "show") == created
    assert _json(tmp_path, "teams", "error-stream", "show", "--team", other)["url"] is None

    moved = _json(tmp_path, "teams", "error-stream", "set", "https://errors.example.com/b")
    rotated = _json(tmp_path, "teams", "error-stream", "set", "https://errors.example.com/b",
                    "--rotate-secret")
    assert moved["secret"] == created["secret"] != rotated["secret"]

    shown = _cli(tmp_path, "teams", "error-stream", "show").stdout
    assert "url:" in shown and "https://errors.example.com/b" in shown
    assert rotated["secret"] in shown and "lastFailure:" in shown

    assert "cleared" in _cli(tmp_path, "teams", "error-stream", "clear").stdout
    assert _json(tmp_path, "teams", "error-stream", "show")["url"] is None


def test_set_refuses_a_bad_url_and_a_missing_secret_key_with_their_exit_codes(
    tmp_path: Path,
) -> None:
    _cli(tmp_path, "db", "upgrade")
    refused = _cli(tmp_path, "teams", "error-stream", "set", "ftp://x.example.com", code=2)
    assert "url: must start with http:// or https://" in refused.stderr
    unsealed = _cli(tmp_path, "teams", "error-stream", "set", "https://x.example.com",
                    code=5, secret_key=False)
    assert "REFLOW_SECRET_KEY is not set" in unsealed.stderr
    assert _json(tmp_path, "teams", "error-stream", "show")["url"] is None
