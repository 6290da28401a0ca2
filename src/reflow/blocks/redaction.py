"""Redaction of secrets from step inputs and outputs before they are written.

Three rules, applied together at any depth: the value under a secret-looking key is
replaced; a secret-looking query parameter (``?token=...``) or URL password
(``https://user:pw@host``) inside any string is replaced; and any known secret value
(the run's secrets, e.g. the trigger's secret fields) is replaced wherever it appears.

It runs on every step recorded, so the common case (nothing to hide) returns the value
itself without copying, and key checks are cached instead of matched with a regex.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from functools import lru_cache
from itertools import islice
from typing import Any

import orjson

SECRET_MARK = "[redacted]"

_SECRET_KEYS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_KEY_PARTS = ("token", "secret", "password", "passwd", "api_key", "apikey", "api-key")
# Query parameters that carry credentials although, as JSON keys, the names are too common
# to hide (`{"key": "orders"}` is data; `?key=...` is an API key).
_SECRET_PARAMS = frozenset({"key", "sig", "signature", "auth", "pwd", "pass", "code_verifier"})
_SECRET_PARAM_SUFFIXES = ("_key", "-key", "signature")
# `name=value` at the start of a string or after `?`/`&` (a URL's query, a form body), and
# the password of a URL's `user:password@`.
_CREDENTIAL_IN_TEXT = re.compile(
    r"(?P<lead>(?:^|[?&])(?P<name>[^=&#\s?]+)=)(?P<value>[^&#\s\"'<>]*)"
    r"|(?P<user>://[^/\s:@?#]+:)(?P<password>[^/\s@?#]+)@"
)
# Every secret-looking key or parameter name holds one of these: a text holding none is
# skipped with substring tests (a case-insensitive regex search costs ~20x more).
_SECRET_PARAM_HINTS = ("token", "secret", "pass", "key", "sig", "auth", "pwd", "cookie",
                       "code_verifier")
_SECRET_PARAM_HINT_BYTES = tuple(hint.encode() for hint in _SECRET_PARAM_HINTS)
# Shorter values match too much ordinary text to be worth hiding.
MIN_SECRET_LENGTH = 4


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (``Authorization``, ``x-api-key``, ``password``)."""
    lowered = key.lower()
    return lowered in _SECRET_KEYS or any(part in lowered for part in _SECRET_KEY_PARTS)


@lru_cache(maxsize=1024)
def is_secret_param(name: str) -> bool:
    """Whether a URL query parameter names a credential (``token``, ``key``, ``sig``...)."""
    lowered = name.lower()
    return (is_secret_key(lowered) or lowered in _SECRET_PARAMS
            or lowered.endswith(_SECRET_PARAM_SUFFIXES))


def _hide_credential(match: re.Match[str]) -> str:
    if match["user"] is not None:
        return f"{match['user']}{SECRET_MARK}@"
    value = match["value"]
    if not value or value == SECRET_MARK or not is_secret_param(match["name"]):
        return match[0]
    return match["lead"] + SECRET_MARK


def might_hold_secrets(lowered: str | bytes) -> bool:
    """False when a lower-cased text (or JSON) cannot hold a secret-looking key or parameter:
    every such name contains one of a few hints, so a miss needs no parsing."""
    hints = _SECRET_PARAM_HINT_BYTES if isinstance(lowered, bytes) else _SECRET_PARAM_HINTS
    for hint in hints:  # a loop, not any(): no generator on this per-string path
        if hint in lowered:  # type: ignore[operator]  # str in str, bytes in bytes
            return True
    return False


def _hide_credentials(text: str) -> str:
    # Called only for text with a `=` or `@`; most still hold no secret-looking parameter.
    maybe_param = "=" in text and might_hold_secrets(text.lower())
    if not maybe_param and not ("@" in text and "://" in text):
        return text
    hidden = _CREDENTIAL_IN_TEXT.sub(_hide_credential, text)
    return text if hidden == text else hidden


class _Scrubber:
    __slots__ = ("needles", "pattern")

    def __init__(self, needles: tuple[str, ...]) -> None:
        self.needles = needles
        # One alternation, longest first, so a secret that contains another is hidden
        # whole and a replaced mark is never matched again.
        self.pattern = re.compile("|".join(map(re.escape, needles)))

    def scrub(self, text: str) -> str:
        # Substring tests are cheaper than a regex search for the usual clean string.
        if any(needle in text for needle in self.needles):
            return self.pattern.sub(SECRET_MARK, text)
        return text


@lru_cache(maxsize=256)
def _scrubber(needles: tuple[str, ...]) -> _Scrubber:
    return _Scrubber(needles)


def _scrubber_for(secrets: Collection[str]) -> _Scrubber | None:
    needles = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
    if not needles:
        return None
    return _scrubber(tuple(sorted(needles, key=lambda s: (-len(s), s))))


def _redact_item(key: Any, item: Any, scrubber: _Scrubber | None) -> Any:
    if isinstance(key, str) and is_secret_key(key):
        return item if item == SECRET_MARK else SECRET_MARK
    return _walk(item, scrubber)


def _walk_mapping(value: Mapping[Any, Any], scrubber: _Scrubber | None) -> Any:
    copy: dict[Any, Any] | None = None
    for index, (key, item) in enumerate(value.items()):
        new_key = scrubber.scrub(key) if scrubber and isinstance(key, str) else key
        new_item = _redact_item(key, item, scrubber)
        if copy is None and (new_key is not key or new_item is not item):
            # Copy lazily: only the entries before the first change, then everything after.
            copy = dict(islice(value.items(), index))
        if copy is not None:
            copy[new_key] = new_item
    return value if copy is None else copy


def _walk_sequence(value: list[Any] | tuple[Any, ...], scrubber: _Scrubber | None) -> Any:
    copy: list[Any] | None = None
    for index, item in enumerate(value):
        new_item = _walk(item, scrubber)
        if copy is None and new_item is not item:
            copy = list(value[:index])
        if copy is not None:
            copy.append(new_item)
    if copy is None:
        return value
    return tuple(copy) if isinstance(value, tuple) else copy


def _walk(value: Any, scrubber: _Scrubber | None) -> Any:
    if isinstance(value, str):
        if scrubber:
            value = scrubber.scrub(value)
        return _hide_credentials(value) if "=" in value or "@" in value else value
    if isinstance(value, Mapping):
        return _walk_mapping(value, scrubber)
    if isinstance(value, list | tuple):
        return _walk_sequence(value, scrubber)
    return value


def redact(value: Any, secrets: Collection[str] = ()) -> Any:
    """``value`` with secret-named keys, URL credentials and any of ``secrets`` replaced.

    Returns ``value`` itself when there is nothing to redact; otherwise a copy of only the
    containers that changed (unchanged subtrees are shared, never mutated).
    """
    return _walk(value, _scrubber_for(secrets))


def _collect_secrets(value: Any, found: list[str], secret: bool) -> None:
    # A plain recursive walk: it runs for every execution, and generators cost ~2x here.
    if isinstance(value, str):
        if secret:
            found.append(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _collect_secrets(item, found, secret or (isinstance(key, str) and is_secret_key(key)))
    elif isinstance(value, list | tuple):
        for item in value:
            _collect_secrets(item, found, secret)
    elif secret and isinstance(value, int | float) and not isinstance(value, bool):
        found.append(str(value))  # a numeric PIN shows up in text as its digits


def secret_values(value: Any) -> tuple[str, ...]:
    """The text of every value under a secret-looking key of ``value``, at any depth.

    These become a run's known secrets, so they are redacted wherever they reappear (in a
    URL, a header, an error message), not only under their own key.
    """
    try:
        # The usual trigger names nothing secret-looking: one scan of its JSON tells
        # (about 1 us, against 13 us for the walk over a 20-item payload).
        if not might_hold_secrets(orjson.dumps(value).lower()):
            return ()
    except TypeError:
        pass  # not JSON: walk it
    found: list[str] = []
    _collect_secrets(value, found, False)
    return tuple(dict.fromkeys(found)) if found else ()
