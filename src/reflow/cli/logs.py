"""``reflow logs``: execution logs (``reflow logs WORKFLOW`` lists them; ``reflow logs
search`` searches every workflow's, as ``GET /logs``)."""

from __future__ import annotations

import re

import click
import orjson

from reflow.api.presenters.logs import execution_detail, search_page, summary
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
from reflow.domain.log_filters import (
    COUNT_CAP,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Column,
    FiltersInvalid,
    Operator,
    SearchPage,
    SortBy,
    message_of,
    parse_filters,
)
from reflow.errors import InvalidRequest
from reflow.services.logs import LogsPage, SearchScope, iso


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
      reflow logs search --user jane --where "message equals executionError"
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
        where = step.block_id if step.item is None else f"{step.block_id}[{step.item}]"
        click.echo(f"step {step.seq}: {where}  {step.status.value}  "
                   f"attempts {step.attempts}{'  reused' if step.reused else ''}")
        _echo_fields([("  input", step.input), ("  output", step.output),
                      *([("  error", step.error)] if step.error else [])])


def _where_filters(wheres: tuple[str, ...]) -> list[dict[str, dict[str, str]]]:
    """``--where "[or] COLUMN OPERATOR VALUE"`` options as the API's filters."""
    filters = []
    for index, where in enumerate(wheres):
        words = where.split(None, 1)
        condition = "and"
        if len(words) == 2 and words[0].lower() in ("and", "or"):
            condition, where = words[0].lower(), words[1]
        parts = where.split(None, 2)
        if len(parts) != 3:
            raise InvalidRequest(f"--where #{index + 1}: write COLUMN OPERATOR VALUE (e.g. "
                                 f"'message equals executionError'), not {where!r}")
        column, operator, value = parts
        filters.append({"columns": {"value": column}, "operators": {"value": operator},
                        "userinput": {"value": value}, "condition": {"value": condition}})
    return filters


@logs.command("search")
@click.option("--where", "wheres", multiple=True, metavar='"[or] COLUMN OPERATOR VALUE"',
              help="A filter (repeatable; each joins the one before with and, or with or; "
                   f"and binds tighter). Columns: {', '.join(c.value for c in Column)}. "
                   f"Operators: {', '.join(o.value for o in Operator)}.")
@click.option("--filters", "filters_json", default=None, metavar="JSON",
              help="Filters as GET /logs takes them (a JSON array), instead of --where.")
@click.option("--workflow", "workflow_ref", default=None,
              help="Only this workflow's (parent id or name, or an installation id).")
@click.option("--user", "user_ref", default=None, help="Only this user's (id or username).")
@click.option("--sort", "sort_by", type=click.Choice([s.value for s in SortBy]),
              default=SortBy.CREATED_AT.value, show_default=True, help="Order by.")
@click.option("--asc", is_flag=True, help="Oldest (smallest) first.")
@click.option("--skip", type=int, default=0, show_default=True, help="Items passed over.")
@click.option("--limit", type=int, default=DEFAULT_LIMIT, show_default=True,
              help=f"Rows per page (1-{MAX_LIMIT}).")
@team_option
@database_option
@json_option
def logs_search(
    wheres: tuple[str, ...], filters_json: str | None, workflow_ref: str | None,
    user_ref: str | None, sort_by: str, asc: bool, skip: int, limit: int, as_json: bool,
) -> None:
    """Search every workflow's executions (GET /logs), newest first.

    \b
    Examples:
      reflow logs search --where "message equals executionError" \\
                         --where "createdAt greaterthan 2025-04-29"
      reflow logs search --workflow "Order summary" --where "userId contains jane"
      reflow logs search --sort completedAt --user jane --json
    """
    if wheres and filters_json is not None:
        raise InvalidRequest("give --where or --filters, not both")
    text = filters_json if filters_json is not None else (
        orjson.dumps(_where_filters(wheres)).decode() if wheres else None)
    try:
        filters = parse_filters(text)
    except FiltersInvalid as exc:
        if filters_json is not None:
            raise
        # The API's paths (filters[0].userinput.value) in the words of the options given.
        raise InvalidRequest(re.sub(r"filters\[(\d+)\]", lambda m: f"--where #{int(m[1]) + 1}",
                                    exc.message)) from None
    page = SearchPage(skip, limit, SortBy(sort_by), not asc)
    result = _session(lambda reflow, team: reflow.logs.search(
        team, filters, SearchScope(workflow_ref, user_ref), page))
    if as_json:
        _echo_json(search_page(result))
        return
    _echo_table(
        ("EXECUTION ID", "CREATED", "COMPLETED", "MESSAGE", "WORKFLOW", "VERSION", "USER"),
        [(e.id, _text(iso(e.created_at)), _text(iso(e.stopped_at)), message_of(e.status),
          _text(e.workflow_name), str(e.version), _text(e.username))
         for e in result.entries],
        empty="no executions",
    )
    if result.entries:
        counted = f"{result.total:,}" if result.exact else f"over {COUNT_CAP:,}"
        click.echo(f"{counted} match; page {page.current_page} of "
                   f"{-(-result.total // limit):,}")
