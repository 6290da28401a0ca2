"""``reflow schedules list``: each active installation of a schedule workflow, next due first."""

from __future__ import annotations

from datetime import datetime

from test_cli import Cli
from test_cli import reflow_cli as reflow_cli  # the fixture

from reflow.domain.schedules import Schedule
from reflow.services import Reflow

NIGHTLY_YAML = """\
name: Nightly report
trigger: {type: schedule, cron: "30 2 * * *", timezone: Europe/Paris, missed: skip}
blocks:
  - id: done
    type: respond
    with: {body: "{{ trigger.data }}"}
"""


async def deactivate_bob(reflow: Reflow) -> None:
    team = await reflow.keys.team(None)
    await reflow.workflows.deactivate(team, "bob", "Nightly report")


def test_schedules_list_shows_workflow_user_cron_zone_and_next_due_of_active_installations(
    reflow_cli: Cli,
) -> None:
    reflow_cli("db", "upgrade")
    assert reflow_cli("schedules", "list").stdout.strip() == "no active schedules"
    reflow_cli("workflows", "apply", str(reflow_cli.write("nightly.yaml", NIGHTLY_YAML)))
    for user in ("ann", "bob"):
        reflow_cli("users", "create", user)
        reflow_cli("workflows", "activate", "Nightly report", "--user", user)
    reflow_cli.reflow_call(deactivate_bob)

    [listed] = reflow_cli.json("schedules", "list")

    assert {k: listed[k] for k in ("workflow", "username", "cron", "timezone", "missed",
                                   "lastFiredAt")} == {
        "workflow": "Nightly report", "username": "ann", "cron": "30 2 * * *",
        "timezone": "Europe/Paris", "missed": "skip", "lastFiredAt": None}
    due = datetime.fromisoformat(listed["nextDueAt"])
    local = due.astimezone(Schedule("30 2 * * *", "Europe/Paris").zone)
    assert (local.hour, local.minute) in ((2, 30), (3, 0))  # 03:00 on a spring-forward night
    table = reflow_cli("schedules", "list").stdout.splitlines()
    assert table[0].split()[:4] == ["WORKFLOW", "USER", "CRON", "TIMEZONE"]
    assert len(table) == 2 and "ann" in table[1] and "Europe/Paris" in table[1]
