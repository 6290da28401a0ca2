"""``reflow rerun --since ...``: the bulk form of ``reflow rerun`` (docs/api.md "Bulk
rerun"), with a live progress bar and a summary table (rich), or ``--dry-run``."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reflow.cli.common import _echo_json
from reflow.domain.records import Team
from reflow.domain.reruns import JobStatus, RerunItem, RerunJob
from reflow.errors import SettingsError
from reflow.services import Reflow
from reflow.services.logs import iso
from reflow.services.reruns import MAX_RESULTS
from reflow.store.backends import is_postgres

# How often the command reads the job's progress.
_POLL_SECONDS = 0.2
# The dry run's table has an error column from this console width on.
_ERROR_COLUMN_FROM = 120
# Distinct error messages the dry run lists below a narrow table.
_DISTINCT_ERRORS = 10
# How long, once every item is recorded, it waits for the new executions it runs itself.
_FINISH_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class BulkRequest:
    """What ``reflow rerun`` was asked in its bulk form."""

    filter: dict[str, object]
    start_from: str
    version: str
    dry_run: bool
    detach: bool
    as_json: bool


async def bulk_rerun(reflow: Reflow, team: Team, request: BulkRequest) -> None:
    """List (``--dry-run``), or create a job and follow it to its end."""
    console = Console()
    if request.dry_run:
        await _dry_run(reflow, team, request, console)
        return
    runs_here = False
    if not request.detach and not is_postgres(reflow.settings.database_url):
        # SQLite without a `reflow serve`: this process runs the job; with one, serve does.
        with contextlib.suppress(SettingsError):
            await reflow.start()
            runs_here = True
    job = await reflow.reruns.create(team, request.filter, request.start_from,
                                     request.version)
    if request.detach or job.status is JobStatus.DONE:
        _report(job, [], console, request.as_json)
        return
    if not runs_here and not request.as_json:
        console.print(f"job {job.id}: {job.total} executions; a `reflow serve` or `reflow "
                      "worker` on this database runs it (Ctrl-C stops following, not the job)")
    job = await _follow(reflow, team, job, console, quiet=request.as_json)
    results = await _results(reflow, team, job)
    if runs_here:
        await _until_finished(reflow, team, results)
        results = await _results(reflow, team, job)
    _report(job, results, console, request.as_json)


async def _dry_run(reflow: Reflow, team: Team, request: BulkRequest, console: Console) -> None:
    sources, count = await reflow.reruns.preview(team, request.filter)
    if request.as_json:
        _echo_json({"total": count, "executions": [
            {"executionId": s.id, "workflowId": s.workflow_id, "userId": s.user_id,
             "createdAt": iso(s.created_at), "error": _message(s.error)} for s in sources]})
        return
    # The ids and times take about 80 columns: a narrower console gets the errors below
    # the table, each distinct message once with its count, instead of a sliver column.
    with_errors = console.width >= _ERROR_COLUMN_FROM
    table = Table(title="would rerun", title_justify="left")
    for column in ("executionId", "created (UTC)", "userId"):
        table.add_column(column, no_wrap=True)
    if with_errors:
        table.add_column("error", min_width=30)
    for s in sources:
        created = (iso(s.created_at) or "")[:19].replace("T", " ")
        table.add_row(s.id, created, s.user_id, *([_message(s.error)] if with_errors else []))
    console.print(table)
    if not with_errors and sources:
        errors = Counter(_message(s.error) for s in sources)
        console.print("errors, by how many executions failed with each:")
        for message, times in errors.most_common(_DISTINCT_ERRORS):
            console.print(f"{times:>7,}  {message}", highlight=False)
        if len(errors) > _DISTINCT_ERRORS:
            console.print(f"         ({len(errors) - _DISTINCT_ERRORS:,} more distinct errors)")
    if count > len(sources):
        console.print(f"{count:,} executions match: more than a job takes "
                      f"({len(sources):,}); narrow --since/--until or add filters")
    else:
        console.print(f"{count:,} execution{'' if count == 1 else 's'} would be rerun")


async def _follow(reflow: Reflow, team: Team, job: RerunJob, console: Console,
                  *, quiet: bool) -> RerunJob:
    """Show the job's progress until every item is recorded."""
    columns = (TextColumn("rerun"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[refused]} refused"), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
        task = progress.add_task("rerun", total=job.total, refused=0)
        while True:
            page = await reflow.reruns.get(team, job.id, limit=1)
            job = page.job
            progress.update(task, completed=job.total - job.pending, refused=job.failed)
            if job.pending == 0 and job.status in (JobStatus.DONE, JobStatus.CANCELLED):
                return job
            await asyncio.sleep(_POLL_SECONDS)


async def _results(reflow: Reflow, team: Team, job: RerunJob) -> list[RerunItem]:
    results: list[RerunItem] = []
    offset: int | None = 0
    while offset is not None:
        page = await reflow.reruns.get(team, job.id, offset, MAX_RESULTS)
        results.extend(page.results)
        offset = page.next_offset
    return results


async def _until_finished(reflow: Reflow, team: Team, results: list[RerunItem]) -> None:
    """Wait for the new executions this process runs (closing would stop them)."""
    for item in results:
        if item.new_execution_id is not None:
            await reflow.dispatch.wait(team.id, item.new_execution_id, _FINISH_SECONDS)


def _report(job: RerunJob, results: list[RerunItem], console: Console, as_json: bool) -> None:
    statuses = Counter(r.status.value if r.status else "purged" for r in results
                       if r.new_execution_id is not None)
    reasons = Counter(r.error for r in results if r.error is not None)
    if as_json:
        _echo_json({"jobId": job.id, "status": job.status.value, "total": job.total,
                    "done": job.done, "failed": job.failed, "cancelled": job.cancelled,
                    "newExecutions": dict(statuses), "refused": dict(reasons)})
        return
    summary = Table("", "executions", title=f"rerun job {job.id}: {job.status.value}",
                    title_justify="left")
    summary.add_row("selected", str(job.total))
    summary.add_row("rerun", str(job.done))
    for status, count in sorted(statuses.items()):
        summary.add_row(f"  now {status}", str(count))
    summary.add_row("refused", str(job.failed))
    for reason, count in reasons.most_common():
        summary.add_row(f"  {reason}", str(count))
    if job.cancelled:
        summary.add_row("cancelled", str(job.cancelled))
    console.print(summary)


def _message(error: bytes | None) -> str:
    if error is None:
        return "-"
    value: Any = orjson.loads(error)
    if not isinstance(value, dict):
        return "-"
    block = value.get("blockId")
    message = str(value.get("message", ""))
    return f"{block}: {message}" if block else message
