"""``reflow keys``: a team's API keys."""

from __future__ import annotations

import click

from reflow.cli.common import (
    _echo_fields,
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
def keys() -> None:
    """API keys (sent as "authorization: bearer KEY")."""


@keys.command("create")
@click.option("--name", default="cli", show_default=True, help="A label for the key.")
@team_option
@database_option
@json_option
def keys_create(name: str, as_json: bool) -> None:
    """Create an API key and print it (the only time it is shown).

    \b
    Example:
      reflow keys create --name backend
    """
    created = _session(lambda reflow, team: reflow.keys.create_key(team, name))
    key = created.key
    if as_json:
        _echo_json({"id": key.id, "name": key.name, "prefix": key.prefix,
                    "createdAt": iso(key.created_at), "key": created.raw})
        return
    _echo_fields([("id", key.id), ("name", key.name), ("prefix", key.prefix),
                  ("key", created.raw)])
    click.echo("This is the only time the key is shown: store it now.", err=True)


@keys.command("list")
@team_option
@database_option
@json_option
def keys_list(as_json: bool) -> None:
    """List the team's API keys (prefixes only), revoked ones included.

    \b
    Example:
      reflow keys list
    """
    found = _session(lambda reflow, team: reflow.keys.list_keys(team))
    if as_json:
        _echo_json([{"id": k.id, "name": k.name, "prefix": k.prefix,
                     "createdAt": iso(k.created_at), "revokedAt": iso(k.revoked_at)}
                    for k in found])
        return
    _echo_table(("ID", "NAME", "PREFIX", "CREATED", "REVOKED"),
                [(k.id, k.name, k.prefix, _text(iso(k.created_at)), _text(iso(k.revoked_at)))
                 for k in found],
                empty="no API keys")


@keys.command("revoke")
@click.argument("id_or_prefix")
@team_option
@database_option
@json_option
def keys_revoke(id_or_prefix: str, as_json: bool) -> None:
    """Revoke an API key by id or prefix (it stops working within seconds).

    \b
    Example:
      reflow keys revoke rf_AbCdEfG
    """
    _session(lambda reflow, team: reflow.keys.revoke_key(team, id_or_prefix))
    if as_json:
        _echo_json({"revoked": id_or_prefix})
    else:
        click.echo(f"revoked {id_or_prefix}")
