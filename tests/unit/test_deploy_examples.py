"""The deployment examples (examples/deploy/) and docs/deploy.md agree with the code.

Every reflow command line in them is parsed by reflow's own click CLI (an unknown option
or a bad value fails here, not at 3 a.m. on a host), every REFLOW_* variable they set is a
Settings field whose value Settings accepts, every process shares one secret key, and
each stop timeout leaves room for the shutdown grace the same file configures.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from reflow.cli import cli
from reflow.domain.durations import parse_duration
from reflow.settings import Settings
from support import TEST_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "examples" / "deploy"
SYSTEMD = DEPLOY / "systemd"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
REFLOW_UNITS = ("reflow-migrate.service", "reflow-api.service", "reflow-worker@.service")
# The processes that run executions or accept runs: they must agree on key and database.
REFLOW_SERVICES = ("migrate", "api", "worker")

# What compose would substitute for ${NAME...} from the .env file.
ENV_FILE_VALUES = {"POSTGRES_PASSWORD": "example-password", "REFLOW_SECRET_KEY": TEST_SECRET_KEY}
_INTERPOLATION = re.compile(r"\$\{(\w+)[^}]*\}")
_SETTING_NAME = re.compile(r"\bREFLOW_[A-Z0-9_]+\b")


@pytest.fixture(autouse=True)
def _no_reflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings here come from the example files alone, not from the test's environment."""
    for name in [n for n in os.environ if n.startswith("REFLOW_")]:
        monkeypatch.delenv(name)


# -- reading the files -------------------------------------------------------------------------


def invocation(argv: list[str]) -> click.Context:
    """Parse ``argv`` (``reflow ...``) as reflow's CLI would; raise click.UsageError if not.

    Groups are walked by name down to the command, whose ``make_context`` then parses the
    options and arguments exactly as a real invocation does (types and ranges included).
    """
    assert argv and Path(argv[0]).name == "reflow", f"not a reflow command: {argv}"
    command: click.Command = cli
    ctx = click.Context(cli, info_name="reflow")
    rest = argv[1:]
    while isinstance(command, click.Group):
        if not rest:
            raise click.UsageError(f"{ctx.command_path} needs a subcommand", ctx)
        name, *rest = rest
        sub = command.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"{ctx.command_path} has no command {name!r}", ctx)
        command = sub
        if not isinstance(sub, click.Group):
            return sub.make_context(name, rest, parent=ctx)
        ctx = click.Context(sub, info_name=name, parent=ctx)
    raise AssertionError("unreachable: the loop returns at the first command")


def compose() -> dict[str, Any]:
    """compose.yaml with its anchors and merge keys resolved."""
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def interpolated(value: object) -> str:
    """A compose environment value as compose would pass it, given the .env file."""
    return _INTERPOLATION.sub(lambda m: ENV_FILE_VALUES[m.group(1)], str(value))


def service_env(name: str) -> dict[str, str]:
    """The environment compose gives service ``name``, interpolated."""
    env: Mapping[str, object] = compose()["services"][name].get("environment", {})
    return {key: interpolated(value) for key, value in env.items()}


def dockerfile_env() -> dict[str, str]:
    """The REFLOW_* variables the image sets (ENV lines, with continuations)."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return {k: v for k, v in env.items() if k.startswith("REFLOW_")}


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: section -> key -> every value given (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in (SYSTEMD / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{name}: keep each setting on one line: {line}"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{name}: {line!r} is outside any section"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def env_example() -> dict[str, str]:
    """examples/deploy/systemd/env.example, what /etc/reflow/env starts from."""
    lines = [line for line in (SYSTEMD / "env.example").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return {key.strip(): value.strip() for key, _, value in (ln.partition("=") for ln in lines)}


def reflow_command_lines() -> Iterator[tuple[str, list[str]]]:
    """Every reflow command line of the examples, named by where it comes from."""
    for name, service in compose()["services"].items():
        command = service.get("command")
        if isinstance(command, str):
            command = shlex.split(command)
        if command and Path(command[0]).name == "reflow":
            yield f"compose.yaml: {name}", [str(part) for part in command]
    for name in REFLOW_UNITS:
        for line in unit(name)["Service"]["ExecStart"]:
            # systemd expands a template's instance (%i) first: check instance 1.
            yield f"{name}: ExecStart", shlex.split(line.lstrip("-@:+!").replace("%i", "1"))
    cmd = re.search(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd is not None, "the Dockerfile has no exec-form CMD"
    yield "Dockerfile: CMD", yaml.safe_load(cmd.group(1))


def settings_from(env: Mapping[str, str]) -> Settings:
    """Settings validated from ``env``'s REFLOW_* variables (each must be a field)."""
    values: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith("REFLOW_"):
            continue
        field = name.removeprefix("REFLOW_").lower()
        assert field in Settings.model_fields, f"{name} is not a reflow setting"
        values[field] = value
    return Settings.model_validate(values)


def seconds(text: str) -> float:
    """A compose or systemd duration given as reflow writes them (``45s``, ``1m30s``)."""
    return parse_duration(text.replace(" ", ""))


# -- the checker itself ------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["reflow", "worker", "--no-such-option"],
    ["reflow", "worker", "--concurrency", "0"],
    ["reflow", "serve", "--concurrency", "4"],
    ["reflow", "db", "upgrad"],
    ["reflow", "db"],
])
def test_invocation_refuses_what_reflow_would_refuse(argv: list[str]) -> None:
    with pytest.raises(click.UsageError):
        invocation(argv)


def test_invocation_records_the_settings_flags_it_parses() -> None:
    ctx = invocation(["reflow", "worker", "--concurrency", "32"])
    assert ctx.command.name == "worker"
    assert ctx.meta["reflow.settings_overrides"] == {"worker_concurrency": 32}


# -- the examples ------------------------------------------------------------------------------


def test_every_reflow_command_line_is_a_valid_invocation() -> None:
    seen = set()
    for where, argv in reflow_command_lines():
        try:
            ctx = invocation(argv)
        except click.UsageError as exc:
            pytest.fail(f"{where}: {shlex.join(argv)}: {exc.format_message()}")
        seen.add(ctx.command_path)
    # The deployment the examples describe: migrate, API-only processes, workers.
    assert {"reflow db upgrade", "reflow serve", "reflow worker"} <= seen


def test_api_processes_serve_without_a_worker() -> None:
    assert compose()["services"]["api"]["command"][:3] == ["reflow", "serve", "--no-worker"]
    assert unit("reflow-api.service")["Service"]["ExecStart"] == [
        "/opt/reflow/venv/bin/reflow serve --no-worker"]


@pytest.mark.parametrize("service", REFLOW_SERVICES)
def test_compose_sets_only_valid_reflow_settings(service: str) -> None:
    env = {**dockerfile_env(), **service_env(service)}
    settings = settings_from(env)
    assert settings.database_url.startswith("postgresql://")
    assert settings.secret_key is not None


def test_the_image_and_the_systemd_env_set_only_valid_settings() -> None:
    settings_from(dockerfile_env())
    env = env_example()
    # The operator fills the key in; the rest of the example must be usable as written.
    assert env.pop("REFLOW_SECRET_KEY") == ""
    settings = settings_from(env)
    assert settings.database_url.startswith("postgresql://")


def test_every_reflow_process_shares_one_secret_key_and_one_database() -> None:
    envs = {name: service_env(name) for name in REFLOW_SERVICES}
    for variable in ("REFLOW_SECRET_KEY", "REFLOW_DATABASE_URL"):
        values = {name: env.get(variable) for name, env in envs.items()}
        assert set(values.values()) == {values["api"]}, f"{variable} differs: {values}"
        assert values["api"], f"{variable} is not set"
    assert "${REFLOW_SECRET_KEY" in compose()["services"]["worker"]["environment"][
        "REFLOW_SECRET_KEY"], "the key must come from the .env file, not the compose file"
    files = {name: unit(name)["Service"].get("EnvironmentFile") for name in REFLOW_UNITS}
    assert all(f == ["/etc/reflow/env"] for f in files.values()), files
    for name in REFLOW_UNITS:
        for line in unit(name)["Service"].get("Environment", []):
            assert "REFLOW_" not in line, f"{name}: settings belong in /etc/reflow/env"


@pytest.mark.parametrize("service", ["api", "worker"])
def test_compose_stop_grace_period_exceeds_the_shutdown_grace(service: str) -> None:
    grace = settings_from(service_env(service)).shutdown_grace
    stop = seconds(compose()["services"][service]["stop_grace_period"])
    assert stop > grace, f"{service}: Docker would SIGKILL at {stop}s, inside the {grace}s grace"


@pytest.mark.parametrize("name", ["reflow-api.service", "reflow-worker@.service"])
def test_systemd_stop_timeout_exceeds_the_shutdown_grace(name: str) -> None:
    env = env_example()
    env.pop("REFLOW_SECRET_KEY")
    grace = settings_from(env).shutdown_grace
    service = unit(name)["Service"]
    assert service["KillSignal"] == ["SIGTERM"]
    # SIGTERM to reflow alone: its executor processes must live through the grace.
    assert service["KillMode"] == ["mixed"]
    (timeout,) = service["TimeoutStopSec"]
    assert seconds(timeout) > grace, f"{name}: SIGKILL at {timeout}, inside the {grace}s grace"
    assert service["Restart"] == ["on-failure"]


@pytest.mark.parametrize("name", REFLOW_UNITS)
def test_systemd_units_run_as_a_dedicated_user_with_hardening(name: str) -> None:
    service = unit(name)["Service"]
    assert service["User"] == ["reflow"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert service[key] == ["yes"], f"{name}: {key}"
    assert service["ProtectSystem"] == ["strict"]


def test_api_and_workers_start_after_the_migration() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["reflow", "db", "upgrade"]
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}}
    assert unit("reflow-migrate.service")["Service"]["Type"] == ["oneshot"]
    for name in ("reflow-api.service", "reflow-worker@.service"):
        assert "reflow-migrate.service" in " ".join(unit(name)["Unit"]["After"])


def test_api_healthcheck_probes_readyz_on_the_port_it_serves() -> None:
    api = compose()["services"]["api"]
    settings = settings_from({**dockerfile_env(), **service_env("api")})
    assert settings.host == "0.0.0.0"
    probe = " ".join(api["healthcheck"]["test"])
    assert f"http://127.0.0.1:{settings.port}/readyz" in probe
    assert all(port.endswith(f":{settings.port}") for port in api["ports"])
    assert api["deploy"]["replicas"] == 2
    assert compose()["services"]["worker"]["deploy"]["replicas"] == 3


# -- docs/deploy.md ----------------------------------------------------------------------------


def test_deploy_doc_names_only_real_settings() -> None:
    named = set(_SETTING_NAME.findall(DEPLOY_DOC.read_text()))
    unknown = {n for n in named if n.removeprefix("REFLOW_").lower() not in Settings.model_fields}
    assert not unknown, f"docs/deploy.md names settings that do not exist: {sorted(unknown)}"
    for field in ("database_url", "secret_key", "database_pool_size", "lease_seconds",
                  "worker_concurrency", "worker_poll_interval", "shutdown_grace"):
        assert f"REFLOW_{field.upper()}" in named, f"docs/deploy.md does not cover {field}"


def test_deploy_doc_states_the_real_defaults() -> None:
    # Table rows "| `REFLOW_X` | `default` | ...": the default must be Settings' own.
    rows = re.findall(r"^\| `(REFLOW_[A-Z0-9_]+)` \| `([^`]+)` \|", DEPLOY_DOC.read_text(),
                      re.MULTILINE)
    assert len(rows) >= 5
    defaults = Settings.model_validate({})
    for name, stated in rows:
        field = name.removeprefix("REFLOW_").lower()
        documented = Settings.model_validate({field: stated})
        assert getattr(documented, field) == getattr(defaults, field), name
