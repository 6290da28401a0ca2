"""The log search (``GET /logs``) as the store sees it, and the composer of its SQL.

A search is the team, scope clauses (AND-ed), and OR-groups of AND-ed clauses. Every
clause is a fragment of the backend's ``log_search.sql`` (``log_search_where_<clause>``):
the composer only joins fragments with AND, OR and parentheses, picks an ORDER BY from a
fixed list, and passes every value as a parameter. No text of a request reaches the SQL.
Fragments are written with ``?``; PostgreSQL's store numbers them (``$1``, ``$2``...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reflow.domain.executions import ExecutionStatus, TriggerMode


class LogClause(StrEnum):
    """Every clause a search can hold; each is a fragment ``log_search_where_<value>``."""

    STATUS_EQ = "status_eq"
    STATUS_IN = "status_in"  # a list of statuses
    ID_EQ = "id_eq"
    ID_NE = "id_ne"
    AFTER_EXECUTION = "after_execution"  # (created_at, id) of an execution: created later
    BEFORE_EXECUTION = "before_execution"
    CREATED_WITHIN = "created_within"  # [start, end)
    CREATED_OUTSIDE = "created_outside"
    CREATED_FROM = "created_from"  # >= start
    CREATED_BEFORE = "created_before"  # < end
    USER_EQ = "user_eq"
    USER_NE = "user_ne"
    USER_IN = "user_in"  # a list of user ids
    USER_NOT_IN = "user_not_in"
    USER_MATCHES = "user_matches"  # id, username or full name contains the (lower) text
    USER_NOT_MATCHES = "user_not_matches"
    WORKFLOW_EQ = "workflow_eq"
    WORKFLOW_NE = "workflow_ne"
    WORKFLOW_MATCHES = "workflow_matches"  # id or name contains the (lower) text
    WORKFLOW_NOT_MATCHES = "workflow_not_matches"
    INSTALLATION_EQ = "installation_eq"
    INTEGRATION_EQ = "integration_eq"  # the workflow's integration, by id or name
    INTEGRATION_NE = "integration_ne"
    INTEGRATION_MATCHES = "integration_matches"  # its id or name contains the (lower) text
    INTEGRATION_NOT_MATCHES = "integration_not_matches"
    VERSION_EQ = "version_eq"
    VERSION_NE = "version_ne"
    VERSION_GT = "version_gt"
    VERSION_LT = "version_lt"


# Clauses whose fragment looks the team's catalogue up: the team id is their first
# parameter (the composer adds it).
_TEAM_SCOPED = frozenset({
    LogClause.USER_MATCHES, LogClause.USER_NOT_MATCHES, LogClause.WORKFLOW_MATCHES,
    LogClause.WORKFLOW_NOT_MATCHES, LogClause.INTEGRATION_EQ, LogClause.INTEGRATION_NE,
    LogClause.INTEGRATION_MATCHES, LogClause.INTEGRATION_NOT_MATCHES,
})
# Clauses whose single value is a list (each backend encodes lists its own way).
_LISTS = frozenset({LogClause.STATUS_IN, LogClause.USER_IN, LogClause.USER_NOT_IN})


@dataclass(frozen=True, slots=True)
class LogPredicate:
    """One clause and its values, in the fragment's parameter order."""

    clause: LogClause
    values: tuple[Any, ...]


class LogOrder(StrEnum):
    """What a page is ordered by; ties go by created_at, then id, in the same direction."""

    CREATED = "created"
    COMPLETED = "completed"  # unfinished ones (no stopped_at) count as completed last
    STATUS = "status"
    USER = "user"


@dataclass(frozen=True, slots=True)
class LogSearch:
    """A page of a team's executions: ``scope`` AND (any of ``groups``)."""

    team_id: str
    scope: tuple[LogPredicate, ...] = ()
    # OR-groups of AND-ed clauses; one empty group (the default) lets everything pass.
    groups: tuple[tuple[LogPredicate, ...], ...] = ((),)
    order: LogOrder = LogOrder.CREATED
    descending: bool = True
    offset: int = 0
    limit: int = 10
    count_cap: int = 10_000


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One execution as the search shows it, with its user's and workflow's names."""

    id: str
    workflow_id: str
    installation_id: str
    user_id: str
    version: int
    status: ExecutionStatus
    mode: TriggerMode
    created_at: int
    started_at: int | None
    stopped_at: int | None
    username: str | None
    full_name: str | None
    workflow_name: str | None
    integration_id: str | None
    integration_name: str | None
    integration_icon: str | None


@dataclass(frozen=True, slots=True)
class LogPage:
    """The entries of a page, and how many executions match, counted up to the cap
    (``total`` equals the cap when at least that many match)."""

    entries: list[LogEntry] = field(default_factory=list)
    total: int = 0


def entry_of(row: Any) -> LogEntry:
    """A page row (read by column name) as a LogEntry."""
    return LogEntry(
        id=row["id"], workflow_id=row["workflow_id"], installation_id=row["installation_id"],
        user_id=row["user_id"], version=row["version"], status=ExecutionStatus(row["status"]),
        mode=TriggerMode(row["mode"]), created_at=row["created_at"],
        started_at=row["started_at"], stopped_at=row["stopped_at"], username=row["username"],
        full_name=row["full_name"], workflow_name=row["workflow_name"],
        integration_id=row["integration_id"], integration_name=row["integration_name"],
        integration_icon=row["integration_icon"],
    )


_ORDER_KEYS: dict[LogOrder, tuple[str, ...]] = {
    LogOrder.CREATED: ("e.created_at", "e.id"),
    LogOrder.STATUS: ("e.status", "e.created_at", "e.id"),
    LogOrder.USER: ("e.user_id", "e.created_at", "e.id"),
}


@dataclass(frozen=True, slots=True)
class ComposedSql:
    """One statement and its parameters, in order."""

    sql: str
    params: list[Any]


# Which index should lead a search with an equality on these columns (AND-ed with the rest),
# in this order of preference: a user's or an installation's executions are few; a single
# status (failures, typically) fewer than a workflow's; the index then checks the other
# filters from its own trailing columns.
_LEADS = (
    (LogClause.USER_EQ, "ix_executions_team_user"),
    (LogClause.USER_IN, "ix_executions_team_user"),
    (LogClause.INSTALLATION_EQ, "ix_executions_installation"),
    (LogClause.STATUS_EQ, "ix_executions_team_status"),
    (LogClause.WORKFLOW_EQ, "ix_executions_team_workflow"),
)
# Leads that stay best when the page is ordered by another column (their rows are sorted:
# few); a status's or a workflow's rows may be many, so the order's index reads them.
_FEW = frozenset({"ix_executions_team_user", "ix_executions_installation"})


def lead(search: LogSearch) -> str | None:
    """The index that should read the search's executions for its count (and, ordered by
    creation, its page), when an equality every match passes names one; None otherwise."""
    clauses = {p.clause for p in search.scope}
    if len(search.groups) == 1:
        clauses.update(p.clause for p in search.groups[0])
    return next((index for clause, index in _LEADS if clause in clauses), None)


class LogSearchSql:
    """Builds a search's page and count statements from one backend's named queries.

    ``encode_list`` turns a list value into the backend's parameter (JSON text for
    SQLite's ``json_each``, the list itself for PostgreSQL's ``ANY``). With ``hints``
    (SQLite, which keeps no statistics to choose by), a search whose equality names a
    leading index reads it (``INDEXED BY``, from ``lead``); PostgreSQL's planner chooses
    by its statistics.
    """

    def __init__(self, queries: Mapping[str, str],
                 encode_list: Callable[[Sequence[Any]], Any], *, hints: bool = False) -> None:
        self._queries = queries
        self._encode_list = encode_list
        self._hints = hints
        missing = [f"log_search_where_{c.value}" for c in LogClause
                   if f"log_search_where_{c.value}" not in queries]
        if missing:
            raise ValueError(f"log_search.sql lacks {', '.join(missing)}")

    def where(self, search: LogSearch) -> tuple[str, list[Any]]:
        """The search's condition (beyond the team) and its parameters."""
        params: list[Any] = []
        parts = [self._clause(p, search.team_id, params) for p in search.scope]
        groups = [g for g in search.groups]
        if len(groups) == 1:
            parts.extend(self._clause(p, search.team_id, params) for p in groups[0])
        else:
            ored = " OR ".join(
                "(" + (" AND ".join(self._clause(p, search.team_id, params) for p in g)
                       or "1 = 1") + ")"
                for g in groups)
            parts.append(f"({ored})")
        return " AND ".join(parts) or "1 = 1", params

    def _clause(self, predicate: LogPredicate, team_id: str, params: list[Any]) -> str:
        values = list(predicate.values)
        if predicate.clause in _LISTS:
            values = [self._encode_list(values[0])]
        if predicate.clause in _TEAM_SCOPED:
            values.insert(0, team_id)
        params.extend(values)
        return "(" + self._queries[f"log_search_where_{predicate.clause.value}"] + ")"

    def _hint(self, index: str | None) -> str:
        return f"INDEXED BY {index}" if self._hints and index is not None else ""

    def page(self, search: LogSearch) -> ComposedSql:
        """The page's statement: its rows in order, with the names the items show."""
        where, params = self.where(search)
        direction = "DESC" if search.descending else "ASC"
        index = lead(search)
        if search.order is not LogOrder.CREATED and index not in _FEW:
            index = None
        hint = self._hint(index)
        if search.order is LogOrder.COMPLETED:
            # Two index-served halves, each cut at offset + limit: the unfinished (no
            # stopped_at, by creation) and the finished (by stopped_at). Unfinished ones
            # come first in a descending page and last in an ascending one, the same on
            # both backends (whose NULL orders differ).
            sql = self._queries["log_search_page_completed"].format(
                where=where, dir=direction, first="ASC" if search.descending else "DESC",
                hint=hint)
            window = search.offset + search.limit
            return ComposedSql(sql, [search.team_id, *params, window,
                                     search.team_id, *params, window,
                                     search.limit, search.offset])
        order = ", ".join(f"{key} {direction}" for key in _ORDER_KEYS[search.order])
        sql = self._queries["log_search_page"].format(where=where, order=order, hint=hint)
        return ComposedSql(sql, [search.team_id, *params, search.limit, search.offset])

    def count(self, search: LogSearch) -> ComposedSql:
        """The count's statement: matching executions, up to ``count_cap``."""
        where, params = self.where(search)
        sql = self._queries["log_search_count"].format(where=where,
                                                       hint=self._hint(lead(search)))
        return ComposedSql(sql, [search.team_id, *params, search.count_cap])

    def plan(self, search: LogSearch) -> list[ComposedSql]:
        """The statements a search runs (page, count): for EXPLAIN in tests and the bench."""
        return [self.page(search), self.count(search)]


def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1``, ``$2``... (fragments hold no other ``?``)."""
    pieces = sql.split("?")
    return pieces[0] + "".join(f"${n}{piece}" for n, piece in enumerate(pieces[1:], 1))
