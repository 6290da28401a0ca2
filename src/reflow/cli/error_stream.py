"""``reflow teams error-stream``: where a team's failed executions are POSTed, signed."""

from __future__ import annotations

from typing import Any

import click

from reflow.cli.common import (
    _echo_json,
    _echo_record,
    _session,
    database_option,
    json_option,
    team_option,
)
from reflow.services.error_stream import ErrorStream, team_summary


@click.group("error-stream")
def error_stream() -> None:
    """A team's error stream: every failed execution POSTed to a URL, signed.

    Each POST carries the X-Alloy-WorkflowId, X-Alloy-UserId, X-Alloy-BlockName,
    X-Alloy-BlockType and X-Alloy-ExecutionUuid headers, a JSON body, and
    X-Reflow-Signature (HMAC-SHA256 with the secret shown here; docs/api.md "Error
    streaming" has how to verify it). Failed POSTs are retried with backoff.
    """


def _echo_stream(stream: ErrorStream, *, as_json: bool) -> None:
    summary = team_summary(stream)
    if as_json:
        _echo_json(summary)
        return
    failure = summary.pop("lastFailure")
    fields: dict[str, Any] = {**summary, "lastFailure": None if failure is None else
                              f"{failure['at']} execution {failure['executionId']}: "
                              f"{failure['error']}"}
    _echo_record(fields, as_json=False)


@error_stream.command("show")
@team_option
@database_option
@json_option
def error_stream_show(as_json: bool) -> None:
    """Show the team's error stream URL (none: "-"), its signing secret, and how many
    notifications are pending, delivered and given up.

    \b
    Example:
      reflow teams error-stream show --team 6650a1f0c3b2a4d5e6f70811
    """
    stream = _session(lambda reflow, team: reflow.error_stream.get(team))
    _echo_stream(stream, as_json=as_json)


@error_stream.command("set")
@click.argument("url")
@click.option("--rotate-secret", is_flag=True,
              help="Make a new signing secret (the old one signs nothing more).")
@team_option
@database_option
@json_option
def error_stream_set(url: str, rotate_secret: bool, as_json: bool) -> None:
    """Stream the team's failed executions to URL (http:// or https://) and print the
    signing secret (made on the first set, kept on later ones unless --rotate-secret).

    \b
    Example:
      reflow teams error-stream set https://ops.example.com/reflow-errors
    """
    stream = _session(lambda reflow, team: reflow.error_stream.set(
        team, url, rotate_secret=rotate_secret))
    _echo_stream(stream, as_json=as_json)


@error_stream.command("clear")
@team_option
@database_option
def error_stream_clear() -> None:
    """Stop streaming the team's failed executions (notifications not yet delivered are
    dropped).

    \b
    Example:
      reflow teams error-stream clear
    """
    _session(lambda reflow, team: reflow.error_stream.clear(team))
    click.echo("error stream cleared")
