"""``reflow users``: end users of your product."""

from __future__ import annotations

from typing import Any

import click

from reflow.cli.common import _echo_record, _session, database_option, json_option, team_option
from reflow.domain.records import User


@click.group()
def users() -> None:
    """End users of your product (who run workflows)."""


def _user_fields(user: User) -> dict[str, Any]:
    return {"userId": user.id, "username": user.username, "fullName": user.full_name}


@users.command("create")
@click.argument("username")
@click.option("--full-name", default=None, help="The user's display name.")
@team_option
@database_option
@json_option
def users_create(username: str, full_name: str | None, as_json: bool) -> None:
    """Create a user (the username must be new in the team).

    \b
    Example:
      reflow users create jane@example.com --full-name "Jane Doe"
    """
    user = _session(lambda reflow, team: reflow.users.create(team, username, full_name))
    _echo_record(_user_fields(user), as_json=as_json)
