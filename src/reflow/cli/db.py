"""``reflow db``: the database schema."""

from __future__ import annotations

import asyncio

import click

from reflow.cli.common import (
    _echo_fields,
    _echo_json,
    _settings,
    _shown_url,
    database_option,
    json_option,
)
from reflow.services import Bootstrap, Reflow
from reflow.store.migrate import upgrade_reporting


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@database_option
@json_option
def db_upgrade(as_json: bool) -> None:
    """Create or upgrade the database schema, and make the first team and key.

    Idempotent: on an up-to-date database it changes nothing. The first run on a new
    database creates team "default" and prints its API key once.

    \b
    Example:
      reflow db upgrade --database-url sqlite:///./reflow.db
    """
    settings = _settings()
    applied = upgrade_reporting(settings.database_url)

    async def go() -> Bootstrap:
        reflow = Reflow.open(settings)
        try:
            return await reflow.bootstrap()
        finally:
            await reflow.close()

    boot = asyncio.run(go())
    key = boot.key if boot.created else None
    if as_json:
        _echo_json({"databaseUrl": _shown_url(settings.database_url), "migrations": applied,
                    "teamId": boot.team_id, "teamCreated": boot.created, "apiKey": key})
        return
    _echo_fields([
        ("database", _shown_url(settings.database_url)),
        ("migrations", "; ".join(applied) if applied else "already up to date"),
        ("team", f"{boot.team_id} ({'created' if boot.created else 'exists'})"),
        *([("API key", f"{key}  (shown once: keep it)")] if key else []),
    ])
