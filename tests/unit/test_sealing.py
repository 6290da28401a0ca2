"""Sealing a trigger's secret fields: round trip, rotation, removed keys, the logs' view."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet

from reflow.blocks.redaction import SECRET_MARK
from reflow.sealing import SealError, keyring, open_trigger, redacted, seal

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
TRIGGER: dict[str, Any] = {"data": {
    "label": "order 7",
    "password": "hunter2",
    "nested": {"apiKey": "abc123xyz", "note": "plain"},
    "items": [{"token": {"value": "t-1", "pin": 4321}}],
    "callback": "https://example.com/cb?signature=s1gn4ture&id=7",
    "echo": "my password is hunter2",
}}
SECRETS = ("hunter2", "abc123xyz", "t-1", "4321", "s1gn4ture")


def test_sealed_trigger_holds_no_secret_and_opens_to_exactly_what_was_sent() -> None:
    stored = seal(TRIGGER, keyring(NEW))
    assert not [s for s in SECRETS if s.encode() in stored]
    assert open_trigger(stored, keyring(NEW)) == TRIGGER
    assert list(open_trigger(stored, keyring(NEW))["data"]) == list(TRIGGER["data"])


def test_only_the_secret_parts_are_sealed_the_rest_stays_readable() -> None:
    data = orjson.loads(seal(TRIGGER, keyring(NEW)))["data"]
    assert data["label"] == "order 7" and data["nested"]["note"] == "plain"
    assert set(data["password"]) == {"$sealed"} and set(data["echo"]) == {"$sealed"}


def test_a_trigger_without_secrets_is_plain_json_and_needs_no_key() -> None:
    trigger = {"data": {"label": "abc", "values": [1, 2, 3]}}
    stored = seal(trigger, None)
    assert stored == orjson.dumps(trigger)
    assert open_trigger(stored, None) == trigger


def test_sealing_secrets_without_a_key_is_refused_rather_than_stored_in_the_clear() -> None:
    with pytest.raises(SealError, match="REFLOW_SECRET_KEY is not set"):
        seal(TRIGGER, None)


def test_a_sent_value_shaped_like_a_seal_marker_round_trips_unchanged() -> None:
    trigger = {"data": {"x": {"$sealed": "not a token"}, "password": {"$sealed": "y"}}}
    assert open_trigger(seal(trigger, keyring(NEW)), keyring(NEW)) == trigger


def test_rotation_seals_with_the_newest_key_and_opens_with_any_listed_key() -> None:
    by_old = seal(TRIGGER, keyring(OLD))
    by_both = seal(TRIGGER, keyring(f"{NEW},{OLD}"))
    assert open_trigger(by_old, keyring(f"{NEW}, {OLD}")) == TRIGGER
    assert open_trigger(by_both, keyring(NEW)) == TRIGGER  # sealed with the first one


def test_a_payload_sealed_with_a_removed_key_gives_a_409_naming_the_cause() -> None:
    stored = seal(TRIGGER, keyring(OLD))
    with pytest.raises(SealError, match="no longer in REFLOW_SECRET_KEY") as caught:
        open_trigger(stored, keyring(NEW))
    assert caught.value.status == 409


def test_opening_a_sealed_payload_without_any_key_says_the_key_is_not_set() -> None:
    with pytest.raises(SealError, match="REFLOW_SECRET_KEY is not set"):
        open_trigger(seal(TRIGGER, keyring(NEW)), None)


@pytest.mark.parametrize("text", ["", " , ", "short", f"{NEW},not-a-key"])
def test_a_malformed_key_list_is_refused_without_echoing_the_key(text: str) -> None:
    with pytest.raises(ValueError, match="key") as caught:
        keyring(text)
    assert "not-a-key" not in str(caught.value)


def test_the_logs_view_shows_sealed_parts_redacted_and_the_rest_as_sent() -> None:
    shown = orjson.loads(redacted(seal(TRIGGER, keyring(NEW))))
    assert shown == {"data": {
        "label": "order 7",
        "password": SECRET_MARK,
        "nested": {"apiKey": SECRET_MARK, "note": "plain"},
        "items": [{"token": SECRET_MARK}],
        "callback": SECRET_MARK,
        "echo": SECRET_MARK,
    }}


def test_the_logs_view_redacts_a_trigger_stored_in_the_clear_before_sealing_existed() -> None:
    old_row = orjson.dumps({"data": {"password": "hunter2", "label": "x"}})
    assert orjson.loads(redacted(old_row)) == {"data": {"password": SECRET_MARK, "label": "x"}}


def test_the_logs_view_of_a_clean_trigger_is_the_stored_bytes_themselves() -> None:
    raw = b'{"data":{"b":1,"a":2}}'
    assert redacted(raw) is raw
