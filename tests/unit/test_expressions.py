"""reflow.expressions: JSONata expressions and {{ }} templates."""

from __future__ import annotations

import gc
import threading
import time
from types import MappingProxyType
from typing import Any

import pytest

from reflow.errors import ExpressionError, Problem
from reflow.expressions import (
    MAX_NESTING,
    MAX_OPERATORS,
    MAX_SOURCE_LENGTH,
    MAX_VALUE_DEPTH,
    Expression,
    compile_expression,
    compile_template,
    compile_template_problems,
)

ORDER = {
    "trigger": {"data": {"orderId": "A-1001"}},
    "order": {"status": 200, "body": {"id": "A-1001", "total": 129.5, "items": [1, 2]}},
}

ENDLESS_RECURSION = "($f := function($n){ $n > 0 ? 1 + $f($n - 1) : 0 }; $f(1000000))"
ENDLESS_LOOP = "($f := function(){ $f() }; $f())"  # a tail call: no depth, only time


# --- expressions ------------------------------------------------------------------------------


def test_the_same_source_compiles_once() -> None:
    assert compile_expression("order.body.id") is compile_expression("order.body.id")


def test_another_budget_is_another_compiled_expression() -> None:
    assert compile_expression("order.body.id") is not compile_expression(
        "order.body.id", timeout_ms=50
    )


def test_evaluation_returns_json_values() -> None:
    assert compile_expression("order.body.id").evaluate(ORDER) == "A-1001"
    assert compile_expression("order.body.total > 100").evaluate(ORDER) is True
    assert compile_expression("order.body.items").evaluate(ORDER) == [1, 2]
    assert compile_expression('{"n": $sum(order.body.items)}').evaluate(ORDER) == {"n": 3}


def test_an_integral_number_comes_back_as_an_int() -> None:
    assert compile_expression("order.body.total * 2").evaluate(ORDER) == 259
    assert isinstance(compile_expression("2.0").evaluate({}), int)


def test_undefined_is_none() -> None:
    assert compile_expression("order.nothing.here").evaluate(ORDER) is None


def test_bindings_are_dollar_variables() -> None:
    expression = compile_expression("$limit < order.body.total")
    assert expression.evaluate(ORDER, bindings={"limit": 100}) is True


def test_any_mapping_is_accepted_as_context() -> None:
    expression = compile_expression("order.body.id")
    assert expression.evaluate(MappingProxyType(ORDER)) == "A-1001"


def test_error_function_fails_with_its_own_message() -> None:
    with pytest.raises(ExpressionError) as raised:
        compile_expression('$error("order " & order.body.id & " is not paid")').evaluate(ORDER)
    assert raised.value.message == "order A-1001 is not paid"


def test_assert_function_fails_with_its_own_message() -> None:
    with pytest.raises(ExpressionError) as raised:
        compile_expression('$assert(order.body.total > 1000, "total too small")').evaluate(ORDER)
    assert raised.value.message == "total too small"


def test_evaluation_failure_says_why_with_the_jsonata_code() -> None:
    with pytest.raises(ExpressionError, match=r'"\+" operator must evaluate to a number \(T2001'):
        compile_expression("order.body.id + 1").evaluate(ORDER)


def test_syntax_error_gives_reason_and_position() -> None:
    with pytest.raises(ExpressionError, match=r"Unexpected end of expression at position 18"):
        compile_expression("order.body.total >")


def test_context_that_is_not_json_fails_as_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="not JSON data"):
        compile_expression("x").evaluate({"x": {1, 2}})


def test_endless_recursion_is_cut_off_by_the_depth_budget() -> None:
    with pytest.raises(ExpressionError, match="deeper than its budget of 500"):
        compile_expression(ENDLESS_RECURSION).evaluate({})


def test_recursion_within_the_depth_budget_runs() -> None:
    expression = compile_expression(ENDLESS_RECURSION.replace("1000000", "100"))
    assert expression.evaluate({}) == 100


def test_endless_loop_is_cut_off_by_the_time_budget_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError, match="past its 50 ms budget"):
        compile_expression(ENDLESS_LOOP, timeout_ms=50).evaluate({})
    assert time.monotonic() - started < 2


def test_time_budget_is_per_evaluation_not_since_compiling() -> None:
    expression = compile_expression("$count([1..20000])", timeout_ms=50)
    time.sleep(0.1)
    assert expression.evaluate({}) == 20000


def test_an_expression_compiled_in_one_thread_evaluates_in_another() -> None:
    # The engine's compiled objects are tied to their thread; reflow's are not.
    expression = Expression("order.body.id")
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(expression.evaluate(ORDER)))
    worker.start()
    worker.join()
    assert results == ["A-1001"]
    assert expression.evaluate(ORDER) == "A-1001"


def test_an_expression_used_on_other_threads_can_be_dropped_on_any_thread() -> None:
    # The engine's objects panic when dropped on another thread than their creator's;
    # reflow keeps them on their own thread, so dropping an Expression anywhere is safe
    # (filterwarnings=error turns an unraisable panic into a failure).
    expressions = [Expression("order.body.id & '-' & $string(order.body.total)")]
    errors: list[ExpressionError] = []

    def use() -> None:
        try:
            expressions[0].evaluate(ORDER)
            Expression("$error('boom')").evaluate({})
        except ExpressionError as exc:
            errors.append(exc)  # its traceback now lives on past the thread

    workers = [threading.Thread(target=use) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    expressions.clear()
    assert [e.message for e in errors] == ["boom"] * 3
    errors.clear()
    gc.collect()


# --- templates --------------------------------------------------------------------------------


def test_plain_values_are_literal_and_constant() -> None:
    value = {"method": "GET", "retries": 3, "tags": ["a", None, True], "price": 1.5}
    template = compile_template(value)
    assert template.is_constant
    assert template.expressions == ()
    assert template.render(ORDER) == value


def test_a_constant_template_renders_the_same_shared_object() -> None:
    template = compile_template({"a": [1, 2]})
    assert template.render({}) is template.render(ORDER)


def test_a_constant_template_does_not_follow_later_changes_to_the_definition() -> None:
    value = {"a": [1, 2]}
    template = compile_template(value)
    value["a"].append(3)
    assert template.render({}) == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ order.body.total }}", 129.5),
        ("{{ order.status }}", 200),
        ("{{ order.body }}", ORDER["order"]["body"]),
        ("{{ order.body.items }}", [1, 2]),
        ("{{ order.body.total > 100 }}", True),
        ("{{ order.nothing }}", None),
        ("  {{ order.body.id }}\n", "A-1001"),
    ],
)
def test_a_string_that_is_one_expression_gives_its_own_value(text: str, expected: Any) -> None:
    template = compile_template(text)
    assert not template.is_constant
    assert template.render(ORDER) == expected


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ('"A-1"', "A-1"),
        ("nothing", ""),
        ("null", ""),
        ("3", "3"),
        ("3.0", "3"),
        ("129.5", "129.5"),
        ("0.1 + 0.2", "0.3"),
        ("1/3", "0.333333333333333"),
        ("-0", "0"),
        ("1e20", "100000000000000000000"),
        ("1e21", "1e+21"),
        ("1.5e-7", "1.5e-7"),
        ("0.000001", "0.000001"),
        ("123456789012345678", "123456789012346000"),
        ("true", "true"),
        ("false", "false"),
        (
            '{"a": 1, "b": [1.5, "x", null], "c": {"d": "e\\"f"}}',
            '{"a":1,"b":[1.5,"x",null],"c":{"d":"e\\"f"}}',
        ),
        ('[1, "two", true]', '[1,"two",true]'),
        ("function($x){ $x }", ""),
    ],
)
def test_interpolation_writes_values_as_jsonata_string_does(expression: str, text: str) -> None:
    assert compile_template(f"<{{{{ {expression} }}}}>").render({}) == f"<{text}>"


def test_interpolation_fills_every_expression_in_a_string() -> None:
    template = compile_template("Paid: {{ order.body.id }} ({{ order.body.total }} USD)")
    assert template.render(ORDER) == "Paid: A-1001 (129.5 USD)"


def test_braces_in_literal_text_are_kept() -> None:
    assert compile_template("{x} {{ order.status }} }{").render(ORDER) == "{x} 200 }{"


def test_an_expression_may_contain_braces_and_closing_marks_in_strings() -> None:
    template = compile_template('{{ {"a": {"b": order.status}} }} {{ "}}" }}')
    assert template.render(ORDER) == '{"a":{"b":200}} }}'


def test_dicts_and_lists_are_rendered_recursively_in_written_order() -> None:
    template = compile_template(
        {
            "method": "POST",
            "url": "https://shop.example/orders/{{ trigger.data.orderId }}",
            "json": {
                "text": "total {{ order.body.total }}",
                "items": [0, "{{ order.body.items }}"],
            },
            "headers": {"Accept": "application/json"},
        }
    )
    rendered = template.render(ORDER)
    assert rendered == {
        "method": "POST",
        "url": "https://shop.example/orders/A-1001",
        "json": {"text": "total 129.5", "items": [0, [1, 2]]},
        "headers": {"Accept": "application/json"},
    }
    assert list(rendered) == ["method", "url", "json", "headers"]


def test_a_template_lists_its_expressions_for_validation() -> None:
    template = compile_template({"a": "{{ order.status }}", "b": ["x {{ order.body.id }}"]})
    assert [e.source for e in template.expressions] == ["order.status", "order.body.id"]


def test_variables_stay_inside_their_own_expression() -> None:
    template = compile_template({"a": "{{ $x := 5 }}", "b": "{{ $x }}"})
    assert template.render({}) == {"a": 5, "b": None}


def test_renders_do_not_share_their_dynamic_parts() -> None:
    template = compile_template({"items": "{{ order.body.items }}", "fixed": 1})
    first = template.render(ORDER)
    first["items"].append(3)
    assert template.render(ORDER) == {"items": [1, 2], "fixed": 1}


def test_an_error_function_in_a_template_fails_the_render_with_its_message() -> None:
    template = compile_template({"a": "ok", "b": '{{ $error("no order") }}'})
    with pytest.raises(ExpressionError) as raised:
        template.render(ORDER)
    assert raised.value.message == "no order"


def test_unclosed_braces_are_a_syntax_error() -> None:
    with pytest.raises(ExpressionError, match=r"url: '\{\{' at position 9 has no matching '}}'"):
        compile_template({"url": "https://x{{ trigger.data.orderId"})


def test_invalid_expression_in_a_template_is_a_syntax_error() -> None:
    with pytest.raises(ExpressionError, match=r"invalid expression 'order\.body\.total >'"):
        compile_template("{{ order.body.total > }}")


def test_template_problems_name_each_path() -> None:
    value = {
        "url": "https://x/{{ trigger.data.orderId",
        "json": {"items": ["fine", "{{ 1 + }}"], "note": "{{ }}"},
        "ok": "{{ order.status }}",
    }
    problems = compile_template_problems(value, "blocks[1].with")
    assert [p.path for p in problems] == [
        "blocks[1].with.url",
        "blocks[1].with.json.items[1]",
        "blocks[1].with.json.note",
    ]
    assert problems[0] == Problem("blocks[1].with.url", "'{{' at position 10 has no matching '}}'")
    assert "Unexpected end of expression at position 3" in problems[1].reason
    assert problems[2].reason == "empty expression in '{{ }}'"


def test_a_valid_template_has_no_problems() -> None:
    assert compile_template_problems({"a": ["{{ order.status }}", 1]}, "blocks[0].with") == []


# --- limits: what the engine is given, and what it gives back ---------------------------------
#
# A long chain crashes the engine's parser (native stack overflow) near 9,400 operators on an
# 8 MiB stack and 1,170 on a 1 MiB one, so these tests pass only because nothing that long
# reaches it: were the check missing, the test process itself would die.

CHAINS = {
    "+": lambda n: "1" + " + 1" * n,
    ".": lambda n: "a" + ".a" * n,
    "and": lambda n: "true" + " and true" * n,
    "&": lambda n: '"x"' + ' & "x"' * n,
    "~>": lambda n: "1" + " ~> $abs" * n,
    "[0]": lambda n: "a" + "[0]" * n,
}
NESTINGS = {
    "parentheses": lambda n: "(" * n + "1" + ")" * n,
    "arrays": lambda n: "[" * n + "1" + "]" * n,
    "objects": lambda n: '{"a":' * n + "1" + "}" * n,
    "calls": lambda n: "$abs(" * n + "1" + ")" * n,
    "conditionals": lambda n: "true ? " * n + "1" + " : 0" * n,
}
DEEP_RESULT = '$reduce([1..{n}], function($acc, $i){{ {{"a": $acc}} }}, {{}})'


@pytest.mark.parametrize("operator", CHAINS)
def test_a_chain_of_ten_thousand_operators_is_refused_before_the_engine_sees_it(
    operator: str,
) -> None:
    with pytest.raises(ExpressionError, match="expression is too large to compile"):
        compile_expression(CHAINS[operator](10_000))


@pytest.mark.parametrize("operator", CHAINS)
def test_a_refused_chain_says_how_many_operators_and_the_limit(operator: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(CHAINS[operator](MAX_NESTING + 1))
    assert caught.value.message == (
        f"expression is too large to compile ({MAX_NESTING + 1} operators nested in one "
        f"chain; at most {MAX_NESTING})"
    )


@pytest.mark.parametrize("kind", NESTINGS)
def test_nesting_brackets_calls_and_conditionals_counts_as_a_chain(kind: str) -> None:
    with pytest.raises(ExpressionError, match=f"{MAX_NESTING + 1} operators nested"):
        compile_expression(NESTINGS[kind](MAX_NESTING + 1))
    assert compile_expression(NESTINGS[kind](100)).evaluate({}) is not None


def test_a_source_longer_than_the_limit_is_refused_without_reading_it() -> None:
    source = '"' + "x" * MAX_SOURCE_LENGTH + '"'
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    assert caught.value.message == (
        f"expression is too large to compile ({MAX_SOURCE_LENGTH + 2:,} characters; "
        f"at most {MAX_SOURCE_LENGTH:,})"
    )


def test_too_many_operators_in_all_are_refused_even_side_by_side() -> None:
    path = "a" + ".a" * (MAX_NESTING - 1)
    source = "[" + ", ".join([path] * 6) + "]"
    with pytest.raises(ExpressionError, match=f"operators; at most {MAX_OPERATORS:,}"):
        compile_expression(source)


def test_items_of_lists_and_blocks_are_siblings_and_do_not_add_up() -> None:
    item = "(1" + " + 1" * 99 + ")"  # 100 operators nested each
    listed = compile_expression("[" + ", ".join([item] * 10) + "]")
    assert listed.evaluate({}) == [100] * 10
    block = compile_expression("(" + "; ".join([item] * 10) + ")")
    assert block.evaluate({}) == 100


def test_operators_in_strings_comments_and_regexes_are_not_a_chain() -> None:
    text = "+" * 3 * MAX_NESTING
    assert compile_expression(f'"{text}" & /* {text} */ "!"').evaluate({}) == text + "!"
    assert compile_expression(f"'{text}'").evaluate({}) == text


def test_a_quote_inside_a_regex_does_not_hide_a_chain_from_the_count() -> None:
    # Were the regex's quote read as opening a string, the chain would look like its text.
    chain = " & 'x'" * (MAX_NESTING + 1)
    with pytest.raises(ExpressionError, match="operators nested"):
        compile_expression(f'$match("a", /"/){chain} & "x"')


def test_the_largest_accepted_expressions_compile_quickly_and_evaluate() -> None:
    path = CHAINS["."](MAX_NESTING - 1)  # a.a.a...: MAX_NESTING steps
    paths = MAX_OPERATORS // MAX_NESTING
    largest = {
        "chain": (CHAINS["+"](MAX_NESTING - 1), MAX_NESTING),
        "path": (path, "end"),
        "calls": (NESTINGS["calls"](MAX_NESTING - 1), 1),
        # A path costs compile time with the square of its length: the most such paths.
        "paths": ("[" + ", ".join([path] * paths) + "]", ["end"] * paths),
        "string": ('"' + "x" * (MAX_SOURCE_LENGTH - 2) + '"', "x" * (MAX_SOURCE_LENGTH - 2)),
    }
    context: dict[str, Any] = {"a": "end"}
    for _ in range(MAX_NESTING - 1):
        context = {"a": context}
    for name, (source, expected) in largest.items():
        assert len(source) <= MAX_SOURCE_LENGTH, name
        started = time.process_time()
        expression = Expression(source)
        # At most 17 ms for these on a quiet machine; a wide bound for a busy one.
        assert time.process_time() - started < 1.0, name
        assert expression.evaluate(context) == expected, name


def test_a_template_may_hold_more_than_one_expression_may() -> None:
    # Its expressions are each checked; together, as one engine call, they may go beyond.
    chain = CHAINS["+"](MAX_NESTING - 1)
    count = MAX_SOURCE_LENGTH // len(chain) + 1
    template = compile_template({f"k{i}": "{{ " + chain + " }}" for i in range(count)})
    assert template.render({}) == {f"k{i}": MAX_NESTING for i in range(count)}


def test_a_too_large_expression_in_a_template_is_a_problem_at_its_path() -> None:
    problems = compile_template_problems(
        {"ok": "{{ 1 + 1 }}", "value": "{{ " + CHAINS["+"](10_000) + " }}"}, "blocks[2].with"
    )
    assert problems == [
        Problem(
            "blocks[2].with.value",
            f"expression is too large to compile (40,001 characters; at most "
            f"{MAX_SOURCE_LENGTH:,})",
        )
    ]


def test_a_long_invalid_expression_is_quoted_shortened_in_its_problem() -> None:
    [problem] = compile_template_problems("{{ " + "a." * 100 + " }}", "blocks[0].with")
    assert problem.reason.startswith("invalid expression '" + "a." * 39 + "a…': ")


def test_a_result_nested_deeper_than_the_limit_fails_with_a_clear_error() -> None:
    deep = DEEP_RESULT.format(n=20_000)
    message = f"expression result is nested more than {MAX_VALUE_DEPTH} levels deep"
    with pytest.raises(ExpressionError, match=message):
        compile_expression(deep).evaluate({})
    for template in ("{{ " + deep + " }}", {"a": "{{ " + deep + " }}", "b": "{{ 1 }}"}):
        with pytest.raises(ExpressionError, match=message):
            compile_template(template).render({})


def test_a_value_too_deep_to_write_as_text_fails_with_a_clear_error() -> None:
    template = compile_template({"text": "as text: {{ " + DEEP_RESULT.format(n=20_000) + " }}"})
    with pytest.raises(ExpressionError, match="nested too deeply to write as text"):
        template.render({})


def test_a_result_at_the_depth_limit_is_returned_whole() -> None:
    at_limit = DEEP_RESULT.format(n=MAX_VALUE_DEPTH - 1)  # the start {} is one more level
    value = compile_expression(at_limit).evaluate({})
    for _ in range(MAX_VALUE_DEPTH - 1):
        value = value["a"]
    assert value == {}
    slotted = compile_template({"deep": "{{ " + at_limit + " }}", "n": "{{ 1 }}"}).render({})
    assert slotted["n"] == 1
    with pytest.raises(ExpressionError, match="nested more than"):
        compile_expression(DEEP_RESULT.format(n=MAX_VALUE_DEPTH)).evaluate({})


def test_deep_lists_count_as_deep_values_too() -> None:
    source = "$reduce([1..200], function($acc, $i){ [[$acc]] }, [])"
    with pytest.raises(ExpressionError, match="nested more than"):
        compile_expression(source).evaluate({})
