"""The ``GET /logs`` query, without I/O: filters parsed and checked, times at their written
precision, and-before-or grouping, pages, and the SQL composed from named fragments."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from reflow.domain.executions import ExecutionStatus
from reflow.domain.log_filters import (
    MAX_FILTERS,
    MESSAGES,
    OPERATORS,
    Column,
    Filter,
    FiltersInvalid,
    Join,
    Operator,
    SearchPage,
    SortBy,
    TimeSpan,
    any_of,
    parse_filters,
    parse_time,
)
from reflow.errors import InvalidRequest
from reflow.store.log_search import (
    LogClause,
    LogOrder,
    LogPredicate,
    LogSearch,
    LogSearchSql,
    numbered,
)
from reflow.store.queries import load_queries

STORE = Path(__file__).resolve().parents[2] / "src" / "reflow" / "store"
S = ExecutionStatus


def rule(column: str, operator: str, value: Any, condition: str | None = None
         ) -> dict[str, Any]:
    item = {"columns": {"value": column}, "operators": {"value": operator},
            "userinput": {"value": value}}
    if condition is not None:
        item["condition"] = {"value": condition}
    return item


def parsed(*rules: dict[str, Any]) -> list[Filter]:
    return parse_filters(orjson.dumps(list(rules)).decode())


def one(column: str, operator: str, value: Any) -> Any:
    [item] = parsed(rule(column, operator, value))
    return item.value


def problems(text: str) -> list[str]:
    with pytest.raises(FiltersInvalid) as caught:
        parse_filters(text)
    return [str(p) for p in caught.value.problems]


def ms(text: str) -> int:
    return int(datetime.datetime.fromisoformat(text).timestamp() * 1000)


# -- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "  ", "[]"])
def test_no_filters_is_an_empty_list(text: str | None) -> None:
    assert parse_filters(text) == []


def test_a_filter_keeps_its_index_column_operator_and_condition() -> None:
    first, second = parsed(rule("userId", "equals", "jane"),
                           rule("workflowVersion", "lessthan", "3", "or"))
    assert first == Filter(0, Column.USER, Operator.EQUALS, "jane", Join.AND)
    assert second == Filter(1, Column.VERSION, Operator.LESS_THAN, 3, Join.OR)


def test_one_filter_object_alone_is_taken_as_a_list_of_one() -> None:
    text = orjson.dumps(rule("message", "equals", "executionError")).decode()
    assert [f.column for f in parse_filters(text)] == [Column.MESSAGE]


@pytest.mark.parametrize("condition", [None, ""])
def test_an_empty_or_null_condition_means_and(condition: str | None) -> None:
    item = rule("userId", "equals", "x")
    item["condition"] = {"value": condition}
    assert parsed(item)[0].join is Join.AND


@pytest.mark.parametrize(("operator", "value", "statuses"), [
    ("equals", "executionError", {S.FAILED}),
    ("notequals", "executionSuccess", set(S) - {S.SUCCEEDED}),
    ("contains", "ERROR", {S.FAILED}),
    ("contains", "execution", set(S)),
    ("contains", "nothing", set()),
    ("notcontains", "ing", set(S) - {S.RUNNING, S.WAITING}),
    ("greaterthan", "executionRunning", {S.SUCCEEDED, S.WAITING}),
    ("lessthan", "executionQueued", {S.CANCELLED, S.FAILED}),
])
def test_a_message_filter_is_the_set_of_statuses_whose_message_passes(
    operator: str, value: str, statuses: set[ExecutionStatus]
) -> None:
    assert one("message", operator, value) == frozenset(statuses)


def test_messages_sort_as_their_statuses_do() -> None:
    """So ordering by message is ordering by the status column, which an index serves."""
    assert sorted(MESSAGES, key=lambda s: s.value) == sorted(MESSAGES, key=MESSAGES.__getitem__)
    assert set(MESSAGES) == set(ExecutionStatus)
    assert MESSAGES[S.FAILED] == "executionError"  # the reference's


def test_every_column_takes_equals_and_notequals() -> None:
    for column in Column:
        assert {Operator.EQUALS, Operator.NOT_EQUALS} <= OPERATORS[column]


@pytest.mark.parametrize(("column", "refused"), [
    ("data.executionId", "contains"), ("data.executionId", "notcontains"),
    ("userId", "greaterthan"), ("forgeWorkflowId", "lessthan"),
    ("forgeWorkflow.integrationId._id", "greaterthan"), ("createdAt", "contains"),
    ("workflowVersion", "notcontains"),
])
def test_an_operator_a_column_does_not_take_is_refused_with_those_it_does(
    column: str, refused: str
) -> None:
    [problem] = problems(orjson.dumps([rule(column, refused, "1")]).decode())
    assert problem.startswith(f"filters[0].operators.value: {column} does not take {refused}")
    assert "; use " in problem


@pytest.mark.parametrize(("text", "expected"), [
    ("{", "filters: not valid JSON"),
    ("3", "filters: must be a JSON array of filters, not a number"),
    ('["x"]', "filters[0]: must be an object, not a string"),
    ('[{"columns": "message", "operators": {"value": "equals"}, "userinput": {"value": 1}}]',
     'filters[0].columns: must be an object {"value": ...}, not "message"'),
    ('[{"operators": {"value": "equals"}, "userinput": {"value": 1}}]',
     'filters[0].columns: required: {"value": ...}'),
])
def test_a_malformed_document_names_where(text: str, expected: str) -> None:
    assert problems(text)[0].startswith(expected)


def test_every_problem_of_every_filter_is_listed_by_path() -> None:
    found = problems(orjson.dumps([
        rule("colour", "like", "x", "nand"), rule("workflowVersion", "equals", "two"),
        rule("createdAt", "equals", "2025-13-01"),
    ]).decode())
    assert [p.split(":")[0] for p in found] == [
        "filters[0].columns.value", "filters[0].operators.value", "filters[0].condition.value",
        "filters[1].userinput.value", "filters[2].userinput.value"]


def test_too_many_filters_are_refused() -> None:
    text = orjson.dumps([rule("userId", "equals", "x")] * (MAX_FILTERS + 1)).decode()
    assert problems(text) == [f"filters: at most {MAX_FILTERS} filters, not {MAX_FILTERS + 1}"]


@pytest.mark.parametrize(("value", "reason"), [
    ("", "must be 1 to 200 characters"), ("x" * 201, "must be 1 to 200 characters"),
    ("a\x00b", "(no NUL)"), (["x"], "must be a string, not a array"),
    (True, "must be a string, not a boolean"),
])
def test_text_values_are_bounded(value: Any, reason: str) -> None:
    [problem] = problems(orjson.dumps([rule("userId", "equals", value)]).decode())
    assert reason in problem


@pytest.mark.parametrize(("value", "expected"), [("2", 2), (2, 2), (" 12 ", 12), ("-1", -1)])
def test_versions_are_whole_numbers(value: Any, expected: int) -> None:
    assert one("workflowVersion", "equals", value) == expected


@pytest.mark.parametrize("value", ["1.5", 1.5, "two", True, None, "1e3", 10**10])
def test_a_version_that_is_not_a_whole_number_is_refused(value: Any) -> None:
    [problem] = problems(orjson.dumps([rule("workflowVersion", "equals", value)]).decode())
    assert "workflowVersion takes a whole number" in problem


def test_execution_ids_compare_only_when_they_are_execution_ids() -> None:
    assert one("data.executionId", "equals", "anything") == "anything"
    assert one("data.executionId", "greaterthan", "0VcTIRG19J1ZHHD6tAomn") == \
        "0VcTIRG19J1ZHHD6tAomn"
    [problem] = problems(orjson.dumps([rule("data.executionId", "lessthan", "abc")]).decode())
    assert "'abc' is not an execution id" in problem


# -- times ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "start", "length"), [
    ("2025-04-29", "2025-04-29T00:00:00+00:00", 86_400_000),
    ("2025-04-29T17:44", "2025-04-29T17:44:00+00:00", 60_000),
    ("2025-04-29 17:44:10", "2025-04-29T17:44:10+00:00", 1000),
    ("2025-04-29T17:44:10.3Z", "2025-04-29T17:44:10.300+00:00", 100),
    ("2025-04-29T17:44:10.33Z", "2025-04-29T17:44:10.330+00:00", 10),
    ("2025-04-29T17:44:10.336Z", "2025-04-29T17:44:10.336+00:00", 1),
    ("2025-04-29T17:44:10.336999z", "2025-04-29T17:44:10.336+00:00", 1),
    ("2025-04-29T19:44:10.336+02:00", "2025-04-29T17:44:10.336+00:00", 1),
    ("2025-04-29T12:44-0500", "2025-04-29T17:44:00+00:00", 60_000),
])
def test_a_written_time_stands_for_its_whole_precision(text: str, start: str, length: int
                                                       ) -> None:
    assert parse_time(text) == TimeSpan(ms(start), ms(start) + length)


def test_milliseconds_since_1970_are_one_millisecond() -> None:
    assert parse_time(1745948650336) == TimeSpan(1745948650336, 1745948650337)
    assert parse_time("1745948650336") == TimeSpan(1745948650336, 1745948650337)


@pytest.mark.parametrize(("value", "reason"), [
    ("yesterday", "is not an ISO 8601 date or time"),
    ("2025-02-30", "is not a valid time"),
    ("2025-04-29T25:00", "is not a valid time"),
    ("2025-04-29T10:00+24:00", "is not a valid time"),
    ("1969-12-31", "is before 1970"),
    (-5, "out of range"),
    (10**15, "out of range"),
    (1.5, "not a number"),
    (None, "not a null"),
])
def test_a_value_that_is_not_a_time_says_why(value: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_time(value)


# -- and / or -------------------------------------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    a, b, c, d = parsed(rule("userId", "equals", "a"), rule("userId", "equals", "b", "or"),
                        rule("userId", "equals", "c", "and"), rule("userId", "equals", "d", "or"))
    assert any_of([a, b, c, d]) == [[a], [b, c], [d]]
    assert any_of([]) == [[]]


def test_the_first_filters_condition_is_ignored() -> None:
    a, b = parsed(rule("userId", "equals", "a", "or"), rule("userId", "equals", "b"))
    assert any_of([a, b]) == [[a, b]]


# -- the page -------------------------------------------------------------------------------


def test_a_page_knows_which_it_is() -> None:
    assert SearchPage().current_page == 1
    assert SearchPage(skip=20, limit=10).current_page == 3
    assert SearchPage(skip=25, limit=10).current_page == 3
    assert SearchPage(skip=9_990, limit=10, sort_by=SortBy.MESSAGE).current_page == 1000


@pytest.mark.parametrize(("skip", "limit", "reason"), [
    (0, 0, "limit: must be between 1 and 100"), (0, 101, "limit: must be between 1 and 100"),
    (-1, 10, "skip: must not be negative"), (9_991, 10, "may not pass 10,000"),
])
def test_a_page_out_of_bounds_is_refused(skip: int, limit: int, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        SearchPage(skip=skip, limit=limit)


# -- the composed SQL -----------------------------------------------------------------------

BACKENDS = {
    "sqlite": LogSearchSql(load_queries(STORE / "sqlite"), lambda v: orjson.dumps(v).decode()),
    "postgres": LogSearchSql(load_queries(STORE / "postgres"), list),
}
SECRET = "'; DROP TABLE executions; --"
EVERY_CLAUSE = tuple(LogPredicate(c, (["failed"],) if c is LogClause.STATUS_IN else
                                  (1, 2) if c in (LogClause.CREATED_WITHIN,
                                                  LogClause.CREATED_OUTSIDE,
                                                  LogClause.AFTER_EXECUTION,
                                                  LogClause.BEFORE_EXECUTION)
                                  else (SECRET,))
                     for c in LogClause)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("order", list(LogOrder))
def test_every_value_is_a_parameter_and_every_placeholder_has_one(
    backend: str, order: LogOrder
) -> None:
    search = LogSearch("team", (LogPredicate(LogClause.USER_EQ, (SECRET,)),),
                       groups=(EVERY_CLAUSE[:10], EVERY_CLAUSE[10:]), order=order)
    for statement in BACKENDS[backend].plan(search):
        assert SECRET not in statement.sql
        assert "{" not in statement.sql  # every slot filled
        assert statement.sql.count("?") == len(statement.params)
        assert statement.params.count(SECRET) >= 1


def test_or_groups_are_parenthesised_and_the_scope_applies_to_all() -> None:
    sql = BACKENDS["sqlite"]
    user = LogPredicate(LogClause.USER_EQ, ("u",))
    failed = LogPredicate(LogClause.STATUS_EQ, ("failed",))
    v2 = LogPredicate(LogClause.VERSION_EQ, (2,))
    where, params = sql.where(LogSearch("t", (user,), ((failed,), (v2, failed))))
    assert where == ("(e.user_id = ?) AND (((e.status = ?)) OR ((e.version = ?) AND "
                     "(e.status = ?)))")
    assert params == ["u", "failed", 2, "failed"]
    assert sql.where(LogSearch("t")) == ("1 = 1", [])


def test_clauses_that_look_up_the_catalogue_get_the_team_first() -> None:
    where, params = BACKENDS["postgres"].where(LogSearch(
        "t", groups=((LogPredicate(LogClause.USER_MATCHES, ("ada",)),),)))
    assert "users u" in where
    assert params == ["t", "ada"]


def test_lists_are_encoded_for_each_backend() -> None:
    search = LogSearch("t", groups=((LogPredicate(LogClause.STATUS_IN, (["a", "b"],)),),))
    assert BACKENDS["sqlite"].where(search)[1] == ['["a","b"]']
    assert BACKENDS["postgres"].where(search)[1] == [["a", "b"]]


def test_a_backend_missing_a_clause_is_refused_at_once() -> None:
    queries = load_queries(STORE / "sqlite")
    del queries["log_search_where_version_lt"]
    with pytest.raises(ValueError, match="log_search_where_version_lt"):
        LogSearchSql(queries, list)


def test_placeholders_are_numbered_for_postgres() -> None:
    assert numbered("a = ? AND b IN (?, ?)") == "a = $1 AND b IN ($2, $3)"
    assert numbered("no parameters") == "no parameters"
