"""``reflow schedules``: the schedule triggers of a team's active installations."""

from __future__ import annotations

import click

from reflow.cli.common import (
    _echo_json,
    _echo_table,
    _session,
    _text,
    database_option,
    json_option,
    team_option,
)
from reflow.services.logs import iso


@click.group()
def schedules() -> None:
    """Schedule triggers: when each active installation fires next (docs/schedules.md)."""


@schedules.command("list")
@team_option
@database_option
@json_option
def schedules_list(as_json: bool) -> None:
    """List active schedules, the next due first: workflow, user, cron, time zone, the next
    due time (UTC) and the last one fired.

    \b
    Example:
      reflow schedules list
    """
    found = _session(lambda reflow, team: reflow.scheduler.upcoming(team))
    if as_json:
        _echo_json([{
            "workflowId": s.workflow_id, "workflow": s.workflow_name,
            "installationId": s.installation_id, "userId": s.user_id,
            "username": s.username, "cron": s.schedule.cron,
            "timezone": s.schedule.timezone, "missed": s.schedule.missed.value,
            "nextDueAt": iso(s.next_due_at), "lastFiredAt": iso(s.last_fired_at),
        } for s in found])
        return
    _echo_table(
        ("WORKFLOW", "USER", "CRON", "TIMEZONE", "NEXT DUE (UTC)", "LOCAL", "LAST FIRED"),
        [(s.workflow_name, s.username, s.schedule.cron, s.schedule.timezone,
          _text(iso(s.next_due_at)), s.schedule.local(s.next_due_at).strftime("%a %d %b %H:%M"),
          _text(iso(s.last_fired_at)))
         for s in found],
        empty="no active schedules",
    )
