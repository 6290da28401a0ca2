"""The error stream: every failed execution of a team POSTed, signed, to the team's URL.

- **Setting.** A team sets a URL (``set``); reflow generates the secret that signs each
  POST, keeps it across URL changes unless asked to rotate it, and stores it sealed with
  REFLOW_SECRET_KEY (as trigger secrets are: ``reflow.sealing``).
- **Outbox.** The store writes a notification row in the very transaction that commits a
  failed execution, and only when its team streams errors (``Store.save_execution``), so
  a crash or a restart loses none and a succeeded execution costs nothing more.
- **Delivery** (``deliver_due``, the "error stream" periodic job, woken when this process
  commits a failure): claim due rows (several processes take different ones), POST them
  concurrently through the same guarded, cookie-less, per-team clients as the ``http``
  block (REFLOW_HTTP_ALLOW_NETWORKS applies), mark each delivered on a 2xx, else retry it
  with exponential backoff until REFLOW_ERROR_STREAM_MAX_AGE after the failure, then give
  it up (``dead``, logged). When a team's receiver is down, its other notifications wait
  for the same retry time instead of each costing a timeout. Nothing of this runs on an
  execution's path: a slow receiver delays only its own team's notifications.

docs/api.md "Error streaming" documents the headers, the body and how to verify the
signature.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from cryptography.fernet import InvalidToken

from reflow import __version__, metrics
from reflow.blocks.http import HttpClients, HttpPolicy, address_refusal, create_http_clients
from reflow.blocks.redaction import redact
from reflow.clock import Clock
from reflow.domain.records import Team
from reflow.errors import InvalidRequest, NotFound, ReflowError
from reflow.sealing import SealError
from reflow.services.logs import iso
from reflow.services.workflows import WorkflowService
from reflow.settings import Settings
from reflow.store.base import ErrorNotification, ErrorStreamStats, Store

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Reflow-Signature"
# What a notification is about: execution.failed, or credential.needs_reconnect.
EVENT_HEADER = "x-reflow-event"
SECRET_PREFIX = "rfes_"
URL_MAX_CHARS = 2048
# Retries: the first 30 s after a failed attempt, doubling, at most an hour apart.
FIRST_RETRY_SECONDS = 30.0
MAX_RETRY_SECONDS = 3600.0
# POSTs of one team in flight at once per process (and claimed per round): a slow
# receiver holds at most this many of the process's REFLOW_ERROR_STREAM_CONCURRENCY.
PER_TEAM = 4
# A claimed notification is due again this long after its POST's timeout, should the
# process delivering it die meanwhile.
_CLAIM_MARGIN_SECONDS = 30.0
_PURGE_BATCH = 500
# Failures committed in a burst share one delivery round: a wake at most this often (s).
_WAKE_GAP = 0.05
# The receiver's answer is not read; this bounds what a client would buffer anyway.
_MAX_RESPONSE_BYTES = 64 * 1024
# Statuses that say the receiver is unavailable (not that it refuses this notification).
_UNAVAILABLE = frozenset({408, 425, 429})
_NO_KEY = ("REFLOW_SECRET_KEY is not set: the error stream's signing secret is stored "
           "encrypted with it; set it (`make run` makes one for dev)")


@dataclass(frozen=True, slots=True)
class ErrorStream:
    """A team's error stream as the API and the CLI show it (url None: not streaming)."""

    url: str | None
    secret: str | None
    stats: ErrorStreamStats


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``t=<unix seconds>,v1=<hex HMAC-SHA256>`` of
    ``"<t>." + body`` keyed by the secret (its UTF-8 text, prefix included)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                      hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones."""
    doublings = min(max(attempts - 1, 0), 32)  # past the cap long before; no overflow
    return min(FIRST_RETRY_SECONDS * 2.0 ** doublings, MAX_RETRY_SECONDS)


def _url_problem(url: str) -> str | None:
    """What is wrong with a URL's shape (None: nothing)."""
    if not url:
        return "must not be empty"
    if len(url) > URL_MAX_CHARS:
        return f"longer than {URL_MAX_CHARS} characters"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "must not contain spaces or control characters"
    try:
        parsed = httpx.URL(url)
        host = parsed.host  # decoded here: a malformed IDNA name raises
    except (httpx.InvalidURL, UnicodeError) as exc:
        return f"not a valid URL ({exc})"
    if parsed.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not host:
        return "has no host"
    if parsed.userinfo:
        return ("must not carry a user name or password (the signature authenticates "
                "reflow to your endpoint)")
    if parsed.fragment:
        return "must not have a #fragment"
    return None


def check_url(value: str, allow_networks: Sequence[Any] = ()) -> str:
    """The URL to store, or InvalidRequest (422) saying what is wrong with it. A literal
    address is checked as the connection will be (a name is, at each connection)."""
    url = value.strip()
    problem = _url_problem(url)
    if problem is not None:
        raise InvalidRequest(f"url: {problem}")
    parsed = httpx.URL(url)
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidRequest(f"url: port {parsed.port} is not between 1 and 65535")
    try:
        address = ipaddress.ip_address(parsed.host)
    except ValueError:
        return url
    reason = address_refusal(address, allow_networks)
    if reason is not None:
        raise InvalidRequest(f"url: {address} is a {reason}; reflow posts only to public "
                             "addresses unless REFLOW_HTTP_ALLOW_NETWORKS allows it")
    return url


class _Failed(Exception):
    """An attempt that failed; ``unavailable``: the receiver is down or overloaded (its
    team's other notifications wait too), not refusing this one."""

    def __init__(self, reason: str, *, unavailable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unavailable = unavailable


class ErrorStreamService:
    """A team's error stream setting, and the delivery of its failed executions."""

    def __init__(
        self,
        store: Store,
        workflows: WorkflowService,
        settings: Settings,
        clock: Clock,
        keys: MultiFernet | None,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.workflows = workflows
        self.settings = settings
        self.clock = clock
        self.keys = keys
        self._http: HttpClients | None = None
        self._next_purge = 0
        # Starts a delivery round now (Reflow wakes its periodic job).
        self.wake = wake
        self._wake_at: float | None = None  # loop time of the wake scheduled, if any
        self._woken_at = float("-inf")

    def failure_committed(self) -> None:
        """A failed execution was committed in this process: deliver soon (a wake at most
        every _WAKE_GAP, so a storm of failures costs a round per gap, not one each)."""
        if self._wake_at is not None:
            return
        loop = asyncio.get_running_loop()
        self._wake_at = max(loop.time(), self._woken_at + _WAKE_GAP)
        loop.call_at(self._wake_at, self._wake_now)

    def _wake_now(self) -> None:
        self._woken_at, self._wake_at = asyncio.get_running_loop().time(), None
        self.wake()

    # -- the setting ------------------------------------------------------------------------

    async def get(self, team: Team) -> ErrorStream:
        """The team's error stream with its secret, and how its notifications fared."""
        setting = await self.store.get_error_stream(team.id)
        if setting is None:
            raise NotFound(f"team {team.id!r} not found")
        secret = None if setting.sealed_secret is None else self._open(setting.sealed_secret)
        return ErrorStream(setting.url, secret, await self.store.error_stream_stats(team.id))

    async def set(self, team: Team, url: str, *, rotate_secret: bool = False) -> ErrorStream:
        """Stream the team's failed executions to ``url``; the secret is new when there was
        none or ``rotate_secret``, else kept. Notifications not yet delivered go to the new
        URL, signed with the secret as it is when each is sent."""
        url = check_url(url, self.settings.http_allow_networks)
        if self.keys is None:
            raise SealError(_NO_KEY)
        setting = await self.store.get_error_stream(team.id)
        if setting is None:
            raise NotFound(f"team {team.id!r} not found")
        if setting.sealed_secret is None or rotate_secret:
            secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        else:
            secret = self._open(setting.sealed_secret)
        sealed = self.keys.encrypt(secret.encode()).decode()
        if not await self.store.set_error_stream(team.id, url, sealed):
            raise NotFound(f"team {team.id!r} not found")
        return ErrorStream(url, secret, await self.store.error_stream_stats(team.id))

    async def clear(self, team: Team) -> None:
        """Stop streaming the team's errors; notifications not yet delivered are dropped."""
        if not await self.store.clear_error_stream(team.id):
            raise NotFound(f"team {team.id!r} not found")

    def _open(self, sealed: str) -> str:
        if self.keys is None:
            raise SealError(_NO_KEY)
        try:
            return self.keys.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SealError(
                "the error stream's signing secret was encrypted with a key that is no "
                "longer in REFLOW_SECRET_KEY; add that key back (after the newest), or set "
                "the stream again with a new secret (rotateSecret)"
            ) from None

    # -- delivery ---------------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Deliver every notification due now (the periodic job); how many were delivered.

        Rounds of at most REFLOW_ERROR_STREAM_CONCURRENCY POSTs, until none is due; one
        call at a time in a process (Periodic).
        """
        delivered = 0
        limit = self.settings.error_stream_concurrency
        claim_ms = round((self.settings.error_stream_timeout + _CLAIM_MARGIN_SECONDS)
                         * 1000)
        while True:
            now = self.clock.now_ms()
            claimed = await self.store.claim_error_notifications(
                now, now + claim_ms, limit, PER_TEAM)
            if claimed:
                results = await asyncio.gather(*(self._deliver(n) for n in claimed),
                                               return_exceptions=True)
                for n, result in zip(claimed, results, strict=True):
                    if isinstance(result, BaseException):
                        # E.g. the database failed: tried again once its claim lapses.
                        log.error("error stream: the notification of execution %s "
                                  "failed: %r", n.execution_id, result)
                delivered += sum(result is True for result in results)
            if len(claimed) < limit:
                break
        await self._purge()
        return delivered

    async def _deliver(self, notification: ErrorNotification) -> bool:
        """One attempt, settled in the store; True when delivered."""
        n = notification
        if n.url is None or n.sealed_secret is None:
            await self.store.drop_error_notification(n.execution_id)  # the team stopped
            return False
        try:
            await self._post(n, n.url, self._open(n.sealed_secret))
        except _Failed as failed:
            await self._failed(n, failed)
            return False
        except SealError as exc:
            await self._failed(n, _Failed(exc.message, unavailable=False))
            return False
        await self.store.error_notification_delivered(n.execution_id, self.clock.now_ms())
        metrics.error_stream_post("delivered")
        return True

    async def _failed(self, n: ErrorNotification, failed: _Failed) -> None:
        now = self.clock.now_ms()
        retry_at = now + round(retry_delay(n.attempts) * 1000)
        reason = f"attempt {n.attempts}: {failed.reason}"
        if retry_at - n.stopped_at > self.settings.error_stream_max_age * 1000:
            await self.store.error_notification_dead(n.execution_id, now, reason)
            metrics.error_stream_post("dead")
            log.warning("error stream of team %s: gave up the notification of execution %s "
                        "after %d attempts (%s)", n.team_id, n.execution_id, n.attempts,
                        failed.reason)
        else:
            await self.store.error_notification_retry(n.execution_id, retry_at, reason)
            metrics.error_stream_post("retried")
            log.info("error stream of team %s: execution %s not delivered (%s); next "
                     "attempt at %s", n.team_id, n.execution_id, failed.reason, iso(retry_at))
        if failed.unavailable:
            await self.store.pause_error_stream(n.team_id, retry_at)

    async def _post(self, n: ErrorNotification, url: str, secret: str) -> None:
        """POST the notification; _Failed unless the receiver answered 2xx."""
        if n.kind is None:
            body, block_id, block_type = await self._body(n)
            headers = {
                "x-alloy-workflowid": n.workflow_id,
                "x-alloy-blockname": block_id or "",
                "x-alloy-blocktype": block_type or "",
                "x-alloy-executionuuid": n.execution_id,
                EVENT_HEADER: "execution.failed",
            }
        else:
            # A credential's notification (services/oauth.py): its body as stored.
            body, headers = n.payload or b"{}", {EVENT_HEADER: n.kind}
        headers |= {
            "content-type": "application/json",
            "user-agent": f"reflow/{__version__}",
            "x-alloy-userid": n.user_id,
            "x-reflow-attempt": str(n.attempts),
            SIGNATURE_HEADER.lower(): sign(secret, self.clock.now_ms() // 1000, body),
        }
        timeout = self.settings.error_stream_timeout
        team = self._clients().team(n.team_id)
        target = httpx.URL(url)
        try:
            async with asyncio.timeout(timeout), team.slot(target, timeout):
                request = team.client.build_request("POST", target, content=body,
                                                    headers=headers)
                response = await team.client.send(request, stream=True)
                await response.aclose()  # the answer's body is not read
        except TimeoutError:
            raise _Failed(f"no answer within {timeout:g}s", unavailable=True) from None
        except httpx.TimeoutException:
            raise _Failed(f"no answer within {timeout:g}s", unavailable=True) from None
        except (httpx.HTTPError, OSError) as exc:
            raise _Failed(_connection_failure(exc), unavailable=True) from None
        except ReflowError as exc:  # the address guard's refusal, a connection limit
            raise _Failed(exc.message, unavailable=True) from None
        status = response.status_code
        if not 200 <= status < 300:
            moved = " (redirects are not followed)" if 300 <= status < 400 else ""
            raise _Failed(f"answered HTTP {status}{moved}",
                          unavailable=status >= 500 or status in _UNAVAILABLE)

    async def _body(self, n: ErrorNotification) -> tuple[bytes, str | None, str | None]:
        """The JSON body, and the failing block's id and type (None when no block failed)."""
        error = orjson.loads(n.error) if n.error else {}
        block_id = error.get("blockId")
        try:
            block_type = await self.workflows.block_type(n.team_id, n.workflow_id,
                                                         n.version, block_id)
        except NotFound:
            block_type = None
        workflow = await self.store.get_workflow(n.team_id, n.workflow_id)
        body = {
            "event": "execution.failed",
            "executionId": n.execution_id,
            "executionUuid": n.execution_id,
            "workflowId": n.workflow_id,
            "workflowName": None if workflow is None else workflow.name,
            "installationId": n.installation_id,
            "workflowVersion": n.version,
            "userId": n.user_id,
            "blockName": block_id,
            "blockType": block_type,
            # Stored redacted; redacted again in case an older row held a credential.
            "error": {"message": redact(str(error.get("message", ""))), "blockId": block_id},
            "mode": n.mode,
            "startedAt": iso(n.started_at),
            "stoppedAt": iso(n.stopped_at),
        }
        return orjson.dumps(body), block_id, block_type

    def _clients(self) -> HttpClients:
        if self._http is None:
            settings = self.settings
            self._http = create_http_clients(HttpPolicy(
                allow_networks=settings.http_allow_networks,
                timeout=settings.error_stream_timeout,
                max_response_bytes=_MAX_RESPONSE_BYTES,
                team_connections=PER_TEAM,
                host_connections=PER_TEAM,
                team_clients=settings.http_team_clients,
            ))
        return self._http

    async def _purge(self) -> None:
        """Delete delivered and dead notifications past the log retention, a batch per
        REFLOW_PURGE_INTERVAL at most."""
        now = self.clock.now_ms()
        if now < self._next_purge:
            return
        self._next_purge = now + round(self.settings.purge_interval * 1000)
        cutoff = now - round(self.settings.log_retention * 1000)
        purged = await self.store.purge_error_notifications(cutoff, _PURGE_BATCH)
        if purged:
            log.info("purged %d error stream notifications past the retention window", purged)

    async def aclose(self) -> None:
        """Close the delivery clients."""
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()



def _connection_failure(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"connection failed: {text}" if text else f"connection failed ({type(exc).__name__})"


def team_summary(stream: ErrorStream) -> dict[str, Any]:
    """How the API and the CLI show a team's error stream."""
    stats = stream.stats
    failure = None
    if stats.last_failure is not None:
        execution_id, reason, at = stats.last_failure
        failure = {"executionId": execution_id, "error": reason, "at": iso(at)}
    return {
        "url": stream.url,
        "secret": stream.secret,
        "signatureHeader": SIGNATURE_HEADER,
        "pending": stats.pending,
        "delivered": stats.delivered,
        "dead": stats.dead,
        "lastDeliveredAt": iso(stats.last_delivered_at),
        "lastFailure": failure,
    }
