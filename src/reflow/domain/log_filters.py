"""The query of ``GET /logs`` (the reference's L3): its ``filters`` JSON and its page,
parsed and checked with every problem named by path. Pure: no I/O.

A filter is ``{"columns": {"value": C}, "operators": {"value": O}, "userinput": {"value":
V}, "condition": {"value": "and" | "or"}}``. Each filter's condition joins it to the one
before it (the first one's is ignored), and ``and`` binds tighter than ``or``, as in SQL:
``a, or b, and c`` means ``a OR (b AND c)``. ``any_of`` gives that as OR-groups of
AND-ed filters.

``message`` is not stored: it is named after the execution's status (``MESSAGES``), so a
message filter becomes the set of statuses whose message passes it.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import orjson

from reflow.domain.executions import ExecutionStatus
from reflow.errors import InvalidRequest, Problem
from reflow.ids import execution_id_time_ms

_E = TypeVar("_E", bound=StrEnum)

# At most this many filters in one query (each is a clause of the WHERE).
MAX_FILTERS = 20
# The longest text a filter's value may hold.
MAX_VALUE_LENGTH = 200
# The default and the largest page.
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
# skip + limit may not pass this (deeper pages: narrow with a createdAt filter), and
# totalItems counts up to it: both keep a page's cost bounded at any table size.
MAX_WINDOW = 10_000
COUNT_CAP = MAX_WINDOW


class Column(StrEnum):
    """The columns a filter may name (the reference's list)."""

    MESSAGE = "message"
    EXECUTION_ID = "data.executionId"
    WORKFLOW = "forgeWorkflowId"
    CREATED_AT = "createdAt"
    USER = "userId"
    INTEGRATION = "forgeWorkflow.integrationId._id"
    VERSION = "workflowVersion"


class Operator(StrEnum):
    """The operators a filter may use (the reference's list)."""

    EQUALS = "equals"
    NOT_EQUALS = "notequals"
    GREATER_THAN = "greaterthan"
    LESS_THAN = "lessthan"
    CONTAINS = "contains"
    NOT_CONTAINS = "notcontains"


class Join(StrEnum):
    """How a filter joins the one before it."""

    AND = "and"
    OR = "or"


class SortBy(StrEnum):
    """What a page is ordered by (then by createdAt, then by execution id)."""

    CREATED_AT = "createdAt"
    COMPLETED_AT = "completedAt"
    MESSAGE = "message"
    USER = "userId"


_ALL = frozenset(Operator)
_COMPARED = frozenset({Operator.EQUALS, Operator.NOT_EQUALS, Operator.GREATER_THAN,
                       Operator.LESS_THAN})
_MATCHED = frozenset({Operator.EQUALS, Operator.NOT_EQUALS, Operator.CONTAINS,
                      Operator.NOT_CONTAINS})
# Which operators each column takes, and why a column refuses the others.
OPERATORS: dict[Column, frozenset[Operator]] = {
    Column.MESSAGE: _ALL,
    # Execution ids are time-ordered, so greaterthan means "created after that one"; an
    # id is matched whole (a substring of one would need a scan of every execution).
    Column.EXECUTION_ID: _COMPARED,
    # Ids of users, workflows and integrations have no useful order; contains matches
    # their names (and ids) as text.
    Column.WORKFLOW: _MATCHED,
    Column.USER: _MATCHED,
    Column.INTEGRATION: _MATCHED,
    Column.CREATED_AT: _COMPARED,
    Column.VERSION: _COMPARED,
}
_REFUSED_WHY: dict[Column, str] = {
    Column.EXECUTION_ID: "an execution id is matched whole or compared (ids are "
                         "time-ordered)",
    Column.WORKFLOW: "workflows have no order; contains matches their id or name",
    Column.USER: "users have no order; contains matches their id, username or full name",
    Column.INTEGRATION: "integrations have no order; contains matches their id or name",
    Column.CREATED_AT: "a time is compared, not matched as text",
    Column.VERSION: "a version is a number",
}

# An execution's ``message``: named after its status (the reference shows executionError
# for a failed one). The names sort as their statuses do, so ordering by message is
# ordering by status, which an index serves.
MESSAGES: dict[ExecutionStatus, str] = {
    ExecutionStatus.CANCELLED: "executionCancelled",
    ExecutionStatus.FAILED: "executionError",
    ExecutionStatus.QUEUED: "executionQueued",
    ExecutionStatus.RUNNING: "executionRunning",
    ExecutionStatus.SUCCEEDED: "executionSuccess",
    ExecutionStatus.WAITING: "executionWaiting",
}


def message_of(status: ExecutionStatus) -> str:
    """The ``message`` of an execution with this status."""
    return MESSAGES[status]


@dataclass(frozen=True, slots=True)
class TimeSpan:
    """The instants a written time stands for, at the precision written: ``[start, end)``
    in ms since the epoch (``2025-04-29`` is that whole day, ``...T17:44`` that minute)."""

    start: int
    end: int


FilterValue = str | int | TimeSpan | frozenset[ExecutionStatus]


@dataclass(frozen=True, slots=True)
class Filter:
    """One checked filter. ``value`` is, by column: the statuses whose message passes
    (message, any operator); a TimeSpan (createdAt); an int (workflowVersion); the text
    given (ids, and contains on users, workflows and integrations)."""

    index: int
    column: Column
    operator: Operator
    value: FilterValue
    join: Join = Join.AND


class FiltersInvalid(InvalidRequest):
    """``filters`` could not be used; ``problems`` names each by path
    (``filters[1].userinput.value``)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid filters: " + "; ".join(str(p) for p in self.problems))


def any_of(filters: Sequence[Filter]) -> list[list[Filter]]:
    """The filters as OR-groups of AND-ed filters (``and`` binds tighter than ``or``);
    no filter at all is one empty group (everything passes)."""
    groups: list[list[Filter]] = [[]]
    for position, item in enumerate(filters):
        if position > 0 and item.join is Join.OR:
            groups.append([])
        groups[-1].append(item)
    return groups


def parse_filters(text: str | None) -> list[Filter]:
    """The ``filters`` query parameter (JSON text; empty or absent is none), checked.

    Raises FiltersInvalid naming every problem: malformed JSON, a filter that is not an
    object, an unknown column, operator or condition, an operator the column does not
    take, or a value of the wrong kind for the column.
    """
    if text is None or not text.strip():
        return []
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FiltersInvalid([Problem("filters", f"not valid JSON ({exc})")]) from None
    if isinstance(document, dict):
        document = [document]  # one filter sent alone
    if not isinstance(document, list):
        raise FiltersInvalid([Problem("filters", "must be a JSON array of filters, not a "
                                                 f"{_kind(document)}")])
    if len(document) > MAX_FILTERS:
        raise FiltersInvalid([Problem("filters", f"at most {MAX_FILTERS} filters, not "
                                                 f"{len(document)}")])
    problems: list[Problem] = []
    filters = []
    for index, item in enumerate(document):
        parsed = _parse_one(index, item, problems)
        if parsed is not None:
            filters.append(parsed)
    if problems:
        raise FiltersInvalid(problems)
    return filters


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number"}.get(type(value), type(value).__name__)


_MISSING = object()


def _field(item: dict[str, Any], where: str, key: str, problems: list[Problem],
           required: bool = True) -> Any:
    """``item[key]["value"]``, or _MISSING after noting why it is missing or malformed."""
    if key not in item:
        if required:
            problems.append(Problem(f"{where}.{key}", 'required: {"value": ...}'))
        return _MISSING
    holder = item[key]
    if not isinstance(holder, dict) or "value" not in holder:
        problems.append(Problem(f"{where}.{key}", 'must be an object {"value": ...}, not '
                                                  f"{orjson.dumps(holder).decode()[:60]}"))
        return _MISSING
    return holder["value"]


def _choice(enum: type[_E], value: Any, path: str, problems: list[Problem],
            what: str) -> _E | None:
    if value is _MISSING:
        return None
    if isinstance(value, str) and value in enum._value2member_map_:
        return enum(value)
    shown = orjson.dumps(value).decode()[:60]
    problems.append(Problem(path, f"{shown} is not {what}; use one of "
                                  + ", ".join(m.value for m in enum)))
    return None


def _parse_one(index: int, item: Any, problems: list[Problem]) -> Filter | None:
    where = f"filters[{index}]"
    if not isinstance(item, dict):
        problems.append(Problem(where, f"must be an object, not a {_kind(item)}"))
        return None
    before = len(problems)
    raw_column = _field(item, where, "columns", problems)
    raw_operator = _field(item, where, "operators", problems)
    raw_value = _field(item, where, "userinput", problems)
    raw_join = _field(item, where, "condition", problems, required=False)
    if raw_join is None or raw_join == "":
        raw_join = _MISSING  # a first filter's condition is often left empty
    column = _choice(Column, raw_column, f"{where}.columns.value", problems, "a column")
    operator = _choice(Operator, raw_operator, f"{where}.operators.value", problems,
                       "an operator")
    join = _choice(Join, raw_join, f"{where}.condition.value", problems, "a condition")
    if column is None or operator is None or len(problems) > before:
        return None
    if operator not in OPERATORS[column]:
        allowed = ", ".join(o.value for o in Operator if o in OPERATORS[column])
        problems.append(Problem(f"{where}.operators.value",
                                f"{column.value} does not take {operator.value} "
                                f"({_REFUSED_WHY[column]}); use {allowed}"))
        return None
    value = _VALUE_PARSERS[column](operator, raw_value, f"{where}.userinput.value", problems)
    if value is None:
        return None
    return Filter(index, column, operator, value, join or Join.AND)


# -- values, by column ----------------------------------------------------------------------

def _text(raw: Any, path: str, problems: list[Problem]) -> str | None:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        problems.append(Problem(path, f"must be a string, not a {_kind(raw)}"))
        return None
    if not raw or len(raw) > MAX_VALUE_LENGTH or "\x00" in raw:
        problems.append(Problem(path, f"must be 1 to {MAX_VALUE_LENGTH} characters "
                                      "(no NUL)"))
        return None
    return raw


def _message_statuses(operator: Operator, raw: Any, path: str,
                      problems: list[Problem]) -> frozenset[ExecutionStatus] | None:
    text = _text(raw, path, problems)
    if text is None:
        return None
    if operator in (Operator.EQUALS, Operator.NOT_EQUALS) and text not in MESSAGES.values():
        problems.append(Problem(path, f"{text!r} is not a message; messages are "
                                      + ", ".join(MESSAGES.values())))
        return None
    needle = text.lower()
    tests: dict[Operator, Callable[[str], bool]] = {
        Operator.EQUALS: lambda m: m == text,
        Operator.NOT_EQUALS: lambda m: m != text,
        Operator.GREATER_THAN: lambda m: m > text,
        Operator.LESS_THAN: lambda m: m < text,
        Operator.CONTAINS: lambda m: needle in m.lower(),
        Operator.NOT_CONTAINS: lambda m: needle not in m.lower(),
    }
    return frozenset(s for s, m in MESSAGES.items() if tests[operator](m))


def _id_text(_: Operator, raw: Any, path: str, problems: list[Problem]) -> str | None:
    return _text(raw, path, problems)


def _execution_id(operator: Operator, raw: Any, path: str,
                  problems: list[Problem]) -> str | None:
    text = _text(raw, path, problems)
    if text is not None and operator in (Operator.GREATER_THAN, Operator.LESS_THAN) and (
            execution_id_time_ms(text) is None):
        problems.append(Problem(path, f"{text[:60]!r} is not an execution id (21 letters "
                                      "and digits): only those compare by creation time"))
        return None
    return text


def _version(_: Operator, raw: Any, path: str, problems: list[Problem]) -> int | None:
    if isinstance(raw, str) and re.fullmatch(r"\s*-?\d{1,9}\s*", raw):
        return int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) < 10**9:
        return raw
    problems.append(Problem(path, "workflowVersion takes a whole number, not "
                                  f"{orjson.dumps(raw).decode()[:60]}"))
    return None


_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<zone>[Zz]|[+-]\d{2}:?\d{2})?)?"
)
_DAY_MS = 86_400_000
# The latest time a filter may name (the year 9999 ends).
_MAX_MS = 253_402_300_800_000
_TIME_HINT = ("an ISO 8601 date or time (2025-04-29, 2025-04-29T17:44:10.336Z, "
              "2025-04-29T19:44+02:00) or milliseconds since 1970")


def parse_time(raw: Any) -> TimeSpan:
    """A written time as the span it stands for; ValueError saying why it is not one.

    A date is its whole day (UTC), a time to the minute that minute, and so on down to
    the millisecond; a time without an offset is UTC; a number (or digits) is
    milliseconds since the epoch.
    """
    if isinstance(raw, int) and not isinstance(raw, bool):
        ms = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        ms = int(raw.strip())
    elif isinstance(raw, str):
        return _parse_written_time(raw.strip())
    else:
        raise ValueError(f"createdAt takes {_TIME_HINT}, not a {_kind(raw)}")
    if not 0 <= ms < _MAX_MS:
        raise ValueError(f"{ms} is out of range (0 to {_MAX_MS - 1} ms)")
    return TimeSpan(ms, ms + 1)


def _parse_written_time(text: str) -> TimeSpan:
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text[:60]!r} is not {_TIME_HINT}")
    parts = match.groupdict()
    zone = parts["zone"]
    try:
        date = datetime.date.fromisoformat(parts["date"])
        moment = datetime.datetime(
            date.year, date.month, date.day, int(parts["hour"] or 0),
            int(parts["minute"] or 0), int(parts["second"] or 0),
            tzinfo=_offset(zone),
        )
    except ValueError as exc:
        raise ValueError(f"{text[:60]!r} is not a valid time: {exc}") from None
    fraction = parts["fraction"] or ""
    start = int(moment.timestamp()) * 1000 + int((fraction + "000")[:3])
    if parts["hour"] is None:
        unit = _DAY_MS
    elif parts["second"] is None:
        unit = 60_000
    elif not fraction:
        unit = 1000
    else:
        unit = 10 ** (3 - min(len(fraction), 3))
    if not 0 <= start < _MAX_MS:
        raise ValueError(f"{text[:60]!r} is before 1970")
    return TimeSpan(start, start + unit)


def _offset(zone: str | None) -> datetime.tzinfo:
    if zone is None or zone in "Zz":
        return datetime.UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset {zone} is out of range")
    return datetime.timezone(sign * datetime.timedelta(hours=hours, minutes=minutes))


def _created_at(_: Operator, raw: Any, path: str, problems: list[Problem]) -> TimeSpan | None:
    try:
        return parse_time(raw)
    except ValueError as exc:
        problems.append(Problem(path, str(exc)))
        return None


_VALUE_PARSERS: dict[Column, Callable[[Operator, Any, str, list[Problem]],
                                      FilterValue | None]] = {
    Column.MESSAGE: _message_statuses,
    Column.EXECUTION_ID: _execution_id,
    Column.WORKFLOW: _id_text,
    Column.USER: _id_text,
    Column.INTEGRATION: _id_text,
    Column.CREATED_AT: _created_at,
    Column.VERSION: _version,
}


# -- the page -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SearchPage:
    """Which page of the search: ``skip`` items passed over, ``limit`` shown, in order."""

    skip: int = 0
    limit: int = DEFAULT_LIMIT
    sort_by: SortBy = SortBy.CREATED_AT
    descending: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit: must be between 1 and {MAX_LIMIT}, got {self.limit}")
        if self.skip < 0:
            raise InvalidRequest(f"skip: must not be negative, got {self.skip}")
        if self.skip + self.limit > MAX_WINDOW:
            raise InvalidRequest(
                f"skip: skip + limit may not pass {MAX_WINDOW:,} (got {self.skip + self.limit:,});"
                " narrow the search with a createdAt filter to reach older logs")

    @property
    def current_page(self) -> int:
        """The 1-based page this is, counted in pages of ``limit``."""
        return self.skip // self.limit + 1
