"""What a webhook call is made of, without I/O: its trigger payload and its signature check.

A call's trigger is ``{data, query, headers}``: ``data`` the JSON or form body, ``query``
the URL's parameters, ``headers`` what the sender sent (minus credentials and transport
headers). It is stored whole, so a rerun replays the call exactly.

The signature is an HMAC-SHA256 of the raw body (with the signed time around it when the
sender signs one), in the shapes Stripe, GitHub, Shopify and Slack use
(``WebhookVerify``); docs/api.md "Webhooks" has a worked example.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from reflow.domain.definitions import SignatureEncoding, SignatureFormat, WebhookVerify
from reflow.errors import InvalidRequest, Unauthorized, UnsupportedMediaType

# Not kept in a call's trigger: credentials, and what only the connection needed.
DROPPED_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "host", "content-length",
    "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect",
})
FORM = "application/x-www-form-urlencoded"


def trigger_payload(
    body: bytes, content_type: str | None, headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]],
) -> dict[str, Any]:
    """The trigger of a call: ``{data, query, headers}`` (header names lower-cased, a
    repeated one joined with ``, ``; a repeated query parameter a list).

    An empty body is ``{}``; a JSON body (``application/json`` or ``*+json``) or a form
    (``application/x-www-form-urlencoded``) is parsed; any other type is refused (415),
    a body that does not parse is a 422.
    """
    return {"data": _data(body, content_type), "query": _grouped(query),
            "headers": headers_by_name(headers, without=DROPPED_HEADERS)}


def headers_by_name(
    headers: Iterable[tuple[str, str]], *, without: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Headers by lower-case name (a repeated one joined with ``, ``), minus ``without``."""
    found: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered not in without:
            found[lowered] = f"{found[lowered]}, {value}" if lowered in found else value
    return found


def _data(body: bytes, content_type: str | None) -> Any:
    if not body.strip():
        return {}
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"body: malformed JSON ({exc})") from None
    if media == FORM:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("body: the form is not UTF-8") from None
        return _grouped(parse_qsl(text, keep_blank_values=True))
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'} is not read by webhooks: send application/json "
        f"or {FORM}"
    )


def _grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Name -> value, or the list of values of a name given more than once."""
    grouped: dict[str, str | list[str]] = {}
    for name, value in pairs:
        held = grouped.get(name)
        if held is None:
            grouped[name] = value
        elif isinstance(held, list):
            held.append(value)
        else:
            grouped[name] = [held, value]
    return grouped


# -- signatures ----------------------------------------------------------------------------


def check_signature(
    verify: WebhookVerify, secret: str, body: bytes, headers: Mapping[str, str], now: float
) -> None:
    """Raise Unauthorized unless the call carries a valid signature, signed within the
    tolerance of ``now`` (unix seconds) when it is timed. ``headers`` by lower-case name."""
    value = headers.get(verify.header.lower())
    if value is None or not value.strip():
        raise Unauthorized(f"missing {verify.header} header: this webhook accepts only "
                           "signed calls")
    value = value.strip()
    if verify.format is SignatureFormat.STRIPE:
        timestamp, signatures = _stripe_parts(verify, value)
    else:
        timestamp = None
        if verify.timestamp_header is not None:
            timestamp = (headers.get(verify.timestamp_header.lower()) or "").strip()
            if not timestamp:
                raise Unauthorized(f"missing {verify.timestamp_header} header: this "
                                   "webhook's signatures are timed")
        if not value.startswith(verify.prefix):
            raise Unauthorized(f"invalid {verify.header} header: the signature must start "
                               f"with {verify.prefix!r}")
        signatures = [value[len(verify.prefix):]]
    if timestamp is not None:
        _check_time(verify, timestamp, now)
    expected = hmac.new(secret.encode(), signed_bytes(verify.signed, body, timestamp),
                        hashlib.sha256).digest()
    # Every candidate is compared (no early exit), each in constant time.
    matched = False
    for signature in signatures:
        matched |= hmac.compare_digest(expected, _decoded(verify, signature))
    if not matched:
        raise Unauthorized(f"invalid signature in the {verify.header} header")


def signed_bytes(template: str, body: bytes, timestamp: str | None) -> bytes:
    """What is signed: ``template`` with the raw body for ``{body}`` and the timestamp as
    sent for ``{timestamp}``."""
    before, _, after = template.partition("{body}")
    fill = timestamp or ""
    return (before.replace("{timestamp}", fill).encode() + body
            + after.replace("{timestamp}", fill).encode())


def _stripe_parts(verify: WebhookVerify, value: str) -> tuple[str, list[str]]:
    """``t=<seconds>,v1=<signature>[,v1=...]``: the time and every v1 signature."""
    timestamp = None
    signatures = []
    for item in value.split(","):
        key, _, part = item.strip().partition("=")
        if key == "t":
            timestamp = part
        elif key == "v1":
            signatures.append(part)
    if timestamp is None or not signatures:
        raise Unauthorized(f"invalid {verify.header} header: expected t=<timestamp>,"
                           "v1=<signature>")
    return timestamp, signatures


def _check_time(verify: WebhookVerify, timestamp: str, now: float) -> None:
    if not timestamp.isdigit():
        raise Unauthorized(f"invalid signature timestamp {timestamp[:40]!r}: expected unix "
                           "seconds")
    skew = abs(now - int(timestamp))
    if skew > verify.tolerance:
        raise Unauthorized(
            f"stale signature: signed {skew:.0f} s from now, outside the "
            f"{verify.tolerance:g} s tolerance (a replayed call, or a clock out of step)"
        )


def _decoded(verify: WebhookVerify, signature: str) -> bytes:
    """The signature's digest bytes; b"" (which never matches) when it does not decode."""
    try:
        if verify.encoding is SignatureEncoding.HEX:
            return bytes.fromhex(signature)
        return base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        return b""
