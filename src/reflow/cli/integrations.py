"""``reflow integrations``: what the team's workflows integrate with."""

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
from reflow.cli.files import apply_files, echo_applied
from reflow.errors import IntegrationInvalid
from reflow.services.logs import iso


@click.group()
def integrations() -> None:
    """Integrations: what the team's workflows integrate with (declared from files)."""


@integrations.command("apply")
@click.argument("paths", nargs=-1, required=True, metavar="FILE...")
@team_option
@database_option
@json_option
def integrations_apply(paths: tuple[str, ...], as_json: bool) -> None:
    """Store integration declarations: files, directories (*.yaml, *.yml, *.json) or globs.

    A declaration says `kind: integration` and gives a name (what workflows' `integration`
    key names), and optionally app, description and icon (an http(s) URL). A new name
    creates the integration; an existing one is updated to the file (a key left out
    takes its default). A file that is not a declaration, or an invalid one, is listed
    with its problems, and the command exits 2 after applying the valid files.

    \b
    Example:
      reflow integrations apply examples/shop.integration.yaml
    """
    done = _session(lambda reflow, team: apply_files(reflow, team, paths, workflows=False))
    echo_applied(done, as_json=as_json)
    if done.problems:
        raise IntegrationInvalid(done.problems)


@integrations.command("list")
@team_option
@database_option
@json_option
def integrations_list(as_json: bool) -> None:
    """List the team's integrations with the workflows naming them.

    \b
    Example:
      reflow integrations list --json
    """
    found = _session(lambda reflow, team: reflow.integrations.with_workflows(team))
    if as_json:
        _echo_json([
            {"integrationId": i.id, "name": i.name, "app": i.app,
             "description": i.description, "icon": i.icon, "updatedAt": iso(i.updated_at),
             "workflows": [{"workflowId": w.id, "name": w.name} for w in workflows]}
            for i, workflows in found
        ])
        return
    _echo_table(
        ("ID", "NAME", "APP", "WORKFLOWS", "ICON"),
        [(i.id, i.name, i.app, ", ".join(w.name for w in workflows) or "-", _text(i.icon))
         for i, workflows in found],
        empty="no integrations: declare one with `reflow integrations apply FILE`, or name "
              "one in a workflow's `integration` key",
    )
