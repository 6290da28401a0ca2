"""``reflow logs``: execution logs (``reflow logs WORKFLOW`` lists them)."""

from __future__ import annotations

import click

from reflow.api.presenters.logs import execution_detail, summary
from reflow.cli.common import (
    _duration,
    _echo_fields,
    _echo_json,
    _echo_table,
    _error_text,
    _session,
    _text,
    database_option,
    json_option,
    team_option,
)
from reflow.services.logs import LogsPage, iso


class DefaultListGroup(click.Group):
    """A group where an argument that names no subcommand means ``list ARGUMENT...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Route ``reflow logs WORKFLOW`` to ``reflow logs list WORKFLOW``."""
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultListGroup)
def logs() -> None:
    """Execution logs: `reflow logs WORKFLOW` lists, `reflow logs show ID` details.

    \b
    Examples:
      reflow logs "Order summary" --failed
      reflow logs show 0Ab3dEf9GhIjKlMnOpQrS
    """


@logs.command("list")
@click.argument("workflow")
@click.option("--user", "user_ref", default=None, help="Only this user's (id or username).")
@click.option("--limit", type=int, default=10, show_default=True, help="Rows per page (1-30).")
@click.option("--page", type=int, default=1, show_default=True, help="Page number.")
@click.option("--order", type=click.Choice(["desc", "asc"]), default="desc",
              show_default=True, help="Newest first (desc) or oldest first.")
@click.option("--failed", is_flag=True, help="Only failed executions.")
@team_option
@database_option
@json_option
def logs_list(
    workflow: str, user_ref: str | None, limit: int, page: int, order: str, failed: bool,
    as_json: bool,
) -> None:
    """List a workflow's executions (one user's with --user).

    \b
    Example:
      reflow logs list "Order summary" --user demo --limit 20
    """
    query = LogsPage(page=page, limit=limit, order=order, failed_only=failed)
    found = _session(lambda reflow, team: reflow.logs.workflow_logs(team, workflow, user_ref,
                                                                    query))
    if as_json:
        _echo_json([summary(e) for e in found])
        return
    _echo_table(
        ("EXECUTION ID", "STARTED", "DURATION", "STATUS", "MODE", "VERSION", "RERUN OF",
         "ERROR"),
        [(e.id, _text(iso(e.started_at or e.created_at)), _duration(e), e.status.value,
          e.mode.value, str(e.version), _text(e.rerun_of), _error_text(e)) for e in found],
        empty="no executions",
    )


@logs.command("show")
@click.argument("execution_id")
@team_option
@database_option
@json_option
def logs_show(execution_id: str, as_json: bool) -> None:
    """Show one execution: trigger, output, error, and every step's input and output.

    \b
    Example:
      reflow logs show 0Ab3dEf9GhIjKlMnOpQrS --json
    """
    record = _session(lambda reflow, team: reflow.logs.execution(team, execution_id))
    if as_json:
        _echo_json(execution_detail(record))
        return
    _echo_fields([
        ("executionId", record.id), ("workflowId", record.workflow_id),
        ("userId", record.user_id), ("version", record.version), ("mode", record.mode.value),
        ("status", record.status.value), ("started", iso(record.started_at)),
        ("stopped", iso(record.stopped_at)), ("duration", _duration(record)),
        ("rerunOf", record.rerun_of), ("reruns", ", ".join(record.reruns) or None),
        ("trigger", record.trigger), ("output", record.output),
        ("error", _error_text(record) if record.error else None),
    ])
    for step in record.steps:
        click.echo("")
        click.echo(f"step {step.seq}: {step.block_id}  {step.status.value}  "
                   f"attempts {step.attempts}{'  reused' if step.reused else ''}")
        _echo_fields([("  input", step.input), ("  output", step.output),
                      *([("  error", step.error)] if step.error else [])])
