"""``reflow workflows``: definitions, their versions, and users' copies."""

from __future__ import annotations

from collections.abc import Callable

import click

from reflow.cli.common import (
    _echo_json,
    _echo_record,
    _echo_table,
    _session,
    _text,
    database_option,
    json_option,
    setting_option,
    team_option,
)
from reflow.cli.files import apply_files, echo_applied
from reflow.domain.records import Installation
from reflow.errors import DefinitionInvalid
from reflow.services.logs import iso


@click.group()
def workflows() -> None:
    """Workflow definitions, their versions, and users' copies."""


def _copy_command(name: str) -> Callable[[Callable[..., None]], click.Command]:
    """``reflow workflows NAME WORKFLOW --user U``: a command on one user's copy."""

    def make(function: Callable[..., None]) -> click.Command:
        for option in (json_option, database_option, team_option,
                       click.option("--user", "user_ref", required=True,
                                    help="User id or username."),
                       click.argument("workflow")):
            function = option(function)
        return workflows.command(name)(function)

    return make


@workflows.command("apply")
@click.argument("paths", nargs=-1, required=True, metavar="FILE...")
@team_option
@database_option
@json_option
def workflows_apply(paths: tuple[str, ...], as_json: bool) -> None:
    """Store workflow definitions: files, directories (*.yaml, *.yml, *.json) or globs.

    A new name creates the workflow; a changed definition adds a version; an unchanged
    one adds nothing. Integration declarations among them (`kind: integration`) are
    stored first, as `reflow integrations apply` does. An invalid file is not stored:
    every problem is listed with its path, and the command exits 2 after applying the
    valid files.

    \b
    Example:
      reflow workflows apply examples/ 'more/*.yaml'
    """
    done = _session(lambda reflow, team: apply_files(reflow, team, paths))
    echo_applied(done, as_json=as_json)
    if done.problems:
        raise DefinitionInvalid(done.problems)


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


@_copy_command("activate")
def workflows_activate(workflow: str, user_ref: str, as_json: bool) -> None:
    """Install a workflow's latest version for a user (or reactivate their copy).

    \b
    Example:
      reflow workflows activate "Order summary" --user jane@example.com
    """
    installation = _session(
        lambda reflow, team: reflow.workflows.activate(team, user_ref, workflow)
    )
    _echo_installation(installation, as_json=as_json)


@_copy_command("deactivate")
def workflows_deactivate(workflow: str, user_ref: str, as_json: bool) -> None:
    """Stop a user's copy from running: its runs, events, webhooks and schedules are
    refused or skipped until `reflow workflows activate` turns it back on (Alloy W5).

    \b
    Example:
      reflow workflows deactivate "Order summary" --user jane@example.com
    """
    installation = _session(
        lambda reflow, team: reflow.workflows.deactivate(team, user_ref, workflow)
    )
    _echo_installation(installation, as_json=as_json)


@_copy_command("upgrade")
def workflows_upgrade(workflow: str, user_ref: str, as_json: bool) -> None:
    """Move a user's copy to the workflow's latest version (Alloy W7): after a fix,
    before `reflow rerun ... --version latest` or new runs.

    \b
    Example:
      reflow workflows upgrade "Order summary" --user jane@example.com
    """
    installation = _session(
        lambda reflow, team: reflow.workflows.upgrade(team, user_ref, workflow)
    )
    _echo_installation(installation, as_json=as_json)


@_copy_command("remove")
def workflows_remove(workflow: str, user_ref: str, as_json: bool) -> None:
    """Delete a user's copy (Alloy W6): it runs nothing more and leaves their workflows;
    its executions and logs stay. Exits 5 while one of its executions is unfinished;
    `reflow workflows activate` installs it again.

    \b
    Example:
      reflow workflows remove "Order summary" --user jane@example.com
    """
    installation = _session(
        lambda reflow, team: reflow.workflows.delete(team, workflow, user_ref)
    )
    if as_json:
        _echo_json({"installationId": installation.id, "deleted": True})
    else:
        click.echo(f"removed {installation.id} (workflow {installation.workflow_id}, "
                   f"user {installation.user_id}); its logs stay")


def _echo_installation(installation: Installation, *, as_json: bool) -> None:
    fields = {"installationId": installation.id, "workflowId": installation.workflow_id,
              "userId": installation.user_id,
              "installedVersion": installation.installed_version,
              "active": installation.active}
    _echo_record(fields, as_json=as_json)


@workflows.command("webhook-url")
@click.argument("workflow")
@click.option("--user", "user_ref", required=True, help="User id or username.")
@click.option("--rotate", is_flag=True,
              help="Make a new URL; the old one answers 404 from now on.")
@setting_option("--public-url", "public_url",
                "Where senders reach reflow (default: http://REFLOW_HOST:REFLOW_PORT).",
                metavar="URL")
@team_option
@database_option
@json_option
def workflows_webhook_url(workflow: str, user_ref: str, rotate: bool, as_json: bool) -> None:
    """Print the secret URL that starts a user's copy of a webhook workflow.

    Calling it needs no API key: treat it as a secret, and rotate it when it leaks
    (docs/api.md "Webhooks"). Exits 5 when the version the user runs is not triggered by
    a webhook.

    \b
    Examples:
      reflow workflows webhook-url "Order paid" --user jane@example.com
      reflow workflows webhook-url "Order paid" --user jane@example.com --rotate
    """
    url = _session(
        lambda reflow, team: reflow.webhooks.url(team, workflow, user_ref, rotate=rotate)
    )
    if as_json:
        _echo_json({"webhookUrl": url})
    else:
        click.echo(url)
