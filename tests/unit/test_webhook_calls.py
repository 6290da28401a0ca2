"""A webhook call without I/O: its trigger payload, its signature check, and the trigger
options a definition declares."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from reflow.domain.definitions import (
    SignatureEncoding,
    SignatureFormat,
    TriggerType,
    WebhookOptions,
    WebhookVerify,
)
from reflow.domain.webhooks import check_signature, signed_bytes, trigger_payload
from reflow.errors import (
    DefinitionInvalid,
    InvalidRequest,
    SettingsError,
    Unauthorized,
    UnsupportedMediaType,
)
from reflow.services.workflows import definition_from_document
from reflow.settings import load_settings

SECRET = "whsec_unit"
BODY = b'{"id": "evt_1", "note": "{timestamp} {body} stay as sent"}'
NOW = 1_767_225_600.0


def digest(payload: bytes, secret: str = SECRET) -> bytes:
    return hmac.new(secret.encode(), payload, hashlib.sha256).digest()


def check(verify: WebhookVerify, headers: dict[str, str], body: bytes = BODY,
          now: float = NOW) -> None:
    check_signature(verify, SECRET, body, {k.lower(): v for k, v in headers.items()}, now)


# -- signatures ----------------------------------------------------------------------------

GITHUB = WebhookVerify("X-Hub-Signature-256", "s", prefix="sha256=")
STRIPE = WebhookVerify("Stripe-Signature", "s", SignatureFormat.STRIPE,
                       signed="{timestamp}.{body}")
SLACK = WebhookVerify("X-Slack-Signature", "s", prefix="v0=",
                      timestamp_header="X-Slack-Request-Timestamp",
                      signed="v0:{timestamp}:{body}")


def test_github_signature_is_the_hex_hmac_of_the_raw_body_after_its_prefix() -> None:
    check(GITHUB, {"X-Hub-Signature-256": "sha256=" + digest(BODY).hex()})
    # Hex digits in either case are the same digest.
    check(GITHUB, {"X-Hub-Signature-256": "sha256=" + digest(BODY).hex().upper()})
    with pytest.raises(Unauthorized, match="invalid signature"):
        check(GITHUB, {"X-Hub-Signature-256": "sha256=" + digest(BODY[:-1]).hex()})


def test_stripe_signature_signs_the_time_and_the_body_and_any_v1_may_match() -> None:
    at = int(NOW) - 10
    good = digest(f"{at}.".encode() + BODY).hex()
    check(STRIPE, {"Stripe-Signature": f"t={at},v1={'ab' * 32},v0=zz,v1={good}"})
    with pytest.raises(Unauthorized, match="invalid signature"):
        check(STRIPE, {"Stripe-Signature": f"t={at + 1},v1={good}"})


def test_stripe_signature_outside_the_tolerance_is_stale_either_way() -> None:
    for at in (int(NOW) - 301, int(NOW) + 301):
        signature = digest(f"{at}.".encode() + BODY).hex()
        with pytest.raises(Unauthorized, match="stale signature"):
            check(STRIPE, {"Stripe-Signature": f"t={at},v1={signature}"})


@pytest.mark.parametrize("header", ["v1=abc", "t=123", "t=,v1=", "garbage"])
def test_a_malformed_stripe_header_is_refused(header: str) -> None:
    with pytest.raises(Unauthorized):
        check(STRIPE, {"Stripe-Signature": header})


def test_slack_signature_reads_its_time_from_its_own_header() -> None:
    at = str(int(NOW))
    signature = "v0=" + digest(f"v0:{at}:".encode() + BODY).hex()
    check(SLACK, {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": at})
    with pytest.raises(Unauthorized, match="missing X-Slack-Request-Timestamp"):
        check(SLACK, {"X-Slack-Signature": signature})
    with pytest.raises(Unauthorized, match="unix seconds"):
        check(SLACK, {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": "soon"})


def test_base64_signatures_decode_strictly() -> None:
    shopify = WebhookVerify("X-Shopify-Hmac-Sha256", "s", encoding=SignatureEncoding.BASE64)
    check(shopify, {"X-Shopify-Hmac-Sha256": base64.b64encode(digest(BODY)).decode()})
    with pytest.raises(Unauthorized, match="invalid signature"):
        check(shopify, {"X-Shopify-Hmac-Sha256": digest(BODY).hex()})


def test_a_missing_signature_header_says_which() -> None:
    with pytest.raises(Unauthorized, match="missing X-Hub-Signature-256 header"):
        check(GITHUB, {})


def test_signed_bytes_put_the_raw_body_in_place_without_reading_it() -> None:
    assert signed_bytes("{timestamp}.{body}!", b"{timestamp}", "12") == b"12.{timestamp}!"


# -- the trigger ---------------------------------------------------------------------------


def test_trigger_payload_groups_repeated_query_and_headers_and_drops_credentials() -> None:
    payload = trigger_payload(
        b'{"a": 1}', "application/json; charset=utf-8",
        [("X-Tag", "one"), ("x-tag", "two"), ("Authorization", "bearer k"), ("Host", "h")],
        [("q", "1"), ("q", "2"), ("r", "")],
    )
    assert payload == {"data": {"a": 1}, "query": {"q": ["1", "2"], "r": ""},
                       "headers": {"x-tag": "one, two"}}


def test_trigger_payload_reads_json_suffix_types_and_forms() -> None:
    assert trigger_payload(b'[1]', "application/cloudevents+json", [], [])["data"] == [1]
    form = trigger_payload(b"a=1&b=x+y&a=2", "application/x-www-form-urlencoded", [], [])
    assert form["data"] == {"a": ["1", "2"], "b": "x y"}


@pytest.mark.parametrize(("body", "content_type", "error"), [
    (b"<x/>", "application/xml", UnsupportedMediaType),
    (b"plain", None, UnsupportedMediaType),
    (b"{", "application/json", InvalidRequest),
    (b"a=\xff", "application/x-www-form-urlencoded", InvalidRequest),
])
def test_trigger_payload_refuses_what_it_cannot_read(
    body: bytes, content_type: str | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        trigger_payload(body, content_type, [], [])


# -- definitions ---------------------------------------------------------------------------


def webhook_definition(**trigger: Any) -> dict[str, Any]:
    return {"name": "hook", "trigger": {"type": "webhook", **trigger},
            "blocks": [{"id": "done", "type": "respond", "with": {"body": 1}}]}


def problems(**trigger: Any) -> dict[str, str]:
    with pytest.raises(DefinitionInvalid) as caught:
        definition_from_document(webhook_definition(**trigger))
    return {p.path: p.reason for p in caught.value.problems}


def test_a_webhook_trigger_reads_respond_verify_and_dedupe() -> None:
    trigger = definition_from_document(webhook_definition(
        respond={"timeout": "10s"},
        verify={"header": "Stripe-Signature", "secret": "{{ env.stripeSecret }}",
                "format": "stripe", "tolerance": "2m"},
        dedupe={"header": "X-Delivery"},
    )).trigger
    assert trigger.type is TriggerType.WEBHOOK
    assert trigger.webhook == WebhookOptions(
        respond=True, respond_wait=10.0,
        verify=WebhookVerify("Stripe-Signature", "stripeSecret", SignatureFormat.STRIPE,
                             signed="{timestamp}.{body}", tolerance=120.0),
        dedupe_header="X-Delivery")
    plain = definition_from_document(webhook_definition()).trigger.webhook
    assert plain == WebhookOptions()


def test_webhook_options_on_another_trigger_type_are_refused() -> None:
    with pytest.raises(DefinitionInvalid) as caught:
        definition_from_document({**webhook_definition(), "trigger": {
            "type": "api", "respond": True, "dedupe": {"header": "X-Id"}}})
    assert {p.path for p in caught.value.problems} == {"trigger.respond", "trigger.dedupe"}


def test_invalid_verify_options_are_each_named() -> None:
    found = problems(verify={"header": "Bad Header", "secret": "sk_live_123-x",
                             "encoding": "hexa", "signed": "{body}{body}",
                             "tolerance": "1m", "extra": 1})
    assert set(found) == {"trigger.verify.header", "trigger.verify.secret",
                          "trigger.verify.encoding", "trigger.verify.signed",
                          "trigger.verify.tolerance", "trigger.verify.extra"}
    assert "never goes in a definition" in found["trigger.verify.secret"]


def test_stripe_format_takes_no_prefix_or_timestamp_header() -> None:
    found = problems(verify={"header": "Stripe-Signature", "secret": "s", "format": "stripe",
                             "prefix": "x", "timestampHeader": "X-Time"})
    assert set(found) == {"trigger.verify.prefix", "trigger.verify.timestampHeader"}


def test_a_timestamp_placeholder_needs_a_timestamp() -> None:
    found = problems(verify={"header": "X-Sig", "secret": "s",
                             "signed": "{timestamp}.{body}"})
    assert found == {"trigger.verify.signed":
                     "{timestamp} needs timestampHeader or format 'stripe'"}


def test_respond_timeout_is_bounded_and_dedupe_needs_its_header() -> None:
    found = problems(respond={"timeout": "10m"}, dedupe={})
    assert set(found) == {"trigger.respond.timeout", "trigger.dedupe.header"}


# -- the public URL ------------------------------------------------------------------------


def test_public_url_is_the_serve_address_unless_set_and_is_checked() -> None:
    assert load_settings(host="0.0.0.0", port=9000).public_base_url == "http://0.0.0.0:9000"
    assert load_settings(public_url="https://example.com/reflow/").public_base_url == (
        "https://example.com/reflow")
    for bad in ("ftp://example.com", "example.com", "https://example.com/?a=1"):
        with pytest.raises(SettingsError, match="REFLOW_PUBLIC_URL"):
            load_settings(public_url=bad)
