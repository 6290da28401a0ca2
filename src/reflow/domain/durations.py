"""Durations as people write them in definitions: ``10``, ``500ms``, ``1.5s``, ``1h30m``."""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
# "ms" must be tried before "m" and "s", or "500ms" would read as 500 minutes then junk.
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|d|h|m|s)")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_HINT = "use a number of seconds or a text such as 500ms, 10s, 2m, 1h30m or 7d"


def parse_duration(value: str | int | float) -> float:
    """Return ``value`` in seconds; numbers are seconds; raise ValueError saying why not."""
    if isinstance(value, bool):
        raise ValueError(f"{value} is not a duration; {_HINT}")
    if isinstance(value, int | float):
        return _from_number(value)
    if isinstance(value, str):
        return _from_text(value)
    raise ValueError(f"a {type(value).__name__} is not a duration; {_HINT}")


def _from_number(value: int | float) -> float:
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError(f"{value} seconds is too large a duration") from None
    if not math.isfinite(seconds):
        raise ValueError(f"{value} is not a duration; it must be a finite number")
    if seconds < 0:
        raise ValueError(f"{value}: a duration must not be negative")
    return seconds


def _from_text(value: str) -> float:
    text = value.strip()
    if not text:
        raise ValueError(f"an empty text is not a duration; {_HINT}")
    if text.startswith("-"):
        raise ValueError(f"'{value}': a duration must not be negative")
    if _NUMBER.fullmatch(text):
        raise ValueError(f"'{value}' has no unit; write '{text}s' for seconds")
    seconds = 0.0
    position = 0
    previous_unit = math.inf
    while position < len(text):
        match = _PART.match(text, position)
        if match is None:
            raise ValueError(f"'{value}' is not a duration; {_HINT}")
        unit = _UNIT_SECONDS[match.group(2)]
        # Descending units only, so "1m1h" or "1s1s" (almost surely typos) are refused.
        if unit >= previous_unit:
            raise ValueError(f"'{value}': units must go from largest to smallest, each once")
        seconds += float(match.group(1)) * unit
        previous_unit = unit
        position = match.end()
    return _from_number(seconds)
