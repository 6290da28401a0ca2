"""What every command shares: the flags that override Settings, opening a Reflow,
printing tables, fields and JSON, and turning a ReflowError into an exit code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import click
import orjson

from reflow.domain.executions import ExecutionRecord
from reflow.domain.records import Team
from reflow.errors import (
    Conflict,
    DefinitionInvalid,
    InvalidRequest,
    NotFound,
    ReflowError,
    SettingsError,
)
from reflow.services import Reflow
from reflow.settings import Settings, load_settings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_OVERRIDES = "reflow.settings_overrides"
_TEAM = "reflow.team"


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
        click.echo(f"error: invalid {exc.what}", err=True)
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


def _shown_url(url: str) -> str:
    """A database URL as logged: without its password."""
    scheme, sep, rest = url.partition("://")
    credentials, at, place = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{place}"
