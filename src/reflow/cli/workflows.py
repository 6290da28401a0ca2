"""``reflow workflows``: definitions, their versions, and users' copies."""

from __future__ import annotations

from collections.abc import Sequence

import click

from reflow.cli.common import (
    _echo_json,
    _echo_record,
    _echo_table,
    _session,
    _text,
    database_option,
    json_option,
    team_option,
)
from reflow.cli.files import AppliedFile, apply_files
from reflow.errors import DefinitionInvalid
from reflow.services.logs import iso


@click.group()
def workflows() -> None:
    """Workflow definitions, their versions, and users' copies."""


@workflows.command("apply")
@click.argument("paths", nargs=-1, required=True, metavar="FILE...")
@team_option
@database_option
@json_option
def workflows_apply(paths: tuple[str, ...], as_json: bool) -> None:
    """Store workflow definitions: files, directories (*.yaml, *.yml, *.json) or globs.

    A new name creates the workflow; a changed definition adds a version; an unchanged
    one adds nothing. An invalid file is not stored: every problem is listed with its
    path, and the command exits 2 after applying the valid files.

    \b
    Example:
      reflow workflows apply examples/ 'more/*.yaml'
    """
    done, problems = _session(lambda reflow, team: apply_files(reflow, team, paths))
    _echo_applied(done, as_json=as_json)
    if problems:
        raise DefinitionInvalid(problems)


@workflows.command("list")
@team_option
@database_option
@json_option
def workflows_list(as_json: bool) -> None:
    """List the team's workflows.

    \b
    Example:
      reflow workflows list --json
    """
    found = _session(lambda reflow, team: reflow.workflows.all(team))
    if as_json:
        _echo_json([{"workflowId": w.id, "name": w.name, "latestVersion": w.latest_version,
                     "updatedAt": iso(w.updated_at)} for w in found])
        return
    _echo_table(("ID", "NAME", "LATEST VERSION", "UPDATED"),
                [(w.id, w.name, str(w.latest_version), _text(iso(w.updated_at)))
                 for w in found],
                empty="no workflows: add one with `reflow workflows apply FILE`")


@workflows.command("activate")
@click.argument("workflow")
@click.option("--user", "user_ref", required=True, help="User id or username.")
@team_option
@database_option
@json_option
def workflows_activate(workflow: str, user_ref: str, as_json: bool) -> None:
    """Install a workflow's latest version for a user (or reactivate their copy).

    \b
    Example:
      reflow workflows activate "Order summary" --user jane@example.com
    """
    installation = _session(
        lambda reflow, team: reflow.workflows.activate(team, user_ref, workflow)
    )
    fields = {"installationId": installation.id, "workflowId": installation.workflow_id,
              "userId": installation.user_id,
              "installedVersion": installation.installed_version,
              "active": installation.active}
    _echo_record(fields, as_json=as_json)


def _echo_applied(done: Sequence[AppliedFile], *, as_json: bool) -> None:
    if as_json:
        _echo_json([
            {"file": str(a.path), "name": a.applied.workflow.name,
             "workflowId": a.applied.workflow.id, "version": a.applied.version,
             "created": a.applied.created}
            for a in done
        ])
        return
    _echo_table(
        ("FILE", "NAME", "WORKFLOW ID", "VERSION", "RESULT"),
        [(str(a.path), a.applied.workflow.name, a.applied.workflow.id, str(a.applied.version),
          "created" if a.applied.created else "unchanged") for a in done],
        empty="nothing applied",
    )
