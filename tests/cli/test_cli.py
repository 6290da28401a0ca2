"""The ``reflow`` command: each command against a real SQLite file, and ``serve`` as a process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from reflow.cli import cli
from reflow.cli import common as cli_module
from reflow.domain.executions import ExecutionRecord
from reflow.ids import new_execution_id
from reflow.services import Reflow
from reflow.settings import load_settings

ORDER_SUMMARY_YAML = """\
name: Order summary
trigger:
  type: api
  schema: {label: abc, values: [1, 2, 3]}
blocks:
  - id: total
    type: transform
    with: {value: "{{ $sum(trigger.data.values) }}"}
  - id: done
    type: respond
    with:
      body: {label: "{{ $uppercase(trigger.data.label) }}", total: "{{ total }}"}
"""

INVALID_YAML = """\
name: Broken
blocks:
  - id: x
    type: no-such-block
  - type: transform
"""

DATA = '{"label": "cli", "values": [2, 3]}'
OUTPUT = {"label": "CLI", "total": 5}


@dataclass
class Cli:
    """Runs ``reflow`` commands in-process against one database."""

    env: dict[str, str]
    folder: Path

    def __call__(self, *args: str, code: int = 0) -> Result:
        result = CliRunner(env=self.env).invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def write(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.write_text(text)
        return path

    def reflow_call(self, work: Callable[[Reflow], Any]) -> Any:
        """Run ``work`` on a Reflow over the same database (to check what the CLI stored)."""

        async def go() -> Any:
            reflow = Reflow.open(load_settings(database_url=self.env["REFLOW_DATABASE_URL"]))
            try:
                return await work(reflow)
            finally:
                await reflow.close()

        return asyncio.run(go())


def _env(folder: Path) -> dict[str, str]:
    return {
        "REFLOW_DATABASE_URL": f"sqlite:///{folder / 'reflow.db'}",
        "REFLOW_ENV": "dev",
        "REFLOW_DEV_KEY_FILE": str(folder / "dev-key"),
        "REFLOW_PURGE_INTERVAL": "1h",
    }


@pytest.fixture
def reflow_cli(tmp_path: Path) -> Cli:
    """A CLI on a new database, not migrated yet."""
    return Cli(_env(tmp_path), tmp_path)


@pytest.fixture
def ready(reflow_cli: Cli) -> Cli:
    """A migrated database with "Order summary" active for user "demo"."""
    reflow_cli("db", "upgrade")
    reflow_cli("workflows", "apply", str(reflow_cli.write("order.yaml", ORDER_SUMMARY_YAML)))
    reflow_cli("users", "create", "demo")
    reflow_cli("workflows", "activate", "Order summary", "--user", "demo")
    return reflow_cli


def _run_finished(ready: Cli) -> dict[str, Any]:
    result: dict[str, Any] = ready.json("run", "Order summary", "--user", "demo", "--data", DATA,
                                        "--wait", "10")
    return result


# -- db --------------------------------------------------------------------------------------


def test_db_upgrade_migrates_a_new_file_once_and_prints_the_first_key_once(
    reflow_cli: Cli,
) -> None:
    first = reflow_cli.json("db", "upgrade")
    again = reflow_cli.json("db", "upgrade")
    assert first["migrations"] and first["teamCreated"] and first["apiKey"].startswith("rf_")
    assert again == {**first, "migrations": [], "teamCreated": False, "apiKey": None}
    assert "already up to date" in reflow_cli("db", "upgrade").stdout


# -- keys ------------------------------------------------------------------------------------


def test_keys_create_list_and_revoke_and_a_revoked_key_no_longer_authenticates(
    reflow_cli: Cli,
) -> None:
    reflow_cli("db", "upgrade")
    created = reflow_cli.json("keys", "create", "--name", "ci")
    raw = created["key"]
    assert reflow_cli.reflow_call(lambda r: r.keys.is_valid(raw)) is True

    listed = {k["name"]: k for k in reflow_cli.json("keys", "list")}
    assert listed["ci"]["prefix"] == raw[:10] and listed["ci"]["revokedAt"] is None
    assert raw not in reflow_cli("keys", "list").stdout

    reflow_cli("keys", "revoke", created["prefix"])
    assert reflow_cli.reflow_call(lambda r: r.keys.is_valid(raw)) is False
    assert {k["name"]: k for k in reflow_cli.json("keys", "list")}["ci"]["revokedAt"]
    again = reflow_cli("keys", "revoke", created["id"], code=4)
    assert "no live API key" in again.stderr


def test_keys_create_prints_the_raw_key_once_as_key_value_lines(reflow_cli: Cli) -> None:
    reflow_cli("db", "upgrade")
    result = reflow_cli("keys", "create", "--name", "ops")
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert fields["name"].strip() == "ops" and fields["key"].strip().startswith("rf_")
    assert "only time" in result.stderr


# -- teams -----------------------------------------------------------------------------------

ENV_YAML = """\
name: Shop URL
trigger: {type: api}
blocks:
  - id: done
    type: respond
    with: {body: {shopUrl: "{{ env.shopUrl }}", retries: "{{ env.retries }}"}}
"""


def test_teams_create_prints_only_the_team_id_and_a_key_that_authenticates_as_that_team(
    reflow_cli: Cli,
) -> None:
    reflow_cli("db", "upgrade")
    created = reflow_cli.json("teams", "create", "acme")

    assert set(created) == {"teamId", "apiKey"}
    team = reflow_cli.reflow_call(lambda r: r.keys.authenticate(created["apiKey"]))
    assert (team.id, team.name) == (created["teamId"], "acme")
    plain = reflow_cli("teams", "create", "globex")
    fields = dict(line.split(":", 1) for line in plain.stdout.splitlines())
    assert fields["name"].strip() == "globex" and fields["apiKey"].strip().startswith("rf_")
    assert "only time" in plain.stderr
    assert "already exists" in reflow_cli("teams", "create", "acme", code=5).stderr


def test_teams_list_shows_every_team_oldest_first_with_its_live_keys(reflow_cli: Cli) -> None:
    reflow_cli("db", "upgrade")
    acme = reflow_cli.json("teams", "create", "acme")["teamId"]
    reflow_cli("keys", "create", "--team", acme)
    revoked = reflow_cli.json("keys", "create", "--team", acme)
    reflow_cli("keys", "revoke", revoked["id"], "--team", acme)

    listed = reflow_cli.json("teams", "list")

    assert [(t["name"], t["liveKeys"]) for t in listed] == [("default", 1), ("acme", 2)]
    assert listed[1]["teamId"] == acme and listed[1]["createdAt"].endswith("Z")
    rows = reflow_cli("teams", "list").stdout.splitlines()
    assert rows[0].split() == ["ID", "NAME", "CREATED", "LIVE", "KEYS"]
    assert rows[2].split()[:2] == [acme, "acme"] and rows[2].split()[-1] == "2"


def test_teams_env_sets_unsets_and_replaces_keys_and_a_run_of_that_team_sees_them(
    reflow_cli: Cli,
) -> None:
    reflow_cli("db", "upgrade")
    acme = reflow_cli.json("teams", "create", "acme")["teamId"]
    reflow_cli("workflows", "apply", str(reflow_cli.write("env.yaml", ENV_YAML)), "--team", acme)
    reflow_cli("users", "create", "demo", "--team", acme)
    reflow_cli("workflows", "activate", "Shop URL", "--user", "demo", "--team", acme)

    changed = reflow_cli.json("teams", "env", "acme", "--set", "shopUrl=https://acme.example",
                              "--set-json", "retries=3", "--set-json", 'tags=["a"]')
    run = reflow_cli.json("run", "Shop URL", "--user", "demo", "--wait", "10", "--team", acme)
    unset = reflow_cli.json("teams", "env", acme, "--unset", "tags", "--unset", "retries")
    replaced = reflow_cli.json("teams", "env", "acme", "--file",
                               str(reflow_cli.write("env.json", '{"shopUrl": "https://b"}')),
                               "--set", "region=eu")

    assert changed == {"teamId": acme,
                       "env": {"shopUrl": "https://acme.example", "retries": 3, "tags": ["a"]}}
    assert run["output"] == {"shopUrl": "https://acme.example", "retries": 3}
    assert unset["env"] == {"shopUrl": "https://acme.example"}
    assert replaced["env"] == {"shopUrl": "https://b", "region": "eu"}
    shown = reflow_cli("teams", "env", "acme").stdout.splitlines()
    assert [line.split() for line in shown] == [
        ["KEY", "VALUE", "(JSON)"], ["shopUrl", '"https://b"'], ["region", '"eu"']]
    assert reflow_cli.json("teams", "env", "default") == {
        "teamId": reflow_cli.json("teams", "list")[0]["teamId"], "env": {}}
    assert "no env of its own" in reflow_cli("teams", "env", "default").stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("teams", "env", "nope"), 4, "team 'nope' not found"),
        (("teams", "env", "default", "--set", "novalue"), 2, "--set: expected KEY=VALUE"),
        (("teams", "env", "default", "--set-json", "n={oops"), 2, "--set-json n: not valid JSON"),
        (("teams", "env", "default", "--set", "a=1", "--unset", "a"), 2, "both set and unset"),
        (("teams", "env", "default", "--set", "big=" + "x" * 70_000), 2, "over the limit"),
        (("teams", "create", " "), 2, "team name"),
    ],
    ids=["unknown team", "no value", "bad json", "set and unset", "oversized", "blank name"],
)
def test_teams_errors_exit_with_their_code_and_change_nothing(
    reflow_cli: Cli, args: tuple[str, ...], code: int, message: str
) -> None:
    reflow_cli("db", "upgrade")
    result = reflow_cli(*args, code=code)
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert reflow_cli.json("teams", "env", "default")["env"] == {}
    assert len(reflow_cli.json("teams", "list")) == 1


# -- workflows and users ---------------------------------------------------------------------


def test_workflows_apply_creates_then_is_unchanged_then_adds_version_2(reflow_cli: Cli) -> None:
    reflow_cli("db", "upgrade")
    path = reflow_cli.write("order.yaml", ORDER_SUMMARY_YAML)

    [created] = reflow_cli.json("workflows", "apply", str(path))
    [unchanged] = reflow_cli.json("workflows", "apply", str(path))
    path.write_text(ORDER_SUMMARY_YAML.replace("$uppercase", "$lowercase"))
    changed = reflow_cli("workflows", "apply", str(path)).stdout

    assert (created["version"], created["created"]) == (1, True)
    assert (unchanged["version"], unchanged["created"]) == (1, False)
    assert unchanged["workflowId"] == created["workflowId"]
    assert "unchanged" in reflow_cli("workflows", "apply", str(path)).stdout
    assert changed.splitlines()[1].split()[-2:] == ["2", "created"]
    [listed] = reflow_cli.json("workflows", "list")
    assert (listed["name"], listed["latestVersion"]) == ("Order summary", 2)


def test_workflows_apply_takes_directories_and_globs(reflow_cli: Cli) -> None:
    reflow_cli("db", "upgrade")
    folder = reflow_cli.folder / "flows"
    folder.mkdir()
    (folder / "a.yaml").write_text(ORDER_SUMMARY_YAML)
    (folder / "b.json").write_text(json.dumps(
        {"name": "Echo", "trigger": {"type": "webhook"},
         "blocks": [{"id": "out", "type": "respond", "with": {"body": "{{ trigger.data }}"}}]}
    ))
    (folder / "notes.txt").write_text("not a workflow")

    by_dir = reflow_cli.json("workflows", "apply", str(folder))
    by_glob = reflow_cli.json("workflows", "apply", str(folder / "*.json"))

    assert [a["name"] for a in by_dir] == ["Order summary", "Echo"]
    assert [(a["name"], a["created"]) for a in by_glob] == [("Echo", False)]
    missing = reflow_cli("workflows", "apply", str(folder / "*.yml"), code=2)
    assert "no workflow file matches" in missing.stderr


def test_workflows_apply_of_an_invalid_file_exits_2_with_every_problem_and_stores_nothing(
    reflow_cli: Cli,
) -> None:
    reflow_cli("db", "upgrade")
    bad = reflow_cli.write("bad.yaml", INVALID_YAML)
    good = reflow_cli.write("order.yaml", ORDER_SUMMARY_YAML)

    result = reflow_cli("workflows", "apply", str(bad), str(good), code=2)

    problems = result.stderr.splitlines()[1:]
    assert result.stderr.startswith("error: invalid workflow definition\n")
    assert any(p.strip().startswith(f"{bad}: trigger:") for p in problems)
    assert any(f"{bad}: blocks[0].type:" in p for p in problems)
    assert any(f"{bad}: blocks[1].id:" in p for p in problems)
    assert "Traceback" not in result.stderr
    assert [w["name"] for w in reflow_cli.json("workflows", "list")] == ["Order summary"]


def test_users_create_and_workflows_activate_print_their_ids(reflow_cli: Cli) -> None:
    reflow_cli("db", "upgrade")
    reflow_cli("workflows", "apply", str(reflow_cli.write("order.yaml", ORDER_SUMMARY_YAML)))

    user = reflow_cli.json("users", "create", "jane@example.com", "--full-name", "Jane Doe")
    installed = reflow_cli.json("workflows", "activate", "Order summary",
                                "--user", "jane@example.com")

    assert user["username"] == "jane@example.com" and user["fullName"] == "Jane Doe"
    assert installed["userId"] == user["userId"]
    assert (installed["installedVersion"], installed["active"]) == (1, True)
    taken = reflow_cli("users", "create", "jane@example.com", code=5)
    assert "already taken" in taken.stderr


def test_a_users_copy_is_deactivated_upgraded_and_removed_from_the_cli(ready: Cli) -> None:
    off = ready.json("workflows", "deactivate", "Order summary", "--user", "demo")
    assert off["active"] is False
    refused = ready("run", "Order summary", "--user", "demo", "--data", DATA, code=5)
    assert "is not active for this user" in refused.stderr
    assert ready.json("workflows", "activate", "Order summary", "--user", "demo")["active"]

    fixed = ORDER_SUMMARY_YAML.replace("$sum(trigger.data.values)",
                                       "$sum(trigger.data.values) * 2")
    ready("workflows", "apply", str(ready.write("order.yaml", fixed)))
    assert _run_finished(ready)["output"] == OUTPUT  # still version 1
    upgraded = ready.json("workflows", "upgrade", "Order summary", "--user", "demo")
    assert upgraded["installedVersion"] == 2
    assert _run_finished(ready)["output"] == {**OUTPUT, "total": 10}

    removed = ready.json("workflows", "remove", "Order summary", "--user", "demo")
    assert removed == {"installationId": upgraded["installationId"], "deleted": True}
    ready("run", "Order summary", "--user", "demo", "--data", DATA, code=4)
    ready("workflows", "remove", "Order summary", "--user", "demo", code=4)


# -- run, logs, rerun ------------------------------------------------------------------------


def test_run_with_wait_and_no_server_runs_in_process_and_prints_the_output(ready: Cli) -> None:
    text = ready("run", "Order summary", "--user", "demo", "--data", DATA, "--wait", "10").stdout
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.splitlines())}

    assert fields["status"] == "succeeded"
    assert json.loads(fields["output"]) == OUTPUT


def test_run_reads_data_from_a_file(ready: Cli) -> None:
    data_file = ready.write("data.json", DATA)
    result = ready.json("run", "Order summary", "--user", "demo", "--data-file", str(data_file),
                        "--wait", "10")
    assert result["output"] == OUTPUT


def test_run_without_wait_commits_a_queued_execution_that_a_runner_claims(ready: Cli) -> None:
    queued = ready.json("run", "Order summary", "--user", "demo", "--data", DATA)
    execution_id = queued["executionId"]
    assert queued["status"] == "queued"

    async def claim(reflow: Reflow) -> tuple[ExecutionRecord, ExecutionRecord]:
        team = await reflow.keys.team(None)
        before = await reflow.logs.execution(team, execution_id)
        await reflow.start()  # what `reflow serve` does: its worker claims queued executions
        for _ in range(100):
            after = await reflow.logs.execution(team, execution_id)
            if after.finished:
                break
            await asyncio.sleep(0.05)
        return before, after

    before, after = ready.reflow_call(claim)
    assert (before.status.value, before.lease_owner, before.mode.value) == (
        "queued", None, "manual")
    assert after.status.value == "succeeded"
    assert json.loads(after.output or b"null") == OUTPUT


def test_logs_list_shows_a_row_per_execution_and_show_prints_every_step(ready: Cli) -> None:
    execution_id = _run_finished(ready)["executionId"]

    table = ready("logs", "list", "Order summary", "--user", "demo").stdout.splitlines()
    shorthand = ready("logs", "Order summary").stdout.splitlines()
    detail = ready("logs", "show", execution_id).stdout

    assert table[0].split()[:4] == ["EXECUTION", "ID", "STARTED", "DURATION"]
    assert table[1].split()[0] == execution_id and "succeeded" in table[1]
    assert shorthand == table
    assert "step 0: total  succeeded  attempts 1" in detail
    assert "step 1: done  succeeded  attempts 1" in detail
    assert '{"label":"CLI","total":5}' in detail


def test_logs_json_outputs_parse_with_the_reference_fields(ready: Cli) -> None:
    execution_id = _run_finished(ready)["executionId"]

    [row] = ready.json("logs", "list", "Order summary", "--limit", "5")
    detail = ready.json("logs", "show", execution_id)

    assert (row["executionId"], row["status"], row["mode"]) == (execution_id, "succeeded",
                                                                "manual")
    assert [s["blockId"] for s in detail["steps"]] == ["total", "done"]
    assert detail["results"][1]["data"] == [[{"json": OUTPUT, "id": f"{execution_id}-1"}]]
    assert detail["output"] == OUTPUT


def test_logs_failed_lists_only_failed_executions_with_their_error(ready: Cli) -> None:
    _run_finished(ready)
    ready("run", "Order summary", "--user", "demo", "--data", '{"label": 1, "values": []}',
          "--wait", "10")

    failed = ready.json("logs", "list", "Order summary", "--failed")
    table = ready("logs", "Order summary", "--failed").stdout.splitlines()

    assert [f["status"] for f in failed] == ["failed"]
    assert failed[0]["error"]["blockId"] == "done"
    assert len(table) == 2 and "done: " in table[1]


def test_rerun_with_wait_prints_a_new_execution_that_records_its_source(ready: Cli) -> None:
    source = _run_finished(ready)["executionId"]

    rerun = ready.json("rerun", "Order summary", source, "--wait", "10")
    detail = ready.json("logs", "show", rerun["executionId"])

    assert rerun["executionId"] != source and rerun["status"] == "succeeded"
    assert rerun["output"] == OUTPUT
    assert (detail["rerunOf"], detail["mode"]) == (source, "rerun")
    assert ready.json("logs", "show", source)["reruns"] == [rerun["executionId"]]


def test_rerun_without_wait_queues_the_rerun(ready: Cli) -> None:
    source = _run_finished(ready)["executionId"]
    queued = ready.json("rerun", "Order summary", source)
    detail = ready.json("logs", "show", queued["executionId"])
    assert (detail["status"], detail["rerunOf"]) == ("queued", source)


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("run", "No such workflow", "--user", "demo"), 4, "workflow 'No such workflow' not found"),
        (("run", "Order summary", "--user", "nobody"), 4, "user 'nobody' not found"),
        (("rerun", "Order summary", new_execution_id()), 4, "not found"),
        (("logs", "show", "nope"), 4, "execution nope not found"),
        (("run", "Order summary", "--user", "demo", "--data", "{oops"), 2, "--data: not valid"),
        (("run", "Order summary", "--user", "demo", "--data", "[1]"), 2, "must be a JSON object"),
        (("logs", "Order summary", "--limit", "99"), 2, "limit: must be between 1 and 30"),
        (("users", "create", "demo"), 5, "already taken"),
        (("keys", "list", "--database-url", "postgresql://x/y"), 3, "REFLOW_DATABASE_URL"),
        (("keys", "list", "--team", "000000000000000000000000"), 4, "team"),
    ],
)
def test_errors_exit_with_their_code_and_a_message_without_traceback(
    ready: Cli, args: tuple[str, ...], code: int, message: str
) -> None:
    result = ready(*args, code=code)
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_rerun_of_an_unfinished_execution_exits_5(ready: Cli) -> None:
    queued = ready.json("run", "Order summary", "--user", "demo")["executionId"]
    result = ready("rerun", "Order summary", queued, code=5)
    assert "still queued" in result.stderr


# -- help ------------------------------------------------------------------------------------

COMMANDS = [
    ("db", "upgrade"), ("keys", "create"), ("keys", "list"), ("keys", "revoke"),
    ("teams", "create"), ("teams", "list"), ("teams", "env"),
    ("users", "create"), ("workflows", "apply"), ("workflows", "list"),
    ("workflows", "activate"), ("workflows", "deactivate"), ("workflows", "upgrade"),
    ("workflows", "remove"), ("run",), ("rerun",), ("logs", "list"), ("logs", "show"),
    ("serve",),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example_naming_its_environment_variables(
    reflow_cli: Cli, command: tuple[str, ...]
) -> None:
    text = " ".join(reflow_cli(*command, "--help").stdout.split())
    assert re.search(r"Examples?: reflow ", text)
    assert "--database-url URL" in text and "[env: REFLOW_DATABASE_URL]" in text


def test_serve_help_names_the_host_and_port_variables(reflow_cli: Cli) -> None:
    text = " ".join(reflow_cli("serve", "--help").stdout.split())
    assert "[env: REFLOW_HOST]" in text and "[env: REFLOW_PORT]" in text


# -- serve, as a real process ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    """A ``reflow serve`` process and what its banner said."""

    process: subprocess.Popen[bytes]
    banner: str

    @property
    def key(self) -> str:
        line = next(ln for ln in self.banner.splitlines() if "API key:" in ln)
        return line.split("API key:")[1].strip()

    def curl(self) -> tuple[str, dict[str, str], str]:
        """The banner's curl as (url, headers, body)."""
        lines = self.banner.splitlines()
        start = next(i for i, ln in enumerate(lines) if ln.strip().startswith("curl "))
        end = next(i for i, ln in enumerate(lines) if ln.strip().startswith("-d "))
        words = shlex.split(" ".join(ln.rstrip("\\") for ln in lines[start:end + 1]))
        headers = dict(
            words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H"
        )
        url = next(w for w in words if w.startswith("http://"))
        return url, headers, words[words.index("-d") + 1]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start ``reflow serve`` (bounded wait for its banner); kills leftovers at the end."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFLOW_")}
    env.update(_env(tmp_path), REFLOW_PORT=str(port), REFLOW_HOST="127.0.0.1")
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> Served:
        n = len(started)
        with (tmp_path / f"out{n}").open("wb") as out, (tmp_path / f"err{n}").open("wb") as err:
            process = subprocess.Popen([sys.executable, "-m", "reflow", "serve", *args],
                                       env=env, stdout=out, stderr=err, cwd=tmp_path)
        started.append(process)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            banner = (tmp_path / f"out{n}").read_text()
            if "logs:" in banner and banner.endswith("\n"):
                return Served(process, banner)
            time.sleep(0.1)
        raise AssertionError(f"no banner; stderr: {(tmp_path / f'err{n}').read_text()}")

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.mark.e2e
def test_serve_prints_a_banner_whose_curl_runs_and_restarts_with_a_key_that_still_works(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    workflow = tmp_path / "order.yaml"
    workflow.write_text(ORDER_SUMMARY_YAML)
    first = serve("--apply", str(workflow), "--demo-user", "demo")

    url, headers, body = first.curl()
    with httpx.Client(timeout=10) as client:
        response = client.post(url, headers=headers, content=body)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == {"label": "ABC", "total": 6}
    assert headers["authorization"] == f"bearer {first.key}"
    assert f"{url.split('/run/')[0]}/docs" in first.banner
    assert "reflow logs 'Order summary'" in first.banner

    # The CLI beside a running server: its runs are queued and claimed by the server.
    beside = Cli(_env(tmp_path), tmp_path)
    ran = beside.json("run", "Order summary", "--user", "demo", "--data", DATA, "--wait", "10")
    rerun = beside.json("rerun", "Order summary", ran["executionId"], "--wait", "10")
    assert (ran["status"], ran["output"]) == ("succeeded", OUTPUT)
    assert (rerun["status"], rerun["output"]) == ("succeeded", OUTPUT)

    assert first.stop() == 0

    second = serve()
    with httpx.Client(timeout=10) as client:
        again = client.post(url, headers={**headers, "authorization": f"bearer {second.key}"},
                            content=body)
    assert again.status_code == 200, again.text
    assert second.key == first.key
    assert second.stop() == 0


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_of_a_queued_execution_ends_it_cancelled_and_no_runner_claims_it(
    ready: Cli,
) -> None:
    queued = ready.json("run", "Order summary", "--user", "demo", "--data", DATA)
    cancelled = ready.json("cancel", queued["executionId"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"] == {"message": "cancelled before it started", "blockId": None}

    async def claim(reflow: Reflow) -> ExecutionRecord:
        await reflow.start()  # a runner claims nothing: the execution is final
        reflow.worker.wake()
        await asyncio.sleep(0.1)
        team = await reflow.keys.team(None)
        return await reflow.logs.execution(team, queued["executionId"])

    after = ready.reflow_call(claim)
    assert after.status.value == "cancelled" and after.steps == []


def test_cancel_of_a_finished_or_unknown_execution_exits_with_its_error(ready: Cli) -> None:
    finished = _run_finished(ready)
    refused = ready("cancel", finished["executionId"], code=5)
    assert "already succeeded" in refused.stderr
    missing = ready("cancel", new_execution_id(), code=4)
    assert "not found" in missing.stderr


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://reflow:s3cret@db.internal:5432/reflow",
     "postgresql://reflow:***@db.internal:5432/reflow"),
    ("postgresql://reflow@db.internal/reflow", "postgresql://reflow@db.internal/reflow"),
    ("sqlite:///./reflow.db", "sqlite:///./reflow.db"),
])
def test_a_database_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert cli_module._shown_url(url) == shown
