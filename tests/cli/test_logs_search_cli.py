"""``reflow logs search``: GET /logs from the command line (the same service and shapes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reflow.cli import cli

WORKFLOW = """\
name: Search from the CLI
integration: cli-crm
trigger: {type: api}
blocks:
  - id: check
    type: branch
    with:
      if: "{{ trigger.data.fail = true }}"
      then: [{id: stop, type: fail, with: {message: asked to fail}}]
  - id: done
    type: respond
    with: {body: {ok: true}}
"""


class Reflow:
    """``reflow`` in-process on one SQLite file."""

    def __init__(self, folder: Path) -> None:
        self.env = {"REFLOW_DATABASE_URL": f"sqlite:///{folder / 'reflow.db'}",
                    "REFLOW_ENV": "dev", "REFLOW_DEV_KEY_FILE": str(folder / "dev-key"),
                    "REFLOW_PURGE_INTERVAL": "1h"}

    def __call__(self, *args: str, code: int = 0) -> Result:
        result = CliRunner(env=self.env).invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture(scope="module")
def reflow(tmp_path_factory: pytest.TempPathFactory) -> Reflow:
    """Two users of one workflow; ada's second run failed, bob's succeeded (the tests only
    read: one database serves them all)."""
    tmp_path = tmp_path_factory.mktemp("logs-search-cli")
    run = Reflow(tmp_path)
    run("db", "upgrade")
    definition = tmp_path / "search.yaml"
    definition.write_text(WORKFLOW)
    run("workflows", "apply", str(definition))
    for user in ("ada", "bob"):
        run("users", "create", user)
        run("workflows", "activate", "Search from the CLI", "--user", user)
    for user, data in (("ada", "{}"), ("ada", '{"fail": true}'), ("bob", "{}")):
        run("run", "Search from the CLI", "--user", user, "--data", data, "--wait", "10")
    return run


def test_search_prints_a_row_per_execution_newest_first_and_the_count(reflow: Reflow) -> None:
    lines = reflow("logs", "search").stdout.splitlines()
    assert lines[0].split() == ["EXECUTION", "ID", "CREATED", "COMPLETED", "MESSAGE",
                                "WORKFLOW", "VERSION", "USER"]
    assert [line.split()[3] for line in lines[1:4]] == ["executionSuccess", "executionError",
                                                        "executionSuccess"]
    assert lines[1].split()[-1] == "bob"
    assert lines[4] == "3 match; page 1 of 1"


def test_where_options_are_the_apis_filters_and_or_starts_a_group(reflow: Reflow) -> None:
    failed = reflow.json("logs", "search", "--where", "message equals executionError")
    assert [i["user"]["username"] for i in failed["notifications"]] == ["ada"]
    assert failed["pagination"]["totalItems"] == 1
    either = reflow.json("logs", "search", "--where", "message equals executionError",
                         "--where", "or userId equals bob")
    assert [i["user"]["username"] for i in either["notifications"]] == ["bob", "ada"]
    by_json = reflow.json("logs", "search", "--filters", json.dumps([{
        "columns": {"value": "forgeWorkflow.integrationId._id"},
        "operators": {"value": "equals"}, "userinput": {"value": "cli-crm"}}]))
    assert by_json["pagination"]["totalItems"] == 3


def test_scope_sort_and_page_options(reflow: Reflow) -> None:
    ada = reflow.json("logs", "search", "--user", "ada", "--workflow", "Search from the CLI",
                      "--asc", "--limit", "1", "--skip", "1")
    [item] = ada["notifications"]
    assert item["message"] == "executionError"
    assert ada["pagination"] == {"totalItems": 2, "totalPages": 2, "currentPage": 2,
                                 "pageSize": 1, "totalItemsExact": True}
    by_user = reflow.json("logs", "search", "--sort", "userId", "--asc")
    user_ids = [i["userId"] for i in by_user["notifications"]]
    assert user_ids == sorted(user_ids)


@pytest.mark.parametrize(("args", "message"), [
    (("--where", "message like x"), "--where #1.operators.value: \"like\" is not an operator"),
    (("--where", "createdAt"), "--where #1: write COLUMN OPERATOR VALUE"),
    (("--where", "a equals b", "--filters", "[]"), "give --where or --filters, not both"),
    (("--filters", "[{"), "filters: not valid JSON"),
    (("--limit", "0"), "limit: must be between 1 and 100"),
    (("--user", "nobody"), "user 'nobody' not found"),
])
def test_a_bad_search_says_what_is_wrong(reflow: Reflow, args: tuple[str, ...], message: str
                                         ) -> None:
    result = reflow("logs", "search", *args, code=2 if "nobody" not in message else 4)
    assert message in result.stderr
