"""``reflow teams``: teams (tenants) and their expression env."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
import orjson

from reflow.cli.common import (
    _echo_fields,
    _echo_json,
    _echo_table,
    _open,
    _parse_json_object,
    _text,
    database_option,
    json_option,
)
from reflow.cli.error_stream import error_stream
from reflow.cli.purge import retention
from reflow.domain.records import Team
from reflow.errors import InvalidRequest
from reflow.services import Reflow
from reflow.services.logs import iso


@click.group()
def teams() -> None:
    """Teams (tenants): each has its own API keys, users, workflows and expression env."""


teams.add_command(error_stream)
teams.add_command(retention)


@teams.command("create")
@click.argument("name")
@database_option
@json_option
def teams_create(name: str, as_json: bool) -> None:
    """Create a team and print its first API key (the only time it is shown).

    The name must be new. With --json the output is exactly {"teamId", "apiKey"}.

    \b
    Example:
      reflow teams create "Acme Inc" --json
    """
    created = _open(lambda reflow: reflow.teams.create(name))
    if as_json:
        _echo_json({"teamId": created.team.id, "apiKey": created.key.raw})
        return
    _echo_fields([("teamId", created.team.id), ("name", created.team.name),
                  ("apiKey", created.key.raw)])
    click.echo("This is the only time the key is shown: store it now.", err=True)


@teams.command("list")
@database_option
@json_option
def teams_list(as_json: bool) -> None:
    """List the teams, oldest first, with how many live (not revoked) API keys each has.

    \b
    Example:
      reflow teams list
    """
    found = _open(lambda reflow: reflow.teams.all())
    if as_json:
        _echo_json([{"teamId": s.team.id, "name": s.team.name,
                     "createdAt": iso(s.team.created_at), "liveKeys": s.live_keys}
                    for s in found])
        return
    _echo_table(("ID", "NAME", "CREATED", "LIVE KEYS"),
                [(s.team.id, s.team.name, _text(iso(s.team.created_at)), str(s.live_keys))
                 for s in found],
                empty="no teams: `reflow db upgrade` makes the first")


def _env_pairs(pairs: Sequence[str], option: str, *, as_json: bool) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"{option}: expected KEY=VALUE, got {pair!r}")
        if as_json:
            try:
                values[key] = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise InvalidRequest(f"{option} {key}: not valid JSON ({exc})") from None
        else:
            values[key] = value
    return values


@teams.command("env")
@click.argument("team_ref", metavar="TEAM")
@click.option("--set", "set_pairs", multiple=True, metavar="KEY=VALUE",
              help="Set KEY to the text VALUE (repeatable).")
@click.option("--set-json", "json_pairs", multiple=True, metavar="KEY=JSON",
              help="Set KEY to a JSON value: a number, true, an array... (repeatable).")
@click.option("--unset", "unset", multiple=True, metavar="KEY", help="Remove KEY (repeatable).")
@click.option("--file", "env_file", type=click.File("rb"), default=None, metavar="PATH",
              help="Replace the whole env with this file's JSON object ('-': stdin); "
                   "--set, --set-json and --unset then apply to it.")
@database_option
@json_option
def teams_env(
    team_ref: str, set_pairs: tuple[str, ...], json_pairs: tuple[str, ...],
    unset: tuple[str, ...], env_file: Any, as_json: bool,
) -> None:
    """Show or change a team's expression env (TEAM: its id or name).

    Expressions see `env`: the deployment's REFLOW_EXPRESSION_ENV (shared defaults)
    overlaid by the team's keys, the team's winning. At most 64 KiB as JSON. A running
    `reflow serve` sees a change within 5 seconds. Prints the team's env after the change.

    \b
    Examples:
      reflow teams env acme
      reflow teams env acme --set shopUrl=https://shop.acme.example --set-json retries=3
      reflow teams env acme --unset retries
      reflow teams env acme --file env.json
    """
    base = _parse_json_object(env_file.read(), env_file.name) if env_file else None
    set_values = {**_env_pairs(set_pairs, "--set", as_json=False),
                  **_env_pairs(json_pairs, "--set-json", as_json=True)}
    changing = base is not None or bool(set_values) or bool(unset)

    async def work(reflow: Reflow) -> tuple[Team, dict[str, Any]]:
        team = await reflow.teams.find(team_ref)
        if not changing:
            return team, await reflow.teams.env(team)
        return team, await reflow.teams.update_env(team, base=base, set_values=set_values,
                                                   unset=unset)

    team, env = _open(work)
    if as_json:
        _echo_json({"teamId": team.id, "env": env})
        return
    _echo_table(("KEY", "VALUE (JSON)"),
                [(key, orjson.dumps(value).decode()) for key, value in env.items()],
                empty=f"team {team.name!r} has no env of its own "
                      "(its expressions see REFLOW_EXPRESSION_ENV only)")
