"""The ``reflow`` command: a thin shell over the services.

Every command loads Settings (flags override the REFLOW_* environment), opens a Reflow,
calls service methods and prints a table (or ``key: value`` lines), or JSON with
``--json``. ReflowErrors become a message on stderr and an exit code in one place
(``ReflowGroup.invoke``, in ``common.py``); a traceback means a bug.

One module per command group; ``runtime.py`` is what ``serve`` and ``worker`` run.
"""

from __future__ import annotations

import click

from reflow.cli.apps import apps
from reflow.cli.common import ReflowGroup
from reflow.cli.credentials import credentials
from reflow.cli.db import db
from reflow.cli.integrations import integrations
from reflow.cli.keys import keys
from reflow.cli.logs import logs
from reflow.cli.purge import purge
from reflow.cli.runs import cancel, rerun, run
from reflow.cli.schedules import schedules
from reflow.cli.serve import serve, worker
from reflow.cli.teams import teams
from reflow.cli.users import users
from reflow.cli.workflows import workflows

__all__ = ["cli", "main"]


@click.group(
    cls=ReflowGroup,
    commands=[db, keys, teams, users, integrations, apps, credentials, workflows, schedules,
              run, rerun, cancel, logs, purge, serve, worker],
    context_settings={"help_option_names": ["-h", "--help"]},
)
def cli() -> None:
    """reflow: self-hosted embedded integration workflows (Alloy Embedded API 2025-09).

    \b
    Start here:
      reflow serve --apply examples/ --demo-user demo
    \b
    Exit codes: 0 ok, 1 error, 2 invalid input or definition, 3 bad settings,
    4 not found, 5 conflict.
    """


def main() -> None:
    """The ``reflow`` console script."""
    cli(prog_name="reflow")
