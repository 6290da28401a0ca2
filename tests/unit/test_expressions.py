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
