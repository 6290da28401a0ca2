"""Sealing: what a trigger payload holds that redaction would hide is stored encrypted.

Before a trigger is written, each value redaction would hide (the value under a
secret-looking key, a string with a known secret or a URL credential in it) is replaced,
at any depth, by ``{"$sealed": "<Fernet token of its JSON>"}``. The rest stays plain, so
logs show a trigger without the key (sealed values as ``[redacted]``), and only running
it again (a rerun, a resume) needs the key, which opens it to exactly what was sent.

Keys come from REFLOW_SECRET_KEY: Fernet keys (32 random bytes, URL-safe base64),
comma-separated, newest first. Sealing uses the newest; opening tries each, so an old key
kept in the list still opens what it sealed (docs/security.md, "Rotation").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from reflow.blocks.redaction import (
    SECRET_MARK,
    is_secret_key,
    might_hold_secrets,
    redact,
    secret_values,
)
from reflow.errors import Conflict

SEALED = "$sealed"
_SEALED_JSON = b'"$sealed"'


class SealError(Conflict):
    """A trigger's secret fields cannot be sealed or opened with the configured keys."""


def keyring(text: str) -> MultiFernet:
    """The keys of a REFLOW_SECRET_KEY value (comma-separated, newest first).

    Raises ValueError saying which key is malformed, never echoing it.
    """
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError("no key given (expected Fernet keys, comma-separated)")
    keys = []
    for number, part in enumerate(parts, 1):
        try:
            keys.append(Fernet(part))
        except ValueError:  # binascii.Error included
            raise ValueError(
                f"key {number} of {len(parts)} is not 32 bytes in URL-safe base64 "
                "(make one with: python -c 'import base64,os; "
                "print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"
            ) from None
    return MultiFernet(keys)


def _is_marker(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and SEALED in value


def _seal_value(value: Any, keys: MultiFernet) -> dict[str, str]:
    return {SEALED: keys.encrypt(orjson.dumps(value)).decode()}


def _seal_walk(value: Any, keys: MultiFernet, secrets: tuple[str, ...]) -> Any:
    # A mapping shaped like a marker is sealed too, so opening never mistakes what a
    # caller sent for a marker: every stored marker is one this module wrote.
    if _is_marker(value) or (isinstance(value, str) and redact(value, secrets) is not value):
        return _seal_value(value, keys)
    if isinstance(value, Mapping):
        return {
            key: _seal_value(item, keys) if isinstance(key, str) and is_secret_key(key)
            else _seal_walk(item, keys, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_seal_walk(item, keys, secrets) for item in value]
    return value


def seal(trigger: Any, keys: MultiFernet | None) -> bytes:
    """A trigger's JSON for storage, its secret parts sealed with the newest key.

    A trigger with nothing to hide is stored as plain JSON and needs no key; one with
    secrets and no key configured raises SealError (nothing is stored in the clear).
    """
    encoded = orjson.dumps(trigger)
    # The usual trigger names nothing secret-looking: one scan of its JSON tells.
    if not might_hold_secrets(encoded.lower()) and not (b"@" in encoded and b"://" in encoded):
        return encoded
    secrets = secret_values(trigger)
    if _SEALED_JSON not in encoded and redact(trigger, secrets) is trigger:
        return encoded
    if keys is None:
        raise SealError(
            "this trigger has secret fields and REFLOW_SECRET_KEY is not set, so they "
            "cannot be stored encrypted; set it (`make run` makes one for dev)"
        )
    return orjson.dumps(_seal_walk(trigger, keys, secrets))


def _open_walk(value: Any, keys: MultiFernet) -> Any:
    if _is_marker(value) and isinstance(value[SEALED], str):
        return orjson.loads(keys.decrypt(value[SEALED].encode()))
    if isinstance(value, Mapping):
        return {key: _open_walk(item, keys) for key, item in value.items()}
    if isinstance(value, list):
        return [_open_walk(item, keys) for item in value]
    return value


def open_trigger(raw: bytes, keys: MultiFernet | None) -> Any:
    """A stored trigger as it was sent, its sealed parts decrypted (for a rerun, a resume).

    SealError (a 409) when a part was sealed with a key no longer in REFLOW_SECRET_KEY.
    """
    if _SEALED_JSON not in raw:
        return orjson.loads(raw)
    if keys is None:
        raise SealError(
            "this execution's trigger has encrypted secret fields and REFLOW_SECRET_KEY "
            "is not set; set it to the key that encrypted them to run it again"
        )
    try:
        return _open_walk(orjson.loads(raw), keys)
    except InvalidToken:
        raise SealError(
            "this execution's trigger has secret fields encrypted with a key that is no "
            "longer in REFLOW_SECRET_KEY; add that key back (after the newest) to run it "
            "again, or rerun with new data"
        ) from None


def _mark_walk(value: Any) -> Any:
    if _is_marker(value):
        return SECRET_MARK
    if isinstance(value, Mapping):
        return {key: _mark_walk(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mark_walk(item) for item in value]
    return value


def redacted(raw: bytes) -> bytes:
    """A stored trigger as logs show it: sealed parts, and any secret left plain, hidden.

    Needs no key. A trigger stored before sealing existed is redacted by the same rules.
    """
    value = orjson.loads(raw)
    shown = redact(_mark_walk(value) if _SEALED_JSON in raw else value)
    return raw if shown is value else orjson.dumps(shown)


def newest_key(text: str) -> Fernet:
    """The first (newest) key of a REFLOW_SECRET_KEY value: what everything is sealed with."""
    first = next(part.strip() for part in text.split(",") if part.strip())
    return Fernet(first)


def rotate_token(token: bytes, keys: MultiFernet, newest: Fernet) -> bytes | None:
    """``token`` re-encrypted under the newest key; None when it already is (so a rotation
    that was interrupted resumes without redoing). InvalidToken when no key opens it."""
    try:
        newest.decrypt(token)
    except InvalidToken:
        return keys.rotate(token)
    return None


def _rotate_walk(value: Any, keys: MultiFernet, newest: Fernet, changed: list[bool]) -> Any:
    if _is_marker(value) and isinstance(value[SEALED], str):
        rotated = rotate_token(value[SEALED].encode(), keys, newest)
        if rotated is None:
            return value
        changed.append(True)
        return {SEALED: rotated.decode()}
    if isinstance(value, Mapping):
        return {key: _rotate_walk(item, keys, newest, changed) for key, item in value.items()}
    if isinstance(value, list):
        return [_rotate_walk(item, keys, newest, changed) for item in value]
    return value


def rotate_trigger(raw: bytes, keys: MultiFernet, newest: Fernet) -> bytes | None:
    """A stored trigger with each sealed part re-encrypted under the newest key; None when
    there was nothing to change. InvalidToken when a part opens with no configured key."""
    if _SEALED_JSON not in raw:
        return None
    changed: list[bool] = []
    rotated = _rotate_walk(orjson.loads(raw), keys, newest, changed)
    return orjson.dumps(rotated) if changed else None
