"""Id generation. Ids are time-ordered so inserts append to the index, and an execution id
tells when it was created (which is how a purged execution is told from an unknown one)."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_TIME_CHARS = 8
_RANDOM_CHARS = 13
EXECUTION_ID_LENGTH = _TIME_CHARS + _RANDOM_CHARS
_EXECUTION_ID = re.compile(rf"^[0-9A-Za-z]{{{EXECUTION_ID_LENGTH}}}$")
_OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(_ALPHABET[rest])
    return "".join(reversed(chars))


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch: how every timestamp is stored."""
    return time.time_ns() // 1_000_000


def iso_ms(ms: int) -> str:
    """A time in ms since the epoch as ISO 8601 UTC with milliseconds ("...T10:00:00.000Z")."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso_ms(text: str) -> int:
    """ms since the epoch of an ISO 8601 time; one without an offset is UTC (ValueError
    when ``text`` is no such time)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def new_execution_id(now_ms: int | None = None) -> str:
    """A 21-character id (like the reference's), sortable by creation time in ms."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    return _base62(ms, _TIME_CHARS) + _base62(rand, _RANDOM_CHARS)


def execution_id_time_ms(execution_id: str) -> int | None:
    """When an execution id was minted (ms since epoch), or None if it is not one of ours."""
    if not _EXECUTION_ID.fullmatch(execution_id):
        return None
    ms = 0
    for char in execution_id[:_TIME_CHARS]:
        ms = ms * 62 + _INDEX[char]
    return ms


def new_object_id() -> str:
    """A 24-hex id (like the reference's userId): 4 bytes of seconds, 8 random bytes."""
    return f"{int(time.time()):08x}{os.urandom(8).hex()}"


def is_object_id(value: str) -> bool:
    """True when ``value`` has the shape of a 24-hex object id."""
    return bool(_OBJECT_ID.fullmatch(value))
