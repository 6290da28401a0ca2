"""``reflow serve`` and secrets: production needs REFLOW_SECRET_KEY and prints no API key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from reflow.cli import cli
from reflow.cli.runtime import Banner
from reflow.services import Bootstrap
from reflow.settings import load_settings

KEY = "rf_banner_key_0123456789abcdef"


def banner_text(env: str) -> str:
    """The banner of a server that knows a working key, in ``env`` mode."""
    settings = load_settings(env=env, secret_key=Fernet.generate_key().decode())
    return "\n".join(Banner(settings, Bootstrap("team", KEY, True), [], None).lines())


def test_the_dev_banner_prints_the_api_key() -> None:
    assert f"API key:  {KEY}" in banner_text("dev")


def test_the_production_banner_prints_no_key_but_how_to_create_one() -> None:
    text = banner_text("production")
    assert KEY not in text
    assert "keys create --name NAME" in text


def env_for(folder: Path, **extra: str) -> dict[str, str]:
    """A production environment on a database in ``folder`` (no REFLOW_* inherited)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFLOW_")}
    env.update(REFLOW_DATABASE_URL=f"sqlite:///{folder / 'reflow.db'}",
               REFLOW_ENV="production", REFLOW_PURGE_INTERVAL="1h", **extra)
    return env


def test_production_serve_without_a_secret_key_refuses_to_start_naming_the_variable(
    tmp_path: Path,
) -> None:
    result = CliRunner(env=env_for(tmp_path)).invoke(cli, ["serve"])
    assert result.exit_code == 3, result.output
    assert "REFLOW_SECRET_KEY is not set" in result.stderr
    assert not (tmp_path / "reflow.db").exists()  # refused before touching the database


def test_a_malformed_secret_key_is_a_settings_error_that_does_not_echo_it(
    tmp_path: Path,
) -> None:
    env = env_for(tmp_path, REFLOW_SECRET_KEY=f"{Fernet.generate_key().decode()},oops-secret")
    result = CliRunner(env=env).invoke(cli, ["serve"])
    assert result.exit_code == 3
    assert "REFLOW_SECRET_KEY: " in result.stderr and "key 2 of 2" in result.stderr
    assert "oops-secret" not in result.stderr


@pytest.fixture
def port() -> int:
    """A free local port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        number: int = sock.getsockname()[1]
        return number


@pytest.fixture
def production_server(tmp_path: Path, port: int) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A real production ``reflow serve`` with a bootstrap key; killed at the end."""
    env = env_for(tmp_path, REFLOW_SECRET_KEY=Fernet.generate_key().decode(),
                  REFLOW_BOOTSTRAP_KEY=KEY, REFLOW_HOST="127.0.0.1", REFLOW_PORT=str(port))
    out = tmp_path / "out"
    with out.open("wb") as stdout, (tmp_path / "err").open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "reflow", "serve"], env=env,
                                   stdout=stdout, stderr=stderr, cwd=tmp_path)
    try:
        yield process, out
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.e2e
def test_production_serve_prints_its_banner_without_the_api_key(
    production_server: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    process, out = production_server
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        if "logs:" in out.read_text():
            break
        time.sleep(0.1)
    banner = out.read_text()
    assert "logs:" in banner, (tmp_path / "err").read_text()
    assert KEY not in banner and KEY not in (tmp_path / "err").read_text()
    assert "not printed in production" in banner and "keys create" in banner
