"""The ``reflow`` command: a thin shell over the services.

Every command loads Settings (flags override the REFLOW_* environment), opens a Reflow,
calls service methods and prints a table (or ``key: value`` lines), or JSON with
``--json``. ReflowErrors become a message on stderr and an exit code in one place
(``ReflowGroup.invoke``); a traceback means a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import glob
import logging
import shlex
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
import uvicorn
import uvloop

from reflow.dispatch import Started
from reflow.domain.definitions import TriggerType, WorkflowDefinition
from reflow.domain.executions import ExecutionRecord, ExecutionStatus, TriggerMode
from reflow.domain.records import Team, User
from reflow.errors import (
    Conflict,
    DefinitionInvalid,
    InvalidRequest,
    NotFound,
    Problem,
    ReflowError,
    SettingsError,
)
from reflow.services import Bootstrap, Reflow
from reflow.services.logs import LogsPage, execution_detail, iso
from reflow.services.runs import RerunOptions
from reflow.services.workflows import Applied, definition_from_text
from reflow.settings import CURRENT_API_VERSION, Environment, Settings, load_settings
from reflow.store import migrate
from reflow.store.backends import is_postgres

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("reflow.serve")

_OVERRIDES = "reflow.settings_overrides"
_TEAM = "reflow.team"
_WORKFLOW_SUFFIXES = (".yaml", ".yml", ".json")
_DEMO_WORKFLOW = "order summary"

# -- errors: one handler, one exit code per kind ---------------------------------------------

EXIT_ERROR, EXIT_INVALID, EXIT_SETTINGS, EXIT_NOT_FOUND, EXIT_CONFLICT = 1, 2, 3, 4, 5


def exit_code(exc: ReflowError) -> int:
    """The process exit code for an error (documented in ``reflow --help``)."""
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, InvalidRequest):
        return EXIT_INVALID
    if isinstance(exc, Conflict):
        return EXIT_CONFLICT
    if isinstance(exc, SettingsError):
        return EXIT_SETTINGS
    return EXIT_ERROR


def _report(exc: ReflowError) -> None:
    if isinstance(exc, DefinitionInvalid):
        click.echo("error: invalid workflow definition", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
    else:
        click.echo(f"error: {exc.message}", err=True)


class ReflowGroup(click.Group):
    """The root group: turns a ReflowError from any subcommand into a message and exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; a ReflowError exits with its code, never a traceback."""
        try:
            return super().invoke(ctx)
        except ReflowError as exc:
            _report(exc)
            raise click.exceptions.Exit(exit_code(exc)) from None


class DefaultListGroup(click.Group):
    """A group where an argument that names no subcommand means ``list ARGUMENT...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Route ``reflow logs WORKFLOW`` to ``reflow logs list WORKFLOW``."""
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["list", *args]
        return super().parse_args(ctx, args)


# -- options ---------------------------------------------------------------------------------


def _remember_setting(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None:
        ctx.meta.setdefault(_OVERRIDES, {})[param.name] = value


def _remember_team(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
    ctx.meta[_TEAM] = value


def setting_option(flag: str, field: str, help_text: str, **kwargs: Any) -> Callable[[F], F]:
    """A flag that overrides the Settings field ``field`` (its help names REFLOW_<FIELD>)."""
    return click.option(
        flag, field, default=None, expose_value=False, callback=_remember_setting,
        help=f"{help_text} [env: REFLOW_{field.upper()}]", **kwargs,
    )


database_option = setting_option(
    "--database-url", "database_url", "Database URL, e.g. sqlite:///./reflow.db.",
    metavar="URL",
)
team_option = click.option(
    "--team", "team", default=None, expose_value=False, metavar="TEAM_ID",
    callback=_remember_team,
    help="Team id (default: the first team).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _settings() -> Settings:
    overrides: dict[str, Any] = click.get_current_context().meta.get(_OVERRIDES, {})
    return load_settings(**overrides)


def _session(work: Callable[[Reflow, Team], Awaitable[T]]) -> T:
    """Open settings and Reflow, resolve ``--team``, run ``work``, close."""
    team_id: str | None = click.get_current_context().meta.get(_TEAM)

    async def with_team(reflow: Reflow) -> T:
        return await work(reflow, await reflow.keys.team(team_id))

    return _open(with_team)


def _open(work: Callable[[Reflow], Awaitable[T]]) -> T:
    """Open settings and Reflow, run ``work`` (no team: for deployment-wide commands), close."""
    settings = _settings()

    async def go() -> T:
        reflow = Reflow.open(settings)
        try:
            return await work(reflow)
        finally:
            await reflow.close()

    return asyncio.run(go())


# -- output ----------------------------------------------------------------------------------


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _echo_table(columns: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> None:
    if not rows:
        click.echo(empty)
        return
    widths = [max(len(row[i]) for row in (columns, *rows)) for i in range(len(columns))]
    for row in (columns, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                   .rstrip())


def _echo_fields(fields: Sequence[tuple[str, Any]]) -> None:
    width = max(len(name) for name, _ in fields) + 1
    for name, value in fields:
        click.echo(f"{name + ':':<{width}} {_text(value)}")


def _echo_record(fields: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        _echo_json(fields)
    else:
        _echo_fields(list(fields.items()))


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bytes):  # stored JSON
        return value.decode()
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _fragment(raw: bytes | None) -> Any:
    return None if raw is None else orjson.Fragment(raw)


def _duration(record: ExecutionRecord) -> str:
    started = record.started_at or record.created_at
    if record.stopped_at is None:
        return "-"
    ms = record.stopped_at - started
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _error_text(record: ExecutionRecord) -> str:
    if record.error is None:
        return "-"
    error = orjson.loads(record.error)
    message = str(error.get("message", ""))
    block = error.get("blockId")
    return f"{block}: {message}" if block else message


def _parse_json_object(text: str | bytes, source: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{source}: must be a JSON object")
    return value


# -- workflow files --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppliedFile:
    """One workflow file stored: its definition and what storing it did."""

    path: Path
    definition: WorkflowDefinition
    applied: Applied


def workflow_files(patterns: Sequence[str]) -> list[Path]:
    """The files named by paths, directories (their *.yaml/*.yml/*.json) and globs."""
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in _WORKFLOW_SUFFIXES)
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True)
                           if Path(p).is_file())
        if not found:
            raise InvalidRequest(f"{pattern}: no workflow file matches")
        files.extend(p for p in found if p not in files)
    return files


async def apply_files(
    reflow: Reflow, team: Team, patterns: Sequence[str]
) -> tuple[list[AppliedFile], list[Problem]]:
    """Store every valid file (idempotent); the others' problems are returned by path."""
    done: list[AppliedFile] = []
    problems: list[Problem] = []
    for path in workflow_files(patterns):
        content_type = "application/json" if path.suffix == ".json" else None
        try:
            definition = definition_from_text(path.read_bytes(), content_type)
        except DefinitionInvalid as exc:
            problems.extend(
                Problem(f"{path}: {p.path}" if p.path else str(path), p.reason)
                for p in exc.problems
            )
            continue
        except OSError as exc:
            problems.append(Problem(str(path), f"cannot read it ({exc.strerror})"))
            continue
        done.append(AppliedFile(path, definition, await reflow.workflows.apply(team, definition)))
    return done, problems


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


# -- the command tree ------------------------------------------------------------------------


@click.group(cls=ReflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """reflow: self-hosted embedded integration workflows (Alloy Embedded API 2025-09).

    \b
    Start here:
      reflow serve --apply examples/ --demo-user demo
    \b
    Exit codes: 0 ok, 1 error, 2 invalid input or definition, 3 bad settings,
    4 not found, 5 conflict.
    """


# db ------------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The database schema."""


def _migrate(database_url: str) -> list[str]:
    """Run the migrations; returns what alembic applied (empty when already up to date)."""
    # migrate.upgrade() reports nothing; alembic logs each step it runs, so listen to that.
    applied: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("Running upgrade"):
                applied.append(message.removeprefix("Running upgrade").strip())

    logger = logging.getLogger("alembic.runtime.migration")
    handler, level, propagate = Collect(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        migrate.upgrade(database_url)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    return applied


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
    applied = _migrate(settings.database_url)

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


# keys ----------------------------------------------------------------------------------------


@cli.group()
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


# teams ---------------------------------------------------------------------------------------


@cli.group()
def teams() -> None:
    """Teams (tenants): each has its own API keys, users, workflows and expression env."""


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


# users ---------------------------------------------------------------------------------------


@cli.group()
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


# workflows -----------------------------------------------------------------------------------


@cli.group()
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


# run and rerun -------------------------------------------------------------------------------



async def _start_or_enqueue(
    reflow: Reflow, team: Team, wait: float | None, start: Callable[[], Awaitable[Started]]
) -> ExecutionRecord:
    """Run here when we wait and may run executions; else queue for whoever runs them.

    On SQLite, this process may run executions when no `reflow serve` holds the file's
    runner lock; on PostgreSQL the workers run them (a CLI does not become one). With
    ``--wait``, a queued execution is waited for.
    """
    if wait is not None and not is_postgres(reflow.settings.database_url):
        with contextlib.suppress(SettingsError):  # a `reflow serve` runs executions here
            await reflow.start()
    started = await start()
    return await reflow.logs.execution(team, started.execution_id)


def _echo_run(record: ExecutionRecord, *, as_json: bool) -> None:
    if as_json:
        _echo_json({"executionId": record.id, "status": record.status.value,
                    "output": _fragment(record.output), "error": _fragment(record.error)})
        return
    fields: list[tuple[str, Any]] = [("executionId", record.id),
                                     ("status", record.status.value)]
    if record.status is ExecutionStatus.QUEUED:
        fields.append(("note", "queued: a `reflow serve` or `reflow worker` on this database "
                               "will run it"))
    elif not record.finished:
        fields.append(("note", "still running at the deadline: see `reflow logs show`"))
    fields.append(("output", record.output))
    if record.error is not None:
        fields.append(("error", _error_text(record)))
    _echo_fields(fields)


wait_option = click.option(
    "--wait", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
    help="Wait up to SECONDS for the end and print the output. On SQLite without a "
         "running `reflow serve`, the run happens in this process; on PostgreSQL a worker "
         "runs it.",
)


def _run_data(data: str | None, data_file: Path | None) -> dict[str, Any]:
    if data is not None and data_file is not None:
        raise InvalidRequest("give --data or --data-file, not both")
    if data_file is not None:
        try:
            return _parse_json_object(data_file.read_bytes(), str(data_file))
        except OSError as exc:
            raise InvalidRequest(f"{data_file}: cannot read it ({exc.strerror})") from None
    return _parse_json_object(data, "--data") if data is not None else {}


@cli.command("run")
@click.argument("workflow")
@click.option("--user", "user_ref", required=True, help="User id or username.")
@click.option("--data", default=None, metavar="JSON", help="Trigger data, a JSON object.")
@click.option("--data-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Read the trigger data from a JSON file.")
@wait_option
@team_option
@database_option
@json_option
def run(
    workflow: str, user_ref: str, data: str | None, data_file: Path | None,
    wait: float | None, as_json: bool,
) -> None:
    """Run a user's copy of a workflow (trigger mode "manual").

    Without --wait the execution is committed as queued and a running `reflow serve`
    runs it; with --wait the command prints how it ended.

    \b
    Example:
      reflow run "Order summary" --user demo --data '{"label": "a", "values": [1, 2]}' --wait 10
    """
    payload = _run_data(data, data_file)

    async def work(reflow: Reflow, team: Team) -> ExecutionRecord:
        return await _start_or_enqueue(reflow, team, wait, lambda: reflow.runs.run(
            team, workflow, user_ref, payload, mode=TriggerMode.MANUAL, wait=wait))

    _echo_run(_session(work), as_json=as_json)


@cli.command("rerun")
@click.argument("workflow")
@click.argument("execution_id")
@click.option("--user", "user_ref", default=None, help="User id or username.")
@click.option("--from", "start_from", default="start", show_default=True,
              help="'start', 'failed' (the failed block) or a block id: the steps before it "
                   "are copied from the source instead of running again.")
@click.option("--version", "version", default="original", show_default=True,
              type=click.Choice(["original", "installed", "latest"]),
              help="Which version runs: the source's, the user's installed one, or the latest.")
@click.option("--data", default=None, metavar="JSON",
              help="Replace the trigger data (a JSON object).")
@wait_option
@team_option
@database_option
@json_option
def rerun(
    workflow: str, execution_id: str, user_ref: str | None, start_from: str, version: str,
    data: str | None, wait: float | None, as_json: bool,
) -> None:
    """Rerun a finished execution as a new one (rerunOf is set); by default on the same
    version with the same trigger data, from the start.

    \b
    Examples:
      reflow rerun "Order summary" 0Ab3dEf9GhIjKlMnOpQrS --wait 10
      reflow rerun "Ship paid order" 0Ab3dEf9GhIjKlMnOpQrS --from failed --version latest
    """
    payload = _parse_json_object(data, "--data") if data is not None else None
    options = RerunOptions(start_from, version, payload)

    async def work(reflow: Reflow, team: Team) -> ExecutionRecord:
        return await _start_or_enqueue(reflow, team, wait, lambda: reflow.runs.rerun(
            team, workflow, execution_id, user_ref, options=options, wait=wait))

    _echo_run(_session(work), as_json=as_json)


@cli.command("cancel")
@click.argument("execution_id")
@click.option("--wait", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Wait up to SECONDS for a running execution to stop.")
@team_option
@database_option
@json_option
def cancel(execution_id: str, wait: float | None, as_json: bool) -> None:
    """Cancel an execution: a queued one at once, a running one before its next block (the
    `reflow serve` running it sees the request within a second).

    \b
    Examples:
      reflow cancel 0Ab3dEf9GhIjKlMnOpQrS
      reflow cancel 0Ab3dEf9GhIjKlMnOpQrS --wait 30
    """

    async def work(reflow: Reflow, team: Team) -> ExecutionRecord:
        record = await reflow.runs.cancel(team, execution_id)
        if wait is not None and not record.finished:
            await reflow.dispatch.wait(team.id, execution_id, wait)
            return await reflow.logs.execution(team, execution_id)
        return record

    _echo_run(_session(work), as_json=as_json)


# logs ----------------------------------------------------------------------------------------


@cli.group(cls=DefaultListGroup)
def logs() -> None:
    """Execution logs: `reflow logs WORKFLOW` lists, `reflow logs show ID` details.

    \b
    Examples:
      reflow logs "Order summary" --failed
      reflow logs show 0Ab3dEf9GhIjKlMnOpQrS
    """


@logs.command("list")
@click.argument("workflow")
@click.option("--user", "user_ref", default=None, help="Only this user's (id or username).")
@click.option("--limit", type=int, default=10, show_default=True, help="Rows per page (1-30).")
@click.option("--page", type=int, default=1, show_default=True, help="Page number.")
@click.option("--order", type=click.Choice(["desc", "asc"]), default="desc",
              show_default=True, help="Newest first (desc) or oldest first.")
@click.option("--failed", is_flag=True, help="Only failed executions.")
@team_option
@database_option
@json_option
def logs_list(
    workflow: str, user_ref: str | None, limit: int, page: int, order: str, failed: bool,
    as_json: bool,
) -> None:
    """List a workflow's executions (one user's with --user).

    \b
    Example:
      reflow logs list "Order summary" --user demo --limit 20
    """
    query = LogsPage(page=page, limit=limit, order=order, failed_only=failed)
    found = _session(lambda reflow, team: reflow.logs.workflow_logs(team, workflow, user_ref,
                                                                    query))
    if as_json:
        _echo_json([{
            "executionId": e.id, "startedAt": iso(e.started_at or e.created_at),
            "stoppedAt": iso(e.stopped_at), "status": e.status.value, "mode": e.mode.value,
            "workflowVersion": e.version, "userId": e.user_id, "rerunOf": e.rerun_of,
            "error": _fragment(e.error),
        } for e in found])
        return
    _echo_table(
        ("EXECUTION ID", "STARTED", "DURATION", "STATUS", "MODE", "VERSION", "RERUN OF",
         "ERROR"),
        [(e.id, _text(iso(e.started_at or e.created_at)), _duration(e), e.status.value,
          e.mode.value, str(e.version), _text(e.rerun_of), _error_text(e)) for e in found],
        empty="no executions",
    )


@logs.command("show")
@click.argument("execution_id")
@team_option
@database_option
@json_option
def logs_show(execution_id: str, as_json: bool) -> None:
    """Show one execution: trigger, output, error, and every step's input and output.

    \b
    Example:
      reflow logs show 0Ab3dEf9GhIjKlMnOpQrS --json
    """
    record = _session(lambda reflow, team: reflow.logs.execution(team, execution_id))
    if as_json:
        _echo_json(execution_detail(record))
        return
    _echo_fields([
        ("executionId", record.id), ("workflowId", record.workflow_id),
        ("userId", record.user_id), ("version", record.version), ("mode", record.mode.value),
        ("status", record.status.value), ("started", iso(record.started_at)),
        ("stopped", iso(record.stopped_at)), ("duration", _duration(record)),
        ("rerunOf", record.rerun_of), ("reruns", ", ".join(record.reruns) or None),
        ("trigger", record.trigger), ("output", record.output),
        ("error", _error_text(record) if record.error else None),
    ])
    for step in record.steps:
        click.echo("")
        click.echo(f"step {step.seq}: {step.block_id}  {step.status.value}  "
                   f"attempts {step.attempts}{'  reused' if step.reused else ''}")
        _echo_fields([("  input", step.input), ("  output", step.output),
                      *([("  error", step.error)] if step.error else [])])


# serve ---------------------------------------------------------------------------------------


@cli.command("serve")
@setting_option("--host", "host", "Interface to listen on.")
@setting_option("--port", "port", "Port to listen on.", type=int)
@database_option
@click.option("--apply", "apply_paths", multiple=True, metavar="PATH",
              help="Apply workflow files before serving: a file, a directory or a glob "
                   "(repeatable; idempotent).")
@click.option("--demo-user", default=None, metavar="USERNAME",
              help="Create this user if missing and activate every applied workflow for it.")
@click.option("--no-worker", is_flag=True,
              help="Serve the API only: new executions are queued for `reflow worker` "
                   "processes (scale-out, docs/deploy.md).")
def serve(apply_paths: tuple[str, ...], demo_user: str | None, no_worker: bool) -> None:
    """Migrate the database and serve the API (and run executions) in one process.

    Prints the base URL, an API key (dev mode only) and a ready-to-paste curl once
    listening; stops gracefully on SIGTERM or Ctrl+C (running executions get
    REFLOW_SHUTDOWN_GRACE to finish, the rest are released to other workers). Production
    needs REFLOW_SECRET_KEY.

    \b
    Examples:
      reflow serve --port 8080 --apply examples/ --demo-user demo
      reflow serve --no-worker --database-url postgresql://reflow@db/reflow
    """
    settings = _settings()
    settings.require_secret_key()
    _configure_logging()
    applied = _migrate(settings.database_url)
    log.info("database %s: %s", _shown_url(settings.database_url),
             ("migrated " + "; ".join(applied)) if applied else "schema up to date")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(settings, apply_paths, demo_user, worker=not no_worker))


@cli.command("worker")
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


async def _work(settings: Settings) -> None:
    reflow = Reflow.open(settings)
    try:
        await reflow.store.ping()
        await reflow.start(worker=True, api=False)
        log.info("worker %s runs executions from %s (concurrency %d); SIGTERM stops it",
                 reflow.worker.owner, _shown_url(settings.database_url),
                 settings.worker_concurrency)
        click.echo(f"reflow worker running: {reflow.worker.owner}")
        if settings.worker_metrics_port is None:
            await _until_signalled()
        else:
            await _serve_operations(reflow, settings.host, settings.worker_metrics_port)
        log.info("stopping: no new claims; running executions get %gs to finish",
                 settings.shutdown_grace)
    finally:
        await reflow.close()


async def _serve_operations(reflow: Reflow, host: str, port: int) -> None:
    """Serve /healthz, /readyz and /metrics until SIGTERM or SIGINT (uvicorn takes both)."""
    from reflow.api import create_operations_app

    config = uvicorn.Config(create_operations_app(reflow), host=host, port=port,
                            loop="none", lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    try:
        with _signals_end_serving():
            await server.serve()
    except SystemExit:  # uvicorn exits when it cannot listen; it logged why
        raise SettingsError(f"cannot serve the worker's metrics on {host}:{port} "
                            "(see the log above)") from None


async def _until_signalled() -> None:
    """Return on the first SIGTERM or SIGINT (the main thread's loop handles both)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _shown_url(url: str) -> str:
    """A database URL as logged: without its password."""
    scheme, sep, rest = url.partition("://")
    credentials, at, place = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{place}"


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


async def _serve(
    settings: Settings, apply_paths: Sequence[str], demo_user: str | None, *, worker: bool
) -> None:
    # Imported here: FastAPI costs every other command a noticeable start-up delay.
    from reflow.api import create_app
    from reflow.api.server import build_server

    reflow = Reflow.open(settings)
    try:
        # Started here rather than by the app's lifespan: a second server on the same
        # SQLite database then fails as a ReflowError (exit 3), before anything is written.
        await reflow.start(worker=worker)
        boot = await reflow.bootstrap()
        team = await reflow.keys.team(boot.team_id)
        done, problems = await apply_files(reflow, team, apply_paths)
        if problems:
            raise DefinitionInvalid(problems)
        user = await _demo_user(reflow, team, demo_user, done) if demo_user else None
        server = build_server(create_app(reflow, manage=False), settings)
        _tune_garbage_collector()
        banner = asyncio.create_task(_announce(server, Banner(settings, boot, done, user)))
        try:
            with _signals_end_serving():
                await server.serve()
        except SystemExit:  # uvicorn exits when it cannot listen; it logged why
            raise SettingsError(f"cannot serve on {settings.host}:{settings.port} "
                                "(see the log above)") from None
        finally:
            banner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await banner
    finally:
        await reflow.close()


def _command() -> str:
    # How the user can type this command again: `.venv/bin/reflow` after `make run`.
    invoked = sys.argv[0] if sys.argv else ""
    if invoked.endswith("/reflow") and "/" in invoked:
        with contextlib.suppress(ValueError):
            return shlex.quote(str(Path(invoked).resolve().relative_to(Path.cwd())))
    return "reflow"


def _tune_garbage_collector() -> None:
    # Everything loaded so far lives as long as the process: keep the collector off it,
    # and collect the young generation less often (each run allocates many small objects,
    # almost none of them in cycles). Measured: GC was ~10% of the server's CPU under load.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def _demo_user(
    reflow: Reflow, team: Team, username: str, done: Sequence[AppliedFile]
) -> User:
    try:
        user = await reflow.users.get(team, username)
    except NotFound:
        user = await reflow.users.create(team, username, None)
    for item in done:
        workflow_id = item.applied.workflow.id
        await reflow.workflows.activate(team, user.id, workflow_id)
        # The demo user always runs what was just applied (an edited example included).
        await reflow.workflows.upgrade(team, user.id, workflow_id)
    return user


@contextlib.contextmanager
def _signals_end_serving() -> Iterator[None]:
    """While serving, SIGINT/SIGTERM only stop the server (then reflow exits 0).

    uvicorn handles them during serve() and raises the signal again once it returns, so
    the previous handler runs after the graceful shutdown: that handler must do nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: None)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True, slots=True)
class Banner:
    """What ``serve`` prints once it listens."""

    settings: Settings
    boot: Bootstrap
    applied: Sequence[AppliedFile]
    user: User | None

    @property
    def base_url(self) -> str:
        """The URL a client on this machine calls (a wildcard host becomes loopback)."""
        host = self.settings.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.settings.port}"

    def demo(self) -> AppliedFile | None:
        """The applied workflow the curl runs: api or webhook, "Order summary" first."""
        runnable = [a for a in self.applied
                    if a.definition.trigger.type in (TriggerType.API, TriggerType.WEBHOOK)]
        named = [a for a in runnable if _DEMO_WORKFLOW in a.definition.name.lower()]
        candidates = named or runnable
        return candidates[0] if candidates else None

    def lines(self) -> list[str]:
        """The banner text."""
        base = self.base_url
        # stdout ends up in a production deployment's logs: a key is printed in dev only.
        dev = self.settings.env is Environment.DEV
        key = self.boot.key if dev else None
        out = [f"reflow is serving {base}", ""]
        if key is not None:
            out.append(f"  API key:  {key}")
        elif not dev:
            out += ["  API key:  not printed in production; create one with:",
                    f"            {_command()} keys create --name NAME"]
        else:
            out += ["  API key:  not shown (it was printed when this database was created);",
                    f"            make another with: {_command()} keys create --name NAME"]
        demo = self.demo()
        logs_target = shlex.quote(demo.definition.name) if demo else "WORKFLOW"
        out += [f"  docs:     {base}/docs", f"  logs:     {_command()} logs {logs_target}"
                + self._database_flag()]
        if demo is not None:
            out += ["", *self._curl(demo, key)]
        elif not self.applied:
            out += ["", "Serve with --apply FILE --demo-user NAME for a ready-to-run curl."]
        return out

    def _database_flag(self) -> str:
        url = self.settings.database_url
        if url == Settings.model_fields["database_url"].default:
            return ""
        if _shown_url(url) != url:  # it holds a password: never print it
            return ' --database-url "$REFLOW_DATABASE_URL"'
        return f" --database-url {shlex.quote(url)}"

    def _curl(self, demo: AppliedFile, key: str | None) -> list[str]:
        user = self.user.username if self.user else "USER_ID"
        body = orjson.dumps({
            "workflowName": demo.definition.name,
            "userId": user,
            "data": demo.definition.trigger.schema or {},
        }).decode()
        header = f'Run "{demo.definition.name}" for user {user} and print its output:'
        if self.user is None:
            header += " (activate it for a user first: reflow workflows activate)"
        url = f"{self.base_url}/run/workflow?wait=10"
        headers = (f"authorization: bearer {key or 'API_KEY'}",
                   f"x-api-version: {CURRENT_API_VERSION}", "content-type: application/json")
        return [
            header,
            f"  curl -sS -X POST {shlex.quote(url)} \\",
            *(f"    -H {shlex.quote(h)} \\" for h in headers),
            f"    -d {shlex.quote(body)}",
        ]


async def _announce(server: uvicorn.Server, banner: Banner) -> None:
    """Print the banner once uvicorn listens (this task is cancelled if it never does)."""
    while not server.started:
        await asyncio.sleep(0.05)
    click.echo("\n".join(banner.lines()))
    sys.stdout.flush()


def main() -> None:
    """The ``reflow`` console script."""
    cli(prog_name="reflow")
