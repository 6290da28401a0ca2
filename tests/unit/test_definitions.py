"""Workflow definitions: parsing, validation with every problem by path, and the model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reflow.domain.definitions import (
    MAX_ALIASES,
    MAX_BLOCKS,
    Backoff,
    BlockSpec,
    RetryPolicy,
    TriggerType,
    WorkflowDefinition,
    canonical_json,
    parse_document,
    validate_definition,
)
from reflow.domain.durations import parse_duration
from reflow.errors import DefinitionInvalid
from reflow.expressions import MAX_NESTING, compile_template_problems
from support import LONG_CHAINS

SPECS = {
    "http": BlockSpec(
        required=frozenset({"method", "url"}),
        optional=frozenset({"headers", "query", "json", "body", "credential", "expect"}),
    ),
    "transform": BlockSpec(required=frozenset({"value"})),
    "branch": BlockSpec(required=frozenset({"if"}), child_lists=frozenset({"then", "else"})),
    "filter": BlockSpec(required=frozenset({"when"})),
    "respond": BlockSpec(optional=frozenset({"body", "status"})),
    "fail": BlockSpec(required=frozenset({"message"})),
}

DESIGN_EXAMPLE = """\
name: Notify Slack on paid orders
trigger: {type: event, event: order.paid}      # api | event | webhook | schedule
blocks:
  - id: order
    type: http
    with:
      method: GET
      url: "https://shop.example/orders/{{ trigger.data.orderId }}"
      credential: shop
    retry: {attempts: 3, backoff: exponential, initial: 1s}
    timeout: 10s
  - id: big_only
    type: filter
    with: {when: "{{ order.body.total > 100 }}"}
  - id: notify
    type: http
    with:
      method: POST
      url: https://hooks.slack.example/x
      json: {text: "Paid: {{ order.body.id }} ({{ order.body.total }} USD)"}
  - id: done
    type: respond
    with: {body: {notified: true, order: "{{ order.body.id }}"}}
"""

BRANCHING = """\
name: Route orders
integration: shopify
description: Big orders go to a person.
timeout: 5m
trigger: {type: api}
blocks:
  - id: order
    type: transform
    with: {value: "{{ trigger.data }}"}
  - id: route
    type: branch
    with:
      if: "{{ order.total > 100 }}"
      then:
        - id: review
          type: http
          with: {method: POST, url: https://review.example}
        - id: inner
          type: branch
          with:
            if: "{{ true }}"
            then:
              - {id: deep, type: transform, with: {value: 1}}
      else:
        - {id: skip, type: respond, with: {status: 204}}
  - id: done
    type: respond
"""


def load(text: str) -> WorkflowDefinition:
    return validate_definition(parse_document(text), SPECS)


def problems_of(doc: Any) -> list[str]:
    with pytest.raises(DefinitionInvalid) as caught:
        validate_definition(doc, SPECS)
    return [str(problem) for problem in caught.value.problems]


def parse_problems(text: str | bytes, content_type: str | None = None) -> list[str]:
    with pytest.raises(DefinitionInvalid) as caught:
        parse_document(text, content_type)
    return [str(problem) for problem in caught.value.problems]


def minimal(**top_level: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "n",
        "trigger": {"type": "api"},
        "blocks": [{"id": "a", "type": "transform", "with": {"value": 1}}],
    }
    doc.update(top_level)
    return doc


def with_block(**block: Any) -> dict[str, Any]:
    return minimal(blocks=[{"id": "a", "type": "transform", "with": {"value": 1}, **block}])


# --- the model ---------------------------------------------------------------------------


def test_design_example_parses_into_the_model() -> None:
    definition = load(DESIGN_EXAMPLE)

    assert definition.name == "Notify Slack on paid orders"
    assert definition.description == ""
    assert definition.integration is None
    assert definition.timeout is None
    assert definition.trigger.type is TriggerType.EVENT
    assert definition.trigger.event == "order.paid"
    assert [b.id for b in definition.blocks] == ["order", "big_only", "notify", "done"]
    order = definition.blocks[0]
    assert order.type == "http"
    assert order.params["credential"] == "shop"
    assert order.retry == RetryPolicy(attempts=3, backoff=Backoff.EXPONENTIAL, initial=1.0)
    assert order.timeout == 10.0
    assert order.path == "blocks[0]"
    assert definition.blocks[1].retry == RetryPolicy()
    assert definition.block("done").params == {
        "body": {"notified": True, "order": "{{ order.body.id }}"}
    }
    assert definition.raw["trigger"] == {"type": "event", "event": "order.paid"}


def test_json_and_yaml_give_equal_definitions() -> None:
    from_yaml = load(DESIGN_EXAMPLE)
    as_json = json.dumps(parse_document(DESIGN_EXAMPLE))

    from_json = validate_definition(parse_document(as_json, "application/json"), SPECS)

    assert from_json == from_yaml
    assert canonical_json(from_json.raw) == canonical_json(from_yaml.raw)


def test_branch_children_are_nested_blocks_with_their_paths() -> None:
    definition = load(BRANCHING)
    route = definition.block("route")

    assert route.params == {"if": "{{ order.total > 100 }}"}
    assert list(route.children) == ["then", "else"]
    assert [b.id for b in route.children["then"]] == ["review", "inner"]
    assert definition.block("review").path == "blocks[1].with.then[0]"
    assert definition.block("deep").path == "blocks[1].with.then[1].with.then[0]"
    assert definition.block("skip").path == "blocks[1].with.else[0]"
    assert definition.block("inner").children["else"] == ()


def test_iter_blocks_walks_depth_first_in_document_order() -> None:
    definition = load(BRANCHING)

    ids = [block.id for block in definition.iter_blocks()]

    assert ids == ["order", "route", "review", "inner", "deep", "skip", "done"]


def test_block_lookup_of_an_unknown_id_raises_key_error() -> None:
    with pytest.raises(KeyError):
        load(BRANCHING).block("nope")


def test_top_level_options_are_kept() -> None:
    definition = load(BRANCHING)

    assert definition.integration == "shopify"
    assert definition.description == "Big orders go to a person."
    assert definition.timeout == 300.0
    assert definition.block("done").params == {}


# --- every problem, by path --------------------------------------------------------------


def test_every_problem_is_listed_with_its_path() -> None:
    doc = {
        "name": "",
        "trigger": {"type": "evnt"},
        "blocks": [
            {"id": "1st", "type": "htp"},
            {
                "id": "call",
                "type": "http",
                "with": {"method": "GET"},
                "retry": {"attempts": 0},
                "timeout": "2h",
            },
            "not a block",
        ],
    }

    assert problems_of(doc) == [
        "name: must not be empty",
        "trigger.type: must be one of api, event, webhook, schedule; did you mean 'event'?",
        "blocks[0].id: must start with a letter or _ and hold only letters, digits and _ "
        "(expressions read a block's output by its id)",
        "blocks[0].type: unknown block type 'htp'; did you mean 'http'?",
        "blocks[1].with.url: required",
        "blocks[1].retry.attempts: must be a whole number from 1 to 20 (the first try included)",
        "blocks[1].timeout: must be at most 3600 seconds",
        "blocks[2]: must be a mapping (a block with id, type and with)",
    ]


def test_nested_block_problems_carry_their_full_path() -> None:
    doc = minimal(
        blocks=[
            {
                "id": "route",
                "type": "branch",
                "with": {"if": "x", "then": [{"id": "inner", "with": {}}], "else": {"id": "x"}},
            }
        ]
    )

    assert problems_of(doc) == [
        "blocks[0].with.then[0].type: required",
        "blocks[0].with.else: must be a list of blocks, not a mapping",
    ]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ([], "a definition must be a mapping with name, trigger and blocks"),
        (
            {
                "trigger": {"type": "api"},
                "blocks": [{"id": "a", "type": "fail", "with": {"message": "m"}}],
            },
            "name: required",
        ),
        (minimal(trigger=None), "trigger: required"),
        (minimal(blocks=[]), "blocks: required: a list of at least one block"),
        (minimal(blocks={"id": "a"}), "blocks: must be a list of blocks, not a mapping"),
        (minimal(name="x" * 201), "name: must be at most 200 characters"),
        (minimal(description=3), "description: must be a string, not a number"),
        (minimal(trigger="api"), "trigger: must be a mapping (type and, per type, event or cron)"),
    ],
)
def test_top_level_shape_is_checked(doc: Any, expected: str) -> None:
    assert expected in problems_of(doc)


def test_duplicate_ids_name_where_the_first_one_was() -> None:
    doc = minimal(
        blocks=[
            {"id": "a", "type": "transform", "with": {"value": 1}},
            {
                "id": "b",
                "type": "branch",
                "with": {
                    "if": "x",
                    "then": [
                        {"id": "a", "type": "transform", "with": {"value": 2}},
                    ],
                },
            },
            {"id": "b", "type": "respond"},
        ]
    )

    assert problems_of(doc) == [
        "blocks[1].with.then[0].id: duplicate id 'a' (first used at blocks[0].id)",
        "blocks[2].id: duplicate id 'b' (first used at blocks[1].id)",
    ]


@pytest.mark.parametrize("reserved", ["trigger", "execution", "env", "and", "null"])
def test_reserved_context_names_and_jsonata_words_are_refused_as_ids(reserved: str) -> None:
    problems = problems_of(with_block(id=reserved))

    assert len(problems) == 1
    assert problems[0].startswith(f"blocks[0].id: '{reserved}' is reserved")


@pytest.mark.parametrize("bad_id", ["order-1", "9lives", "a b", "", "x" * 65])
def test_ids_must_be_usable_as_jsonata_field_names(bad_id: str) -> None:
    problems = problems_of(with_block(id=bad_id))

    assert len(problems) == 1
    assert problems[0].startswith("blocks[0].id: ")


def test_unknown_keys_everywhere_are_named_with_a_suggestion() -> None:
    doc = {
        "name": "n",
        "trigger": {"type": "event", "event": "x", "evnt": "y"},
        "blcks": [],
        "blocks": [
            {
                "id": "call",
                "type": "http",
                "retries": 3,
                "with": {"method": "GET", "url": "u", "header": {}},
                "retry": {"attemps": 2},
            }
        ],
    }

    assert problems_of(doc) == [
        "blcks: unknown key; did you mean 'blocks'?",
        "trigger.evnt: unknown key; did you mean 'event'?",
        "blocks[0].retries: unknown key; did you mean 'retry'?",
        "blocks[0].with.header: unknown key; did you mean 'headers'?",
        "blocks[0].retry.attemps: unknown key; did you mean 'attempts'?",
    ]


def test_unknown_key_without_a_near_miss_lists_what_is_allowed() -> None:
    assert problems_of(with_block(zzz=1)) == [
        "blocks[0].zzz: unknown key (expected one of: config, id, retry, timeout, type, "
        "with)"
    ]


def test_odd_keys_are_quoted_in_paths() -> None:
    assert problems_of(with_block(**{"with": {"value": 1, "a.b": 2}})) == [
        'blocks[0].with["a.b"]: unknown key (expected one of: value)'
    ]


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        ({"type": "event"}, "trigger.event: required"),
        ({"type": "schedule"}, "trigger.cron: required"),
        ({"type": "api", "event": "x"}, "trigger.event: only allowed when type is 'event'"),
        (
            {"type": "webhook", "cron": "* * * * *"},
            "trigger.cron: only allowed when type is 'schedule'",
        ),
        (
            {"type": "schedule", "cron": "0 0 * *"},
            "trigger.cron: must have 5 fields: minute hour day-of-month month day-of-week",
        ),
        (
            {"type": "schedule", "cron": "61 * * * *"},
            "trigger.cron: minute field '61' is not valid (values 0-59, with *, lists, ranges "
            "and /steps)",
        ),
        (
            {"type": "schedule", "cron": "0 9 * * FUNDAY"},
            "trigger.cron: day-of-week field 'FUNDAY' is not valid (values 0-7, with *, lists, "
            "ranges and /steps)",
        ),
        (
            {"type": "api", "schema": [1]},
            "trigger.schema: must be a mapping (an example of the trigger data)",
        ),
        ({}, "trigger.type: required"),
    ],
)
def test_trigger_rules_depend_on_its_type(trigger: dict[str, Any], expected: str) -> None:
    assert problems_of(minimal(trigger=trigger)) == [expected]


@pytest.mark.parametrize(
    "cron", ["*/5 * * * *", "0 9 * * MON-FRI", "0 0 1,15 JAN,jul 0", "30 2-4/2 * * 7"]
)
def test_valid_cron_expressions_are_accepted(cron: str) -> None:
    definition = validate_definition(minimal(trigger={"type": "schedule", "cron": cron}), SPECS)

    assert definition.trigger.cron == cron


def test_trigger_schema_is_kept_as_given() -> None:
    schema = {"orderId": "123", "total": 10}
    definition = validate_definition(minimal(trigger={"type": "webhook", "schema": schema}), SPECS)

    assert definition.trigger.schema == schema


def test_required_with_keys_must_be_present_and_not_null() -> None:
    doc = minimal(blocks=[{"id": "a", "type": "http", "with": {"method": None}}])

    assert problems_of(doc) == ["blocks[0].with.method: required", "blocks[0].with.url: required"]


def test_with_must_be_a_mapping() -> None:
    assert problems_of(with_block(**{"with": ["value"]})) == [
        "blocks[0].with: must be a mapping (the block's parameters)"
    ]


def test_more_than_the_block_limit_is_refused_counting_nested_blocks() -> None:
    inner = [{"id": f"b{i}", "type": "respond"} for i in range(MAX_BLOCKS)]
    doc = minimal(blocks=[{"id": "top", "type": "branch", "with": {"if": 1, "then": inner}}])

    assert problems_of(doc) == [
        f"blocks: too many blocks: {MAX_BLOCKS + 1}, nested ones included (at most {MAX_BLOCKS})"
    ]


def test_blocks_nested_too_deeply_are_refused() -> None:
    block: dict[str, Any] = {"id": "leaf", "type": "respond"}
    for level in range(20):
        block = {"id": f"b{level}", "type": "branch", "with": {"if": 1, "then": [block]}}

    [problem] = problems_of(minimal(blocks=[block]))

    assert problem.startswith("blocks[0]" + ".with.then[0]" * 17 + ": nested too deeply")


def test_values_json_cannot_hold_are_problems() -> None:
    doc = with_block(**{"with": {"value": {1: "a", "b": float("nan"), "c": {2, 3}}}})

    assert problems_of(doc) == [
        "blocks[0].with.value[1]: keys must be strings, not a number",
        "blocks[0].with.value.b: must be a finite number",
        "blocks[0].with.value.c: set values cannot be stored as JSON",
    ]


def test_yaml_only_values_are_problems_for_storage() -> None:
    doc = parse_document(
        "name: n\ntrigger: {type: api}\nblocks:\n"
        "  - {id: a, type: transform, with: {value: !!binary aGk=}}\n"
        "  - {id: b, type: transform, with: {value: .inf}}\n"
    )

    assert problems_of(doc) == [
        "blocks[0].with.value: bytes values cannot be stored as JSON",
        "blocks[1].with.value: must be a finite number",
    ]


def test_unpaired_surrogates_from_json_escapes_are_problems() -> None:
    doc = parse_document(
        '{"name": "n", "trigger": {"type": "api"}, "description": "\\ud800",'
        ' "blocks": [{"id": "a", "type": "respond"}]}'
    )

    assert problems_of(doc) == [
        "description: contains an unpaired surrogate, which UTF-8 cannot store"
    ]


def test_python_tags_in_yaml_are_refused() -> None:
    [problem] = parse_problems("a: !!python/object/apply:os.system [echo hi]\n")

    assert "could not determine a constructor" in problem


def test_an_absurdly_long_yaml_integer_is_a_problem_not_a_crash() -> None:
    [problem] = parse_problems("a: " + "1" * 5000)

    assert problem.startswith("invalid YAML: Exceeds the limit")


def test_a_flood_of_problems_is_cut_short() -> None:
    doc = minimal(**{f"junk{i}": 1 for i in range(150)})

    problems = problems_of(doc)

    assert len(problems) == 101
    assert problems[-1] == "and 50 more problems"


# --- durations, retry and timeouts -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (10, 10.0),
        (2.5, 2.5),
        (0, 0.0),
        ("500ms", 0.5),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86_400.0),
        ("7d", 604_800.0),
        ("1h30m", 5400.0),
        ("1m30s250ms", 90.25),
        (" 10s ", 10.0),
    ],
)
def test_durations_read_numbers_as_seconds_and_texts_with_units(
    value: str | int | float, seconds: float
) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("-1s", "must not be negative"),
        (-3, "must not be negative"),
        ("10", "has no unit; write '10s' for seconds"),
        ("10 seconds", "is not a duration"),
        ("1x", "is not a duration"),
        ("", "empty"),
        ("30m1h", "units must go from largest to smallest, each once"),
        ("1s1s", "units must go from largest to smallest, each once"),
        (float("inf"), "finite"),
        (True, "is not a duration"),
    ],
)
def test_bad_durations_say_why(value: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_duration(value)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"timeout": "10x"}, "blocks[0].timeout: '10x' is not a duration"),
        ({"timeout": 0}, "blocks[0].timeout: must be greater than 0"),
        ({"timeout": "1h1s"}, "blocks[0].timeout: must be at most 3600 seconds"),
        ({"timeout": [1]}, "blocks[0].timeout: must be a duration such as 10s"),
        ({"retry": {"initial": "-1s"}}, "blocks[0].retry.initial: '-1s': a duration must not"),
        ({"retry": {"max": "2d"}}, "blocks[0].retry.max: must be at most 86400 seconds"),
        (
            {"retry": {"initial": "10s", "max": "5s"}},
            "blocks[0].retry.max: must be at least initial (10 seconds)",
        ),
        (
            {"retry": {"backoff": "linear"}},
            "blocks[0].retry.backoff: must be one of fixed, exponential",
        ),
        ({"retry": {"attempts": 21}}, "blocks[0].retry.attempts: must be a whole number"),
        ({"retry": {"attempts": True}}, "blocks[0].retry.attempts: must be a whole number"),
        ({"retry": 3}, "blocks[0].retry: must be a mapping"),
    ],
)
def test_bad_timeouts_and_retry_settings_are_problems(block: dict[str, Any], expected: str) -> None:
    problems = problems_of(with_block(**block))

    assert len(problems) == 1
    assert problems[0].startswith(expected)


def test_retry_settings_are_read_with_yaml_key_max() -> None:
    doc = with_block(retry={"attempts": 5, "backoff": "fixed", "initial": "500ms", "max": "1m"})

    retry = validate_definition(doc, SPECS).blocks[0].retry

    assert retry == RetryPolicy(attempts=5, backoff=Backoff.FIXED, initial=0.5, max_delay=60.0)


def test_a_long_initial_delay_without_max_is_not_cut_to_the_default_cap() -> None:
    retry = validate_definition(with_block(retry={"initial": "5m"}), SPECS).blocks[0].retry

    assert retry.delay(1) == 300.0


def test_fixed_backoff_waits_the_same_before_every_retry() -> None:
    policy = RetryPolicy(attempts=4, backoff=Backoff.FIXED, initial=2.0)

    assert [policy.delay(n) for n in (1, 2, 3)] == [2.0, 2.0, 2.0]


def test_exponential_backoff_doubles_from_initial() -> None:
    policy = RetryPolicy(attempts=5, initial=1.5)

    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1.5, 3.0, 6.0, 12.0]


def test_exponential_backoff_is_capped_by_max_delay_even_for_huge_retry_numbers() -> None:
    policy = RetryPolicy(attempts=20, initial=1.0, max_delay=10.0)

    assert [policy.delay(n) for n in (4, 5, 6, 10_000)] == [8.0, 10.0, 10.0, 10.0]


def test_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        RetryPolicy().delay(0)


# --- parsing -----------------------------------------------------------------------------


def test_yaml_syntax_error_gives_line_and_column() -> None:
    text = "name: x\ntrigger: {type: api\nblocks: []\n"

    [problem] = parse_problems(text)

    assert problem.startswith("invalid YAML at line 3, column 7:")


def test_json_syntax_error_gives_line_and_column() -> None:
    [problem] = parse_problems('{\n  "name": "x",\n}', "application/json")

    assert problem.startswith("invalid JSON at line 3, column 1:")


def test_text_sniffed_as_json_falls_back_to_yaml_flow_style() -> None:
    assert parse_document("{name: x, blocks: [1]}") == {"name": "x", "blocks": [1]}


def test_json_nan_is_refused() -> None:
    [problem] = parse_problems('{"a": NaN}', "application/json")

    assert problem == "invalid JSON: NaN is not a JSON number"


def test_bytes_are_read_as_utf8_and_a_bom_is_ignored() -> None:
    text = "\ufeffname: café\n".encode()

    assert parse_document(text) == {"name": "café"}
    assert parse_problems(b"name: \xff") == ["the text is not UTF-8 (byte 6)"]


def test_duplicate_keys_are_refused_in_yaml_and_json() -> None:
    assert parse_problems("a: 1\nb:\n  c: 1\n  c: 2\n") == ["b.c: duplicate key"]
    assert parse_problems('{"a": {"c": 1, "c": 2}}') == ["a.c: duplicate key"]


def test_yaml_merge_keys_are_not_duplicates() -> None:
    text = "base: &base {a: 1, b: 2}\nuse:\n  <<: *base\n  b: 3\n"

    assert parse_document(text)["use"] == {"a": 1, "b": 3}


def test_yaml_dates_and_yes_no_stay_strings() -> None:
    doc = parse_document("since: 2024-01-01\ncountry: NO\nflag: yes\nreal: true\n")

    assert doc == {"since": "2024-01-01", "country": "NO", "flag": "yes", "real": True}


def test_yaml_alias_bomb_is_refused() -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        prev, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")

    [problem] = parse_problems("\n".join(lines))

    assert "refused as an alias bomb" in problem


def test_more_than_the_alias_limit_is_refused() -> None:
    text = "x: &x 1\nys: [" + ", ".join(["*x"] * (MAX_ALIASES + 1)) + "]\n"

    assert parse_problems(text) == [f"too many YAML aliases: {MAX_ALIASES + 1} (at most 100)"]


def test_a_few_aliases_are_fine() -> None:
    text = "h: &h {accept: json}\nb: [*h, *h]\n"

    assert parse_document(text) == {"h": {"accept": "json"}, "b": [{"accept": "json"}] * 2}


def test_recursive_yaml_alias_is_refused() -> None:
    assert parse_problems("x: &a [1, *a]\n") == [
        "x[1]: alias refers to itself; recursion is not allowed"
    ]


def test_deeply_nested_documents_are_refused_not_crashing() -> None:
    deep_json = '{"a": ' * 5000 + "1" + "}" * 5000
    deep_yaml = "[" * 150 + "]" * 150

    assert parse_problems(deep_json, "application/json") == [
        "nested too deeply (at most 100 levels)"
    ]
    assert parse_problems(deep_yaml)[0].endswith("nested too deeply (at most 100 levels)")


def test_empty_text_parses_to_nothing_and_then_fails_validation() -> None:
    assert parse_document("") is None
    assert problems_of(None) == ["a definition must be a mapping with name, trigger and blocks"]


def test_only_one_yaml_document_is_accepted() -> None:
    [problem] = parse_problems("a: 1\n---\nb: 2\n")

    assert problem.startswith("invalid YAML at line 2, column 1: but found another document")


# --- canonical form ----------------------------------------------------------------------


def test_canonical_json_is_stable_across_key_order_and_formats() -> None:
    first = {"b": [1, {"d": "é", "c": None}], "a": True}
    second = {"a": True, "b": [1, {"c": None, "d": "é"}]}

    assert canonical_json(first) == canonical_json(second)
    assert canonical_json(first) == '{"a":true,"b":[1,{"c":null,"d":"é"}]}'.encode()


def test_an_unchanged_file_reformatted_has_the_same_canonical_form() -> None:
    reformatted = json.dumps(parse_document(DESIGN_EXAMPLE), indent=4)

    assert canonical_json(parse_document(reformatted)) == canonical_json(
        parse_document(DESIGN_EXAMPLE)
    )


# --- expressions in templates -----------------------------------------------------------



def template_problems_of(doc: dict[str, Any]) -> list[str]:
    """The problems of ``doc`` validated with its templates compiled, as the service does."""
    with pytest.raises(DefinitionInvalid) as caught:
        validate_definition(doc, SPECS, compile_template_problems)
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.parametrize("operator", LONG_CHAINS)
def test_a_long_chain_in_an_expression_is_refused_naming_its_block(operator: str) -> None:
    doc = minimal(blocks=[
        {"id": "a", "type": "transform", "with": {"value": "{{ 1 }}"}},
        {"id": "b", "type": "transform", "with": {"value": 1}},
        {"id": "c", "type": "transform",
         "with": {"value": "{{ " + LONG_CHAINS[operator] + " }}"}},
    ])
    [problem] = template_problems_of(doc)
    assert problem.startswith("blocks[2].with.value: expression is too large to compile (")


def test_a_chain_over_the_limit_is_refused_with_its_count_and_the_limit() -> None:
    chain = "1" + " + 1" * (MAX_NESTING + 1)
    doc = minimal(blocks=[{"id": "a", "type": "transform", "with": {"value": {
        "text": "total: {{ " + chain + " }}",
    }}}])
    assert template_problems_of(doc) == [
        f"blocks[0].with.value.text: expression is too large to compile ({MAX_NESTING + 1} "
        f"operators nested in one chain; at most {MAX_NESTING})"
    ]
