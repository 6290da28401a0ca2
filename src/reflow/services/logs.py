"""Execution logs: a workflow's pages (L1), one execution (L4), and the search over all of
a team's executions (``GET /logs``, L3). Their shapes are in ``reflow.api.presenters.logs``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from reflow import sealing
from reflow.clock import Clock, SystemClock
from reflow.domain.executions import ExecutionRecord, ExecutionStatus
from reflow.domain.log_filters import (
    COUNT_CAP,
    Column,
    Filter,
    Operator,
    SearchPage,
    SortBy,
    TimeSpan,
    any_of,
)
from reflow.domain.records import Team
from reflow.errors import InvalidRequest, NotFound
from reflow.ids import execution_id_time_ms
from reflow.services.workflows import WorkflowService
from reflow.store.base import ExecutionQuery, Store
from reflow.store.log_search import (
    LogClause,
    LogEntry,
    LogOrder,
    LogPredicate,
    LogSearch,
)

MAX_LIMIT = 30
MAX_PAGE = 10_000_000


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as the reference's ISO 8601 UTC text."""
    if ms is None:
        return None
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


@dataclass(frozen=True, slots=True)
class LogsPage:
    """Which page of a workflow's logs to show."""

    page: int = 1
    limit: int = 10
    order: str = "desc"
    failed_only: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit: must be between 1 and {MAX_LIMIT}, got {self.limit}")
        if not 0 <= self.page <= MAX_PAGE:
            raise InvalidRequest(f"page: must be between 1 and {MAX_PAGE}, got {self.page}")
        if self.order not in ("asc", "desc"):
            raise InvalidRequest(f"order: must be 'asc' or 'desc', got {self.order!r}")


@dataclass(frozen=True, slots=True)
class SearchScope:
    """What ``GET /logs`` narrows the search to besides its filters: a workflow (a parent
    id or name, or an installation id) and a user (an id or username)."""

    workflow_ref: str | None = None
    user_ref: str | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A page of the search: its entries, how many match (up to COUNT_CAP; ``exact`` is
    False when more do), and when it was read."""

    team_id: str
    entries: list[LogEntry]
    total: int
    exact: bool
    page: SearchPage
    fetched_at: int


_ORDERS = {SortBy.CREATED_AT: LogOrder.CREATED, SortBy.COMPLETED_AT: LogOrder.COMPLETED,
           SortBy.MESSAGE: LogOrder.STATUS, SortBy.USER: LogOrder.USER}
# The clauses of filters whose value passes to the store as it is, by column and operator.
_DIRECT = {
    (Column.VERSION, Operator.EQUALS): LogClause.VERSION_EQ,
    (Column.VERSION, Operator.NOT_EQUALS): LogClause.VERSION_NE,
    (Column.VERSION, Operator.GREATER_THAN): LogClause.VERSION_GT,
    (Column.VERSION, Operator.LESS_THAN): LogClause.VERSION_LT,
    (Column.EXECUTION_ID, Operator.EQUALS): LogClause.ID_EQ,
    (Column.EXECUTION_ID, Operator.NOT_EQUALS): LogClause.ID_NE,
    (Column.INTEGRATION, Operator.EQUALS): LogClause.INTEGRATION_EQ,
    (Column.INTEGRATION, Operator.NOT_EQUALS): LogClause.INTEGRATION_NE,
}
# A userId contains filter matching at most this many users names them (the user index
# then reads just their executions); past it, the users are matched inside the query.
MAX_MATCHED_USERS = 50
# Filters whose value is text to find (case-insensitively) in names and ids.
_MATCHED = {
    (Column.WORKFLOW, Operator.CONTAINS): LogClause.WORKFLOW_MATCHES,
    (Column.WORKFLOW, Operator.NOT_CONTAINS): LogClause.WORKFLOW_NOT_MATCHES,
    (Column.INTEGRATION, Operator.CONTAINS): LogClause.INTEGRATION_MATCHES,
    (Column.INTEGRATION, Operator.NOT_CONTAINS): LogClause.INTEGRATION_NOT_MATCHES,
}
# createdAt: within the span written (2025-04-29 is that day), outside it, after all of
# it, or before all of it.
_CREATED: dict[Operator, Callable[[TimeSpan], LogPredicate]] = {
    Operator.EQUALS: lambda t: LogPredicate(LogClause.CREATED_WITHIN, (t.start, t.end)),
    Operator.NOT_EQUALS: lambda t: LogPredicate(LogClause.CREATED_OUTSIDE, (t.start, t.end)),
    Operator.GREATER_THAN: lambda t: LogPredicate(LogClause.CREATED_FROM, (t.end,)),
    Operator.LESS_THAN: lambda t: LogPredicate(LogClause.CREATED_BEFORE, (t.start,)),
}


class _Nothing(Exception):
    """A filter no execution can pass (its AND-group matches nothing)."""


class LogService:
    """Reads executions for the logs API, the CLI and the dashboard."""

    def __init__(self, store: Store, workflows: WorkflowService,
                 clock: Clock | None = None) -> None:
        self.store = store
        self.workflows = workflows
        self.clock: Clock = clock or SystemClock()

    async def workflow_logs(
        self, team: Team, workflow_ref: str, user_ref: str | None, page: LogsPage
    ) -> list[ExecutionRecord]:
        """A page of a workflow's executions (one user's when ``user_ref`` is given; a
        deleted installation's stay readable, by its id or the parent's with the user)."""
        target = await self.workflows.resolve(team, workflow_ref, user_ref, deleted=True)
        if target.user is not None or target.via_installation:
            if target.installation is None:
                return []
            installation_id: str | None = target.installation.id
        else:
            installation_id = None
        query = ExecutionQuery(
            team_id=team.id,
            workflow_id=target.workflow.id,
            installation_id=installation_id,
            failed_only=page.failed_only,
            descending=page.order == "desc",
            offset=(max(page.page, 1) - 1) * page.limit,
            limit=page.limit,
        )
        return await self.store.list_executions(query)

    async def status(self, team: Team, execution_id: str) -> str | None:
        """Just an execution's status (cheap, for polling), or None if there is none."""
        return await self.store.execution_status(team.id, execution_id)

    async def execution(self, team: Team, execution_id: str) -> ExecutionRecord:
        """One execution with its steps, its trigger redacted; NotFound for another team's."""
        execution = await self.store.get_execution(team.id, execution_id)
        if execution is None:
            raise NotFound(f"execution {execution_id} not found")
        # Sealed secret fields (and any secret stored before sealing) show as [redacted].
        shown_trigger = sealing.redacted(execution.trigger)
        return replace(execution, trigger=shown_trigger)

    # -- the search over all workflows (GET /logs) -------------------------------------------

    async def search(
        self, team: Team, filters: list[Filter], scope: SearchScope, page: SearchPage
    ) -> SearchResult:
        """A page of the team's executions passing ``filters`` within ``scope``, with how
        many pass. NotFound for a scope's unknown (or another team's) workflow or user."""
        fetched_at = self.clock.now_ms()
        scoped = await self._scope(team, scope)
        groups = []
        for group in any_of(filters):
            try:
                groups.append(tuple([p for f in group
                                     if (p := await self._predicate(team, f)) is not None]))
            except _Nothing:
                continue
        if not groups:
            return SearchResult(team.id, [], 0, True, page, fetched_at)
        if any(not g for g in groups):
            groups = [()]  # one group lets everything pass: so does their OR
        search = LogSearch(
            team_id=team.id, scope=scoped, groups=tuple(groups), order=_ORDERS[page.sort_by],
            descending=page.descending, offset=page.skip, limit=page.limit,
            count_cap=COUNT_CAP + 1,  # one more than shown tells "at least" from "exactly"
        )
        found = await self.store.search_logs(search)
        return SearchResult(team.id, found.entries, min(found.total, COUNT_CAP),
                            found.total <= COUNT_CAP, page, fetched_at)

    async def _scope(self, team: Team, scope: SearchScope) -> tuple[LogPredicate, ...]:
        predicates = []
        if scope.workflow_ref is not None:
            workflow = await self.store.get_workflow(team.id, scope.workflow_ref)
            if workflow is not None:
                predicates.append(LogPredicate(LogClause.WORKFLOW_EQ, (workflow.id,)))
            else:
                installation = await self.store.get_installation_by_id(team.id,
                                                                       scope.workflow_ref)
                if installation is None:
                    raise NotFound(f"workflow {scope.workflow_ref!r} not found")
                predicates.append(LogPredicate(LogClause.INSTALLATION_EQ, (installation.id,)))
        if scope.user_ref is not None:
            # A deleted user's logs are kept: its id still finds them.
            user = (await self.store.get_user(team.id, scope.user_ref)
                    or await self.store.get_user_any(team.id, scope.user_ref))
            if user is None:
                raise NotFound(f"user {scope.user_ref!r} not found")
            predicates.append(LogPredicate(LogClause.USER_EQ, (user.id,)))
        return tuple(predicates)

    async def _user_matches(self, team: Team, text: str, contains: bool) -> LogPredicate | None:
        """A userId (not)contains filter: the matching users by id when they are few (a
        name typed in a search box), the text matched in the query when they are many."""
        found = await self.store.match_user_ids(team.id, text, MAX_MATCHED_USERS + 1)
        if len(found) > MAX_MATCHED_USERS:
            clause = LogClause.USER_MATCHES if contains else LogClause.USER_NOT_MATCHES
            return LogPredicate(clause, (text,))
        if not found:
            if contains:
                raise _Nothing
            return None
        return LogPredicate(LogClause.USER_IN if contains else LogClause.USER_NOT_IN,
                            (sorted(found),))

    async def _predicate(self, team: Team, item: Filter) -> LogPredicate | None:
        """The store's clause for one filter; None when every execution passes it, and
        _Nothing raised when none can."""
        key, value = (item.column, item.operator), item.value
        if isinstance(value, frozenset):  # a message: the statuses whose message passes
            return _statuses(value)
        if isinstance(value, TimeSpan):
            return _CREATED[item.operator](value)
        if key in _DIRECT:
            return LogPredicate(_DIRECT[key], (value,))
        assert isinstance(value, str)
        if key in _MATCHED:
            return LogPredicate(_MATCHED[key], (value.lower(),))
        contains = item.operator is Operator.CONTAINS
        if item.column is Column.USER and (contains or item.operator is Operator.NOT_CONTAINS):
            return await self._user_matches(team, value.lower(), contains)
        if item.column is Column.EXECUTION_ID:
            clause = (LogClause.AFTER_EXECUTION if item.operator is Operator.GREATER_THAN
                      else LogClause.BEFORE_EXECUTION)
            return LogPredicate(clause, (execution_id_time_ms(value), value))
        # A user or a workflow by id or by name; an unknown one is compared as given (so
        # equals matches nothing, notequals everything; a deleted user's id still finds
        # its executions).
        equals = item.operator is Operator.EQUALS
        if item.column is Column.USER:
            user = await self.store.get_user(team.id, value)
            return LogPredicate(LogClause.USER_EQ if equals else LogClause.USER_NE,
                                (user.id if user else value,))
        workflow = await self.store.get_workflow(team.id, value)
        return LogPredicate(LogClause.WORKFLOW_EQ if equals else LogClause.WORKFLOW_NE,
                            (workflow.id if workflow else value,))


def _statuses(statuses: frozenset[ExecutionStatus]) -> LogPredicate | None:
    """A message filter's clause: none when every status passes; _Nothing when none does."""
    if not statuses:
        raise _Nothing
    if len(statuses) == len(ExecutionStatus):
        return None
    if len(statuses) == 1:
        return LogPredicate(LogClause.STATUS_EQ, (next(iter(statuses)).value,))
    return LogPredicate(LogClause.STATUS_IN, (sorted(s.value for s in statuses),))
