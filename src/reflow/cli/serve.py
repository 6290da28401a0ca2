"""``reflow serve`` and ``reflow worker``: the long-running processes (their runtime is
in ``runtime.py``)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import click
import uvloop

from reflow.cli.common import _settings, _shown_url, database_option, setting_option
from reflow.cli.runtime import _serve, _work
from reflow.store.migrate import upgrade_apart

log = logging.getLogger("reflow.serve")


@click.command("serve")
@setting_option("--host", "host", "Interface to listen on.")
@setting_option("--port", "port", "Port to listen on.", type=int)
@database_option
@click.option("--apply", "apply_paths", multiple=True, metavar="PATH",
              help="Apply workflow files before serving: a file, a directory or a glob "
                   "(repeatable; idempotent).")
@click.option("--demo-user", default=None, metavar="USERNAME",
              help="Create this user if missing and activate every applied workflow for it.")
@click.option("--demo-credential", "demo_credentials", multiple=True,
              metavar="APP:FIELD=VALUE", callback=lambda _c, _p, v: _demo_credentials(v),
              help="Give the --demo-user a credential for an applied app, e.g. "
                   "shop:apiKey=dev-shop-key (repeatable; fields of one app make one "
                   "credential). Kept when the user's newest credential for the app holds "
                   "these values, else added. For local demos: the value is visible in "
                   "the process list.")
@click.option("--no-worker", is_flag=True,
              help="Serve the API only: new executions are queued for `reflow worker` "
                   "processes (scale-out, docs/deploy.md).")
def serve(apply_paths: tuple[str, ...], demo_user: str | None,
          demo_credentials: dict[str, dict[str, str]], no_worker: bool) -> None:
    """Migrate the database and serve the API (and run executions) in one process.

    Prints the base URL, an API key (dev mode only) and a ready-to-paste curl once
    listening; stops gracefully on SIGTERM or Ctrl+C (running executions get
    REFLOW_SHUTDOWN_GRACE to finish, the rest are released to other workers). Production
    needs REFLOW_SECRET_KEY.

    \b
    Examples:
      reflow serve --port 8080 --apply examples/ --demo-user demo
      reflow serve --apply examples/ --demo-user demo --demo-credential shop:apiKey=dev-shop-key
      reflow serve --no-worker --database-url postgresql://reflow@db/reflow
    """
    if demo_credentials and demo_user is None:
        raise click.UsageError("--demo-credential needs --demo-user: the user it is for")
    settings = _settings()
    settings.require_secret_key()
    _configure_logging()
    applied = upgrade_apart(settings.database_url)
    log.info("database %s: %s", _shown_url(settings.database_url),
             ("migrated " + "; ".join(applied)) if applied else "schema up to date")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(settings, apply_paths, demo_user, demo_credentials,
                          worker=not no_worker))


@click.command("worker")
@database_option
@setting_option("--concurrency", "worker_concurrency",
                "Executions this process runs at once.", type=click.IntRange(1, 10_000))
@setting_option("--metrics-port", "worker_metrics_port",
                "Serve /healthz, /readyz and /metrics on this port (on REFLOW_HOST).",
                type=click.IntRange(1, 65535))
def worker(**_: Any) -> None:
    """Run executions only (no API): claim queued ones from the database, run them, and
    resume those whose worker died. Any number may run against one PostgreSQL database,
    on any hosts; SQLite takes one process that runs executions per file.

    Stops gracefully on SIGTERM or Ctrl+C: no new claims, running executions get
    REFLOW_SHUTDOWN_GRACE to finish, the rest are released to other workers, exit 0.
    The schema must be current (`reflow db upgrade`).

    \b
    Example:
      reflow worker --concurrency 32 --metrics-port 9101 --database-url postgresql://reflow@db/reflow
    """
    settings = _settings()
    settings.require_secret_key()
    _configure_logging()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_work(settings))


def _demo_credentials(given: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``APP:FIELD=VALUE`` options as each app's values."""
    values: dict[str, dict[str, str]] = {}
    for option in given:
        app, _, assignment = option.partition(":")
        field, equals, value = assignment.partition("=")
        if not (app and field and equals) or "=" in app:
            # Not quoted back: what was given may be the secret itself.
            raise click.BadParameter("expected APP:FIELD=VALUE, e.g. shop:apiKey=dev-shop-key",
                                     param_hint="'--demo-credential'")
        if field in values.setdefault(app, {}):
            raise click.BadParameter(f"{app}:{field} is given twice",
                                     param_hint="'--demo-credential'")
        values[app][field] = value
    return values


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
