"""``reflow purge`` (delete finished executions now) and ``reflow teams retention`` (a
team's window): the operator's side of retention (docs/operations.md "Retention")."""

from __future__ import annotations

import time

import click

from reflow.cli.common import (
    _echo_fields,
    _echo_json,
    _echo_table,
    _open,
    database_option,
    json_option,
)
from reflow.domain.durations import parse_duration
from reflow.domain.log_filters import parse_time
from reflow.errors import InvalidRequest
from reflow.services import Reflow
from reflow.services.retention import PassKind, PurgePass, PurgeReport, TeamRetention
from reflow.services.runs import describe_duration


def _before(value: str, now_ms: int) -> int:
    """--before: a time (2026-11-01, an ISO timestamp) or a duration meaning that long ago."""
    try:
        return parse_time(value).start
    except ValueError as exc:
        problem = str(exc)
    try:
        return now_ms - round(parse_duration(value) * 1000)
    except ValueError:
        raise InvalidRequest(f"--before: {problem}; or a duration such as 30d meaning that "
                             "long ago") from None


class _Progress:
    """One line per pass on stderr, rewritten as its batches land."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.current: PurgePass | None = None
        self.done = 0
        self.total = 0

    def __call__(self, step: PurgePass, count: int) -> None:
        if step is not self.current:
            self.finish()
            self.current, self.done = step, 0
        self.done += count
        self.total += count
        rate = self.total / max(time.monotonic() - self.started, 1e-6)
        noun = "stripped" if step.kind is PassKind.STEPS else "deleted"
        click.echo(f"\r{step.describe()}: {self.done:,} {noun} ({rate:,.0f}/s overall)",
                   nl=False, err=True)

    def finish(self) -> None:
        if self.current is not None:
            click.echo("", err=True)
            self.current = None


@click.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--before", "before", default=None, metavar="TIME|DURATION",
              help="Delete every finished execution stopped before this time (2026-11-01, "
                   "an ISO timestamp) or this long ago (30d), whatever the windows say. "
                   "Without it: the windows, counts and step rules the background purge "
                   "applies (REFLOW_LOG_RETENTION, the teams' and workflows' own).")
@click.option("--team", "team_ref", default=None, metavar="TEAM",
              help="Only this team's executions (its id or name).")
@database_option
@json_option
def purge(dry_run: bool, before: str | None, team_ref: str | None, as_json: bool) -> None:
    """Delete finished executions past their retention now, in batches, with progress.

    Queued, running and waiting executions are never touched. Safe beside a running
    `reflow serve`: each batch is a short transaction of its own.

    \b
    Examples:
      reflow purge --dry-run
      reflow purge --before 30d --team acme
    """
    progress = None if as_json or dry_run else _Progress()

    async def work(reflow: Reflow) -> PurgeReport:
        team_id = None if team_ref is None else (await reflow.teams.find(team_ref)).id
        cutoff = None if before is None else _before(before, reflow.clock.now_ms())
        return await reflow.retention.purge(before=cutoff, team_id=team_id, dry_run=dry_run,
                                            progress=progress)

    report = _open(work)
    if progress is not None:
        progress.finish()
    if as_json:
        _echo_json({"dryRun": dry_run, "executions": report.executions,
                    "stepsDropped": report.steps_dropped,
                    "passes": [{"rule": step.kind.value, "teamId": step.team_id,
                                "workflowId": step.workflow_id, "count": count}
                               for step, count in report.passes]})
        return
    verb = "would delete" if dry_run else "deleted"
    _echo_table(("RULE", "TEAM", "WORKFLOW", "COUNT"),
                [(step.kind.value, step.team_id, step.workflow_id or "-", f"{count:,}")
                 for step, count in report.passes if count],
                empty="nothing to purge")
    click.echo(f"{verb} {report.executions:,} executions"
               + (f"; dropped the steps of {report.steps_dropped:,} succeeded ones"
                  if report.steps_dropped else ""))


@click.command("retention")
@click.argument("team_ref", metavar="TEAM")
@click.argument("window", required=False, metavar="[WINDOW|default]")
@database_option
@json_option
def retention(team_ref: str, window: str | None, as_json: bool) -> None:
    """Show or set how long a team's finished executions are kept (TEAM: id or name).

    WINDOW is a duration (30d, 12h); `default` goes back to REFLOW_LOG_RETENTION. A
    workflow's own `retention` overrides the team's. The next purge applies it.

    \b
    Examples:
      reflow teams retention acme
      reflow teams retention acme 30d
    """
    seconds: float | None = None
    if window is not None and window != "default":
        try:
            seconds = parse_duration(window)
        except ValueError as exc:
            raise InvalidRequest(f"WINDOW: {exc}") from None

    async def work(reflow: Reflow) -> TeamRetention:
        team = await reflow.teams.find(team_ref)
        if window is None:
            return await reflow.retention.team_window(team)
        return await reflow.retention.set_team_window(team, seconds)

    found = _open(work)
    if as_json:
        _echo_json({"window": describe_duration(found.window), "windowSeconds": found.window,
                    "inherited": found.inherited})
        return
    _echo_fields([("window", describe_duration(found.window)),
                  ("source", "REFLOW_LOG_RETENTION" if found.inherited else "the team's own")])
