"""``reflow serve --demo-user NAME --demo-credential APP:FIELD=VALUE``: what `make run` does
to connect the demo user to the example shop, so the examples run offline."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from reflow.cli import cli
from support import EXAMPLES, SHOP_API_KEY, example_shop, free_port, start_serve, stop_serve

KEY = "rf_demo_key_0123456789abcdef"
HEADERS = {"authorization": f"bearer {KEY}", "x-api-version": "2025-09"}
DEMO = "demo@example.com"


def env_for(folder: Path, **extra: str) -> dict[str, str]:
    """A dev environment on a database in ``folder`` (no REFLOW_* inherited)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFLOW_")}
    env.update(REFLOW_DATABASE_URL=f"sqlite:///{folder / 'reflow.db'}", REFLOW_ENV="dev",
               REFLOW_DEV_KEY_FILE=str(folder / "dev-key"), REFLOW_PURGE_INTERVAL="1h",
               **extra)
    return env


@pytest.mark.parametrize("args", [
    ["--demo-credential", "shop:apiKey=k"],
    ["--demo-user", DEMO, "--demo-credential", "sk-live-1234"],
    ["--demo-user", DEMO, "--demo-credential", "apiKey=sk-live-1234"],
    ["--demo-user", DEMO, "--demo-credential", "shop:apiKey"],
    ["--demo-user", DEMO, "--demo-credential", "shop:k=a", "--demo-credential", "shop:k=b"],
], ids=["without-demo-user", "no-colon", "no-app", "no-value", "field-twice"])
def test_a_malformed_demo_credential_is_a_usage_error_that_never_echoes_the_value(
    tmp_path: Path, args: list[str]
) -> None:
    result = CliRunner(env=env_for(tmp_path)).invoke(cli, ["serve", *args])
    assert result.exit_code == 2, result.output
    assert "--demo-credential" in result.stderr
    assert "sk-live-1234" not in result.stderr
    assert not (tmp_path / "reflow.db").exists()  # refused before touching the database


@pytest.mark.parametrize(("given", "code", "message"), [
    ("crm:apiKey=k", 4, "app 'crm' not found"),
    ("shop:token=sk-live-1234", 2, "apiKey"),
], ids=["undeclared-app", "missing-field"])
def test_a_demo_credential_for_an_unknown_app_or_field_exits_naming_it(
    tmp_path: Path, given: str, code: int, message: str
) -> None:
    env = env_for(tmp_path, REFLOW_SECRET_KEY=Fernet.generate_key().decode())
    result = CliRunner(env=env).invoke(cli, [
        "serve", "--apply", str(EXAMPLES / "shop.app.yaml"), "--demo-user", DEMO,
        "--demo-credential", given])
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "sk-live-1234" not in result.output + result.stderr


@pytest.fixture
def shop_url() -> Iterator[str]:
    """The example shop answering only SHOP_API_KEY, as `make run` starts it."""
    server, thread = example_shop().serve(0, api_key=SHOP_API_KEY)
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.e2e
def test_the_demo_user_gets_the_shop_credential_a_restart_keeps_it_and_a_new_value_wins(
    tmp_path: Path, shop_url: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = env_for(tmp_path, REFLOW_BOOTSTRAP_KEY=KEY,
                  REFLOW_SECRET_KEY=Fernet.generate_key().decode(),
                  REFLOW_HTTP_ALLOW_NETWORKS="127.0.0.0/8",
                  REFLOW_EXPRESSION_ENV=orjson.dumps({"shopUrl": shop_url}).decode())
    answers, listed = [], []
    with (tmp_path / "serve.log").open("ab") as log:
        # The same key twice (the restart keeps the credential), then one the shop refuses.
        for key in (SHOP_API_KEY, SHOP_API_KEY, "not-the-shop-key"):
            process = start_serve(["--apply", str(EXAMPLES), "--demo-user", DEMO,
                                   "--demo-credential", f"shop:apiKey={key}"], env, port, log)
            try:
                answers.append(httpx.post(
                    f"{base}/run/workflow", params={"wait": 10}, headers=HEADERS, timeout=15,
                    json={"workflowName": "Ship paid order", "userId": DEMO,
                          "data": {"orderId": "1002"}}).json())
                listed.append(httpx.get(f"{base}/users/{DEMO}/credentials",
                                        headers=HEADERS).json()["data"])
            finally:
                stop_serve(process)
    assert [a["status"] for a in answers] == ["succeeded", "succeeded", "failed"], answers
    assert "answered 401" in answers[2]["error"]["message"]  # runs bind the newest
    assert [len(found) for found in listed] == [1, 1, 2]
    assert listed[0] == listed[1] and listed[0][0]["app"] == "shop"
    said = (tmp_path / "serve.log").read_text()
    assert said.count(", app shop") == 2  # "credential ID created for user ID, app shop"
    assert said.count("for app shop kept (same values)") == 1
    assert SHOP_API_KEY not in said
