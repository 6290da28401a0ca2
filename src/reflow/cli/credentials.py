"""``reflow credentials``: users' credentials for apps, listed and deleted without a value;
and re-encrypting everything sealed under the newest REFLOW_SECRET_KEY."""

from __future__ import annotations

import click

from reflow.cli.common import (
    _echo_json,
    _echo_table,
    _open,
    _session,
    _settings,
    _text,
    database_option,
    json_option,
    team_option,
)
from reflow.errors import InvalidRequest
from reflow.services import Reflow
from reflow.services.credentials import Rotated
from reflow.services.logs import iso
from reflow.services.oauth import event_json


@click.group()
def credentials() -> None:
    """Users' credentials for apps (values are never shown)."""


@credentials.command("list")
@click.option("--user", "user_ref", required=True, help="The user's id or username.")
@team_option
@database_option
@json_option
def credentials_list(user_ref: str, as_json: bool) -> None:
    """List a user's credentials: app, health and times, never a value.

    \b
    Example:
      reflow credentials list --user jane@example.com
    """
    found = _session(lambda reflow, team: reflow.credentials.of_user(team, user_ref))
    if as_json:
        _echo_json([
            {"credentialId": c.id, "app": c.app, "name": c.app_display_name or c.app,
             "health": c.health.value, "healthReason": c.health_reason,
             "createdAt": iso(c.created_at), "updatedAt": iso(c.updated_at),
             "expiresAt": iso(c.expires_at)}
            for c in found
        ])
        return
    _echo_table(
        ("CREDENTIAL ID", "APP", "HEALTH", "CREATED", "UPDATED"),
        [(c.id, c.app, c.health.value + (f" ({c.health_reason})" if c.health_reason else ""),
          _text(iso(c.created_at)), _text(iso(c.updated_at))) for c in found],
        empty=f"no credentials for {user_ref}",
    )


@credentials.command("delete")
@click.argument("credential_id")
@click.option("--user", "user_ref", required=True, help="The user's id or username.")
@team_option
@database_option
def credentials_delete(credential_id: str, user_ref: str) -> None:
    """Delete one of a user's credentials (runs needing it then fail saying so).

    \b
    Example:
      reflow credentials delete 6650f1c2a9e4b7d3c1f08a21 --user jane@example.com
    """
    _session(lambda reflow, team: reflow.credentials.delete(team, user_ref, credential_id))
    click.echo(f"deleted credential {credential_id}")


@credentials.command("rotate-key")
@click.option("--batch", default=200, show_default=True, type=click.IntRange(1, 10_000),
              help="Values re-encrypted per database round.")
@database_option
@json_option
def credentials_rotate_key(batch: int, as_json: bool) -> None:
    """Re-encrypt every sealed value under the newest key of REFLOW_SECRET_KEY.

    Put the new key first and keep the old ones after it (REFLOW_SECRET_KEY=new,old),
    run this, then drop the old keys. It re-encrypts users' credentials, error-stream
    signing secrets and the sealed parts of stored triggers, in batches; a value already
    under the newest key is skipped, so an interrupted run is resumed by running it again.
    Values no configured key opens are counted as unreadable (exit 2).

    \b
    Example:
      REFLOW_SECRET_KEY=$NEW,$OLD reflow credentials rotate-key
    """
    key_text = _settings().secret_key_text()

    def progress(step: Rotated) -> None:
        if not as_json:
            click.echo(f"{step.kind}: {step.rotated} re-encrypted, {step.current} already "
                       "current", err=True)

    async def rotate(reflow: Reflow) -> list[Rotated]:
        return await reflow.credentials.rotate_key(key_text, batch=batch, progress=progress)

    done = _open(rotate)
    if as_json:
        _echo_json([{"kind": r.kind, "rotated": r.rotated, "current": r.current,
                     "unreadable": r.unreadable} for r in done])
    else:
        _echo_table(("KIND", "RE-ENCRYPTED", "ALREADY CURRENT", "UNREADABLE"),
                    [(r.kind, str(r.rotated), str(r.current), str(len(r.unreadable)))
                     for r in done], empty="")
    unreadable = [f"{r.kind} {key}" for r in done for key in r.unreadable]
    if unreadable:
        raise InvalidRequest(
            f"{len(unreadable)} value(s) open with no key of REFLOW_SECRET_KEY and were left "
            f"as they are (add the key that sealed them, after the newest): "
            f"{', '.join(unreadable[:20])}{' ...' if len(unreadable) > 20 else ''}")


# -- OAuth (services/oauth.py; docs/credentials.md "OAuth") -----------------------------------


@credentials.command("oauth-url")
@click.option("--user", "user_ref", required=True, help="The user's id or username.")
@click.option("--app", "app_name", required=True, help="The OAuth app's name.")
@click.option("--redirect-uri", default=None,
              help="Where the browser goes after the callback (same origin as the team's "
                   "redirect URL).")
@team_option
@database_option
def credentials_oauth_url(user_ref: str, app_name: str, redirect_uri: str | None) -> None:
    """Print the URL that connects a user's OAuth app (valid 10 minutes, once).

    \b
    Example:
      reflow credentials oauth-url --user jane@example.com --app crm
    """
    url = _session(lambda reflow, team: reflow.oauth.authorize_url(
        team, user_ref, app_name, redirect_uri))
    click.echo(url)


@credentials.command("oauth-redirect")
@click.argument("url", required=False)
@click.option("--clear", is_flag=True, help="Answer JSON from the callback instead.")
@team_option
@database_option
def credentials_oauth_redirect(url: str | None, clear: bool) -> None:
    """Show or set where the OAuth callback sends the user's browser back.

    \b
    Examples:
      reflow credentials oauth-redirect https://app.example.com/connected
      reflow credentials oauth-redirect --clear
    """
    if url is not None and clear:
        raise InvalidRequest("give a URL or --clear, not both")
    if url is None and not clear:
        shown = _session(lambda reflow, team: reflow.oauth.redirect_url(team))
        click.echo(shown or "(not set: the callback answers JSON)")
        return
    _session(lambda reflow, team: reflow.oauth.set_redirect_url(team, url))
    click.echo(f"OAuth redirect URL: {url}" if url else "OAuth redirect URL cleared")


@credentials.command("events")
@click.option("--user", "user_ref", default=None, help="Only this user's (id or username).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@team_option
@database_option
@json_option
def credentials_events(user_ref: str | None, limit: int, as_json: bool) -> None:
    """List credential events (connected, reconnected, needs_reconnect), newest first.

    \b
    Example:
      reflow credentials events --user jane@example.com
    """
    found = _session(lambda reflow, team: reflow.oauth.events(team, user_ref, limit))
    if as_json:
        _echo_json([event_json(e) for e in found])
        return
    _echo_table(("AT", "EVENT", "CREDENTIAL ID", "APP", "USER", "MESSAGE"),
                [(_text(iso(e.created_at)), e.kind, e.credential_id, e.app, e.user_id,
                  e.message) for e in found], empty="no credential events")
