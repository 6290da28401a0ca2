"""Webhook URLs: each installation of a webhook workflow gets a secret URL that starts it.

``POST /webhooks/{token}`` takes no API key: the token names the installation (and so the
team), and rotating it retires the old URL at once. A call is checked (the installation
is active and its user live, the installed version is webhook-triggered, the signature if
the definition asks for one), then deduplicated on the delivery id header the definition
names, then started as an execution with mode ``webhook`` (docs/api.md "Webhooks").
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from reflow.clock import Clock
from reflow.dispatch import Started
from reflow.domain.definitions import WebhookOptions, WebhookVerify
from reflow.domain.records import Installation, Team
from reflow.domain.webhooks import check_signature, headers_by_name, trigger_payload
from reflow.engine.compiled import CompiledWorkflow
from reflow.errors import BadRequest, Conflict, Gone, NotFound
from reflow.services.runs import RunService
from reflow.services.teams import TeamService
from reflow.services.workflows import WorkflowService
from reflow.store.base import Store

log = logging.getLogger(__name__)

PATH = "/webhooks/"
TOKEN_PREFIX = "wh_"
# Longer delivery ids are not ids: refused rather than stored.
MAX_DELIVERY_ID_LENGTH = 255


def new_token() -> str:
    """A fresh URL token: 256 random bits, URL-safe, marked for secret scanners."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def delivery_key(installation_id: str, delivery_id: str) -> str:
    """The idempotency key a delivery id is stored as. The newlines keep it apart from every
    ``Idempotency-Key`` header a client can send (HTTP header values cannot hold one)."""
    return f"webhook\n{installation_id}\n{delivery_id}"


@dataclass(frozen=True, slots=True)
class WebhookCall:
    """A call to a webhook URL, as received."""

    token: str
    body: bytes
    content_type: str | None
    headers: Sequence[tuple[str, str]]  # as sent, in order
    query: Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Received:
    """What a webhook call did: the execution it started, or the one its delivery id
    started before (``duplicate``); ``respond`` when the caller waits for the answer."""

    started: Started
    duplicate: bool = False
    respond: bool = False
    wait: float | None = None


class WebhookService:
    """Webhook URLs of installations, and the calls made to them."""

    def __init__(
        self, store: Store, workflows: WorkflowService, runs: RunService, teams: TeamService,
        *, public_url: str, clock: Clock,
    ) -> None:
        self.store = store
        self.workflows = workflows
        self.runs = runs
        self.teams = teams
        self.base = public_url.rstrip("/") + PATH  # REFLOW_PUBLIC_URL
        self.clock = clock

    # -- URLs ----------------------------------------------------------------------------

    async def url_for(self, team: Team, installation: Installation | None) -> str | None:
        """The installation's webhook URL (made now if it had none), or None when there is
        no installation or the version it runs is not webhook-triggered."""
        if installation is None or await self._options(installation) is None:
            return None
        token = await self.store.ensure_webhook_token(team.id, installation.id, new_token(),
                                                      self.clock.now_ms())
        return self.base + token

    async def url(
        self, team: Team, workflow_ref: str, user_ref: str | None, *, rotate: bool = False
    ) -> str:
        """A user's installation's webhook URL; with ``rotate`` a new one, the old one then
        answering 404. NotFound without an installation; Conflict when the version it runs
        is not webhook-triggered."""
        target = await self.workflows.installation(team, workflow_ref, user_ref)
        installation = target.installation
        assert installation is not None  # installation() guarantees it
        if await self._options(installation) is None:
            raise Conflict(
                f"workflow {target.workflow.name!r} (version {installation.installed_version}, "
                "the one this user runs) is not triggered by a webhook, so it has no webhook "
                "URL"
            )
        now = self.clock.now_ms()
        if rotate:
            token = new_token()
            await self.store.rotate_webhook_token(team.id, installation.id, token, now)
        else:
            token = await self.store.ensure_webhook_token(team.id, installation.id,
                                                          new_token(), now)
        return self.base + token

    async def _options(self, installation: Installation) -> WebhookOptions | None:
        compiled = await self._compiled(installation)
        return compiled.definition.trigger.webhook

    async def _compiled(self, installation: Installation) -> CompiledWorkflow:
        return await self.workflows.compiled(installation.team_id, installation.workflow_id,
                                             installation.installed_version)

    # -- calls ---------------------------------------------------------------------------

    async def receive(self, call: WebhookCall) -> Received:
        """Check a call and start its execution (or find the one its delivery started).

        NotFound for an unknown token; Gone when the user was deleted; Conflict when the
        installation is deactivated or runs a version that is not webhook-triggered;
        Unauthorized for a missing, invalid or stale signature; BadRequest without the
        delivery id header the definition names; 415/422 for a body that is not JSON or
        a form. Each refusal starts nothing.
        """
        installation, compiled, options = await self._target(call.token)
        headers = headers_by_name(call.headers)
        if options.verify is not None:
            secret = await self._secret(installation.team_id, options.verify)
            check_signature(options.verify, secret, call.body, headers,
                            self.clock.now_ms() / 1000)
        payload = trigger_payload(call.body, call.content_type, call.headers, call.query)
        key = None
        if options.dedupe_header is not None:
            key = delivery_key(installation.id, _delivery_id(options.dedupe_header, headers))
            earlier = await self.store.find_idempotency_key(installation.team_id, key)
            if earlier is not None:
                return Received(Started(earlier), duplicate=True)
        wait = options.respond_wait if options.respond else None
        try:
            started = await self.runs.fire_webhook(installation, compiled, payload,
                                                   wait=wait, delivery_key=key)
        except Conflict:
            # The same delivery, received twice at once: the other call stored it first.
            earlier = None
            if key is not None:
                earlier = await self.store.find_idempotency_key(installation.team_id, key)
            if earlier is None:
                raise
            return Received(Started(earlier), duplicate=True)
        return Received(started, respond=options.respond, wait=wait)

    async def _target(
        self, token: str
    ) -> tuple[Installation, CompiledWorkflow, WebhookOptions]:
        """The installation a token names, if a call may start it now."""
        found = await self.store.find_webhook(token)
        if found is None:
            raise NotFound("unknown webhook URL: it was never issued, or it was rotated")
        installation = found.installation
        if found.user_deleted:
            raise Gone("this webhook's user was deleted: its workflows no longer run")
        if found.installation_deleted:
            raise Gone("this webhook's workflow was deleted for its user: calls are refused "
                       "until it is activated again (PUT /workflows/activate), which revives "
                       "this URL")
        if not installation.active:
            raise Conflict("this webhook's workflow is deactivated for its user: calls are "
                           "refused until it is activated again (PUT /workflows/activate)")
        compiled = await self._compiled(installation)
        trigger = compiled.definition.trigger
        if trigger.webhook is None:
            raise Conflict(
                f"the workflow's version {installation.installed_version}, the one this "
                f"user runs, is triggered by {trigger.type.value}, not by a webhook"
            )
        return installation, compiled, trigger.webhook

    async def _secret(self, team_id: str, verify: WebhookVerify) -> str:
        """The signing secret from the team's env; Conflict when it is not set there."""
        env = await self.teams.expression_env(team_id)
        secret = env.get(verify.secret)
        if not isinstance(secret, str) or not secret:
            log.warning("team %s: a webhook's signature cannot be checked: its env has no "
                        "text key %r", team_id, verify.secret)
            # The key is named in the log, not to the caller: a secret pasted into the
            # definition by mistake would be echoed to whoever calls.
            raise Conflict(
                "this webhook's signature cannot be checked: the team's env has no text "
                "under the key its definition names (trigger.verify.secret); the server log "
                "names it"
            )
        return secret


def _delivery_id(header: str, headers: dict[str, str]) -> str:
    delivery = headers.get(header.lower(), "").strip()
    if not delivery:
        raise BadRequest(f"missing {header} header: this webhook starts one execution per "
                         "delivery id and needs it")
    if len(delivery) > MAX_DELIVERY_ID_LENGTH:
        raise BadRequest(f"{header} header: a delivery id of at most "
                         f"{MAX_DELIVERY_ID_LENGTH} characters")
    return delivery
