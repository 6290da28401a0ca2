"""``reflow run``, ``reflow rerun`` and ``reflow cancel``: starting and stopping executions
(the bulk form of ``reflow rerun`` is in reruns.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from reflow.cli.common import (
    _echo_fields,
    _echo_json,
    _error_text,
    _fragment,
    _parse_json_object,
    _session,
    database_option,
    json_option,
    team_option,
)
from reflow.cli.reruns import BulkRequest, bulk_rerun
from reflow.dispatch import Started
from reflow.domain.executions import ExecutionRecord, ExecutionStatus, TriggerMode
from reflow.domain.records import Team
from reflow.errors import InvalidRequest, SettingsError
from reflow.services import Reflow
from reflow.services.runs import RerunOptions
from reflow.store.backends import is_postgres


async def _start_or_enqueue(
    reflow: Reflow, team: Team, wait: float | None, start: Callable[[], Awaitable[Started]]
) -> ExecutionRecord:
    """Run here when we wait and may run executions; else queue for whoever runs them.

    On SQLite, this process may run executions when no `reflow serve` holds the file's
    runner lock; on PostgreSQL the workers run them (a CLI does not become one). With
    ``--wait``, a queued execution is waited for.
    """
    if wait is not None and not is_postgres(reflow.settings.database_url):
        with contextlib.suppress(SettingsError):  # a `reflow serve` runs executions here
            await reflow.start()
    started = await start()
    return await reflow.logs.execution(team, started.execution_id)


def _echo_run(record: ExecutionRecord, *, as_json: bool) -> None:
    if as_json:
        _echo_json({"executionId": record.id, "status": record.status.value,
                    "output": _fragment(record.output), "error": _fragment(record.error)})
        return
    fields: list[tuple[str, Any]] = [("executionId", record.id),
                                     ("status", record.status.value)]
    if record.status is ExecutionStatus.QUEUED:
        fields.append(("note", "queued: a `reflow serve` or `reflow worker` on this database "
                               "will run it"))
    elif not record.finished:
        fields.append(("note", "still running at the deadline: see `reflow logs show`"))
    fields.append(("output", record.output))
    if record.error is not None:
        fields.append(("error", _error_text(record)))
    _echo_fields(fields)


wait_option = click.option(
    "--wait", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
    help="Wait up to SECONDS for the end and print the output. On SQLite without a "
         "running `reflow serve`, the run happens in this process; on PostgreSQL a worker "
         "runs it.",
)


def _run_data(data: str | None, data_file: Path | None) -> dict[str, Any]:
    if data is not None and data_file is not None:
        raise InvalidRequest("give --data or --data-file, not both")
    if data_file is not None:
        try:
            return _parse_json_object(data_file.read_bytes(), str(data_file))
        except OSError as exc:
            raise InvalidRequest(f"{data_file}: cannot read it ({exc.strerror})") from None
    return _parse_json_object(data, "--data") if data is not None else {}


@click.command("run")
@click.argument("workflow")
@click.option("--user", "user_ref", required=True, help="User id or username.")
@click.option("--data", default=None, metavar="JSON", help="Trigger data, a JSON object.")
@click.option("--data-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Read the trigger data from a JSON file.")
@wait_option
@team_option
@database_option
@json_option
def run(
    workflow: str, user_ref: str, data: str | None, data_file: Path | None,
    wait: float | None, as_json: bool,
) -> None:
    """Run a user's copy of a workflow (trigger mode "manual").

    Without --wait the execution is committed as queued and a running `reflow serve`
    runs it; with --wait the command prints how it ended.

    \b
    Example:
      reflow run "Order summary" --user demo --data '{"label": "a", "values": [1, 2]}' --wait 10
    """
    payload = _run_data(data, data_file)

    async def work(reflow: Reflow, team: Team) -> ExecutionRecord:
        return await _start_or_enqueue(reflow, team, wait, lambda: reflow.runs.run(
            team, workflow, user_ref, payload, mode=TriggerMode.MANUAL, wait=wait))

    _echo_run(_session(work), as_json=as_json)


@click.command("rerun")
@click.argument("workflow", required=False)
@click.argument("execution_id", required=False)
@click.option("--user", "user_ref", default=None,
              help="User id or username (bulk: only this user's executions).")
@click.option("--from", "start_from", default="start", show_default=True,
              help="'start', 'failed' (the failed block) or a block id: the steps before it "
                   "are copied from the source instead of running again.")
@click.option("--version", "version", default="original", show_default=True,
              type=click.Choice(["original", "installed", "latest"]),
              help="Which version runs: the source's, the user's installed one, or the latest.")
@click.option("--data", default=None, metavar="JSON",
              help="Replace the trigger data (a JSON object; single rerun only).")
@click.option("--since", default=None, metavar="TIME",
              help="Bulk: rerun every execution created since TIME (24h: that long ago, or "
                   "an ISO 8601 time); at most 31 days, 10,000 executions.")
@click.option("--until", default=None, metavar="TIME",
              help="Bulk: ... and before TIME (default now).")
@click.option("--failed", is_flag=True, help="Bulk: failed executions (the default status).")
@click.option("--status", default=None, type=click.Choice(["failed", "succeeded", "cancelled"]),
              help="Bulk: executions with this status (default failed).")
@click.option("--workflow", "workflow_ref", default=None,
              help="Bulk: only this workflow's executions (id or name).")
@click.option("--error", "error_text", default=None,
              help="Bulk: only executions whose error message contains this text.")
@click.option("--block", "block_id", default=None,
              help="Bulk: only executions that failed in this block.")
@click.option("--dry-run", is_flag=True, help="Bulk: list what would be rerun, rerun nothing.")
@click.option("--detach", is_flag=True,
              help="Bulk: create the job and print its id without following it.")
@wait_option
@team_option
@database_option
@json_option
def rerun(
    workflow: str | None, execution_id: str | None, user_ref: str | None, start_from: str,
    version: str, data: str | None, since: str | None, until: str | None, failed: bool,
    status: str | None,
    workflow_ref: str | None, error_text: str | None, block_id: str | None, dry_run: bool,
    detach: bool, wait: float | None, as_json: bool,
) -> None:
    """Rerun a finished execution as a new one (rerunOf is set); by default on the same
    version with the same trigger data, from the start.

    With --since, rerun every execution that matches (a bulk rerun job): a progress bar
    while it runs, then a summary of what came back and what was refused. On SQLite
    without a running `reflow serve` the job runs in this process; otherwise the server
    (or a worker) runs it and this command follows it.

    \b
    Examples:
      reflow rerun "Order summary" 0Ab3dEf9GhIjKlMnOpQrS --wait 10
      reflow rerun "Ship paid order" 0Ab3dEf9GhIjKlMnOpQrS --from failed --version latest
      reflow rerun --failed --since 24h --workflow "Ship paid order" --from failed
      reflow rerun --since 2025-04-29T08:00Z --until 2025-04-29T10:00Z --dry-run
    """
    if since is not None or dry_run or detach or failed or status is not None:
        if workflow is not None or execution_id is not None:
            raise InvalidRequest("give WORKFLOW EXECUTION_ID for one rerun, or --since for a "
                                 "bulk rerun, not both")
        if since is None:
            raise InvalidRequest("--since is required for a bulk rerun (e.g. --since 24h)")
        if data is not None or wait is not None:
            raise InvalidRequest("--data and --wait apply to a single rerun only")
        if failed and status not in (None, "failed"):
            raise InvalidRequest(f"--failed and --status {status}: give one")
        selection: dict[str, object] = {key: value for key, value in {
            "since": since, "until": until, "status": status, "workflowId": workflow_ref,
            "userId": user_ref, "error": error_text, "blockId": block_id}.items()
            if value is not None}
        request = BulkRequest(selection, start_from, version, dry_run, detach, as_json)
        _session(lambda reflow, team: bulk_rerun(reflow, team, request))
        return
    if workflow is None or execution_id is None:
        raise InvalidRequest("give WORKFLOW EXECUTION_ID (one rerun) or --since TIME (a bulk "
                             "rerun); see reflow rerun --help")
    payload = _parse_json_object(data, "--data") if data is not None else None
    options = RerunOptions(start_from, version, payload)

    async def work(reflow: Reflow, team: Team) -> ExecutionRecord:
        return await _start_or_enqueue(reflow, team, wait, lambda: reflow.runs.rerun(
            team, workflow, execution_id, user_ref, options=options, wait=wait))

    _echo_run(_session(work), as_json=as_json)


@click.command("cancel")
@click.argument("execution_id")
@click.option("--wait", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Wait up to SECONDS for a running execution to stop.")
@team_option
@database_option
@json_option
def cancel(execution_id: str, wait: float | None, as_json: bool) -> None:
    """Cancel an execution: a queued one at once, a running one before its next block (the
    `reflow serve` running it sees the request within a second).

    \b
    Examples:
      reflow cancel 0Ab3dEf9GhIjKlMnOpQrS
      reflow cancel 0Ab3dEf9GhIjKlMnOpQrS --wait 30
    """

    async def work(reflow: Reflow, team: Team) -> ExecutionRecord:
        record = await reflow.runs.cancel(team, execution_id)
        if wait is not None and not record.finished:
            await reflow.dispatch.wait(team.id, execution_id, wait)
            return await reflow.logs.execution(team, execution_id)
        return record

    _echo_run(_session(work), as_json=as_json)
