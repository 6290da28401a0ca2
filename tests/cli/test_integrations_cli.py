"""``reflow integrations``: declarations applied from files (alone, or beside workflows)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from test_cli import ORDER_SUMMARY_YAML, Cli
from test_cli import reflow_cli as reflow_cli  # the fixture

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CRM_YAML = """\
kind: integration
name: CRM
app: HubSpot
icon: https://cdn.example.com/crm.png
"""


def test_workflows_apply_of_the_examples_declares_shop_first_and_helpdesk_by_default(
    reflow_cli: Cli,
) -> None:
    reflow_cli("db", "upgrade")
    folder = reflow_cli.folder / "examples"
    folder.mkdir()
    for path in EXAMPLES.glob("*.yaml"):
        shutil.copy(path, folder / path.name)

    applied = reflow_cli.json("workflows", "apply", str(folder))
    listed = {i["name"]: i for i in reflow_cli.json("integrations", "list")}

    # The shop app (shop.app.yaml) comes first, then the integration, then workflows.
    assert [(a["kind"], a["name"]) for a in applied[:2]] == [("app", "shop"),
                                                             ("integration", "Shop")]
    assert applied[1]["created"] is True
    assert all(a["kind"] == "workflow" for a in applied[2:])
    assert sorted(w["name"] for w in listed["Shop"]["workflows"]) == [
        "Ship all paid orders", "Ship paid order"]
    assert listed["Shop"]["icon"].startswith("https://")
    assert [w["name"] for w in listed["Helpdesk"]["workflows"]] == ["Route support ticket"]
    assert (listed["Helpdesk"]["app"], listed["Helpdesk"]["icon"]) == ("Helpdesk", None)
    text = reflow_cli("workflows", "apply", str(folder)).stdout
    integration_table = text.split("\n\n")[1].splitlines()
    assert integration_table[0].split() == ["FILE", "INTEGRATION", "INTEGRATION", "ID",
                                            "RESULT"]
    assert "unchanged" in integration_table[1]


def test_integrations_apply_creates_updates_and_refuses_workflow_files(
    reflow_cli: Cli,
) -> None:
    reflow_cli("db", "upgrade")
    crm = reflow_cli.write("crm.yaml", CRM_YAML)
    workflow = reflow_cli.write("order.yaml", ORDER_SUMMARY_YAML)
    bad = reflow_cli.write("bad.yaml", "kind: integration\nicon: not a url\n")

    [created] = reflow_cli.json("integrations", "apply", str(crm))
    crm.write_text(CRM_YAML.replace("HubSpot", "Salesforce"))
    updated = reflow_cli("integrations", "apply", str(crm)).stdout
    refused = reflow_cli("integrations", "apply", str(workflow), str(bad), code=2)

    assert (created["name"], created["created"], created["changed"]) == ("CRM", True, True)
    assert updated.splitlines()[1].split()[-1] == "updated"
    assert refused.stderr.startswith("error: invalid integration declaration\n")
    assert f"{workflow}: not an integration declaration" in refused.stderr
    assert f"{bad}: name: required" in refused.stderr
    assert f"{bad}: icon: must be an absolute http or https URL" in refused.stderr
    [listed] = reflow_cli.json("integrations", "list")
    assert (listed["integrationId"], listed["app"]) == (created["integrationId"], "Salesforce")
    assert reflow_cli.json("workflows", "list") == []


def test_integrations_list_of_a_team_without_any_says_how_to_declare_one(
    reflow_cli: Cli,
) -> None:
    reflow_cli("db", "upgrade")
    assert "reflow integrations apply FILE" in reflow_cli("integrations", "list").stdout


@pytest.mark.parametrize("command", [("integrations", "apply"), ("integrations", "list")],
                         ids=" ".join)
def test_integrations_commands_have_help_with_an_example_naming_the_database_variable(
    reflow_cli: Cli, command: tuple[str, ...]
) -> None:
    text = " ".join(reflow_cli(*command, "--help").stdout.split())
    assert re.search(r"Examples?: reflow ", text)
    assert "--database-url URL" in text and "[env: REFLOW_DATABASE_URL]" in text
