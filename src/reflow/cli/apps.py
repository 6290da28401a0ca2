"""``reflow apps``: the third-party apps the team's users connect (declared from files)."""

from __future__ import annotations

from pathlib import Path

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
from reflow.cli.files import applied_app_json, echo_applied_apps, read_files
from reflow.domain.apps import app_from_document
from reflow.domain.records import Team
from reflow.errors import AppInvalid
from reflow.services import Reflow
from reflow.services.apps import AppliedApp
from reflow.services.logs import iso


@click.group()
def apps() -> None:
    """Apps: the third-party services users connect with their credentials."""


@apps.command("apply")
@click.argument("paths", nargs=-1, required=True, metavar="FILE...")
@team_option
@database_option
@json_option
def apps_apply(paths: tuple[str, ...], as_json: bool) -> None:
    """Store app declarations: files, directories (*.yaml, *.yml, *.json) or globs.

    A declaration gives a name (what workflows' `credential` and credentials' `type`
    name), displayName, icon (an http(s) URL), auth (api_key with header or query,
    bearer, basic, oauth2, oauth2_client_credentials) and the fields a user fills in
    (docs/credentials.md). `kind: app` is optional here (needed beside workflows). A new
    name creates the app; an existing one is updated to the file. Invalid files are listed
    with their problems, and the command exits 2 after applying the valid ones.

    \b
    Example:
      reflow apps apply examples/shop.app.yaml
    """
    # Every file is read as an app declaration (``kind`` optional here).
    declared, problems = read_files(paths, app_from_document)

    async def store(reflow: Reflow, team: Team) -> list[tuple[Path, AppliedApp]]:
        return [(path, await reflow.apps.apply(team, app)) for path, app in declared]

    done = _session(store) if declared else []
    if as_json:
        _echo_json([applied_app_json(path, a) for path, a in done])
    elif done:
        echo_applied_apps(done)
    if problems:
        raise AppInvalid(problems)


@apps.command("list")
@team_option
@database_option
@json_option
def apps_list(as_json: bool) -> None:
    """List the team's apps with their auth kind and fields.

    \b
    Example:
      reflow apps list --json
    """
    found = _session(lambda reflow, team: reflow.apps.all(team))
    if as_json:
        _echo_json([
            {"appId": a.record.id, "name": a.record.name,
             "displayName": a.record.display_name, "auth": a.record.auth_kind,
             "icon": a.record.icon, "fields": [f.name for f in a.declaration.fields],
             "updatedAt": iso(a.record.updated_at)}
            for a in found
        ])
        return
    _echo_table(
        ("NAME", "DISPLAY NAME", "AUTH", "FIELDS", "ICON"),
        [(a.record.name, a.record.display_name, a.record.auth_kind,
          ", ".join(f.name + (" (secret)" if f.secret else "") for f in a.declaration.fields)
          or "-", _text(a.record.icon)) for a in found],
        empty="no apps: declare one with `reflow apps apply FILE`",
    )
