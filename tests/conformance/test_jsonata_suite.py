"""The JSONata conformance suite, run through ``reflow.expressions``.

Every case outside ``jsonata_known_failures.txt`` must pass, so an engine upgrade cannot
quietly break expressions; a known failure that starts passing is only reported, so an
upgrade that fixes things never breaks the build.

The cases go through the wrapper as reflow uses it, so its contract applies: undefined and
null are both ``None``, and the suite's "no input" is ``None``. Error codes are read from the
engine's error, which the wrapper keeps as the ``ExpressionError``'s cause.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reflow.errors import ExpressionError
from reflow.expressions import DEFAULT_MAX_DEPTH, DEFAULT_TIMEOUT_MS, compile_expression

SUITE = Path(__file__).parents[3] / "shared/testdata/jsonata-test-suite"
KNOWN_FAILURES = Path(__file__).with_name("jsonata_known_failures.txt")

pytestmark = pytest.mark.skipif(
    not (SUITE / "groups").is_dir(), reason=f"JSONata test suite not found at {SUITE}"
)


def test_every_case_outside_the_known_failures_passes(conformance_report: list[str]) -> None:
    failures: dict[str, str] = {}
    total = 0
    for case_id, case, data in _cases():
        total += 1
        reason = _failure(case, data)
        if reason is not None:
            failures[case_id] = reason
    known = _known_failures()
    passed = total - len(failures)
    conformance_report.append(
        f"JSONata conformance: {passed}/{total} passed ({100 * passed / total:.1f}%),"
        f" {len(known)} known failures"
    )
    fixed = sorted(known - failures.keys())
    if fixed:
        conformance_report.append(
            f"{len(fixed)} known failures now pass; remove them from {KNOWN_FAILURES.name}: "
            + ", ".join(fixed)
        )
    regressions = sorted(failures.keys() - known)
    assert not regressions, "cases that used to pass now fail:\n" + "\n".join(
        f"  {case_id}: {failures[case_id]}" for case_id in regressions
    )


def _cases() -> Iterator[tuple[str, dict[str, Any], Any]]:
    datasets = {p.stem: json.loads(p.read_text()) for p in (SUITE / "datasets").glob("*.json")}
    for path in sorted((SUITE / "groups").glob("*/*.json")):
        document = json.loads(path.read_text())
        several = isinstance(document, list)
        for index, case in enumerate(document if several else [document]):
            case_id = f"{path.parent.name}/{path.stem}" + (f"[{index}]" if several else "")
            if "expr-file" in case:
                case["expr"] = (path.parent / case["expr-file"]).read_text()
            if "data" in case:
                data = case["data"]
            else:
                data = datasets.get(case.get("dataset") or "")
            yield case_id, case, data


def _failure(case: dict[str, Any], data: Any) -> str | None:
    """Why the case fails, or None when it passes."""
    expected_code = case.get("code") or case.get("error", {}).get("code")
    try:
        # Each case is bounded: by its own limits where the suite gives them (some cases are
        # deliberately endless), by reflow's defaults otherwise.
        expression = compile_expression(
            case["expr"],
            timeout_ms=case.get("timelimit") or DEFAULT_TIMEOUT_MS,
            max_depth=case.get("depth") or DEFAULT_MAX_DEPTH,
        )
        result = expression.evaluate(data, bindings=case.get("bindings") or None)
    except ExpressionError as error:
        code = getattr(error.__cause__, "code", None)
        if expected_code is None:
            return f"raised {error.message}"
        return None if code == expected_code else f"raised {code}, expected {expected_code}"
    if expected_code is not None:
        return f"gave {result!r}, expected error {expected_code}"
    expected = None if case.get("undefinedResult") else case.get("result")
    if case.get("unordered") and isinstance(result, list) and isinstance(expected, list):
        result, expected = sorted(result, key=_json_key), sorted(expected, key=_json_key)
    return None if _same(result, expected) else f"gave {result!r:.200}, expected {expected!r:.200}"


def _json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _same(actual: Any, expected: Any) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1 (as Python's == would have it)."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        return actual == expected
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(map(_same, actual, expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            _same(actual[key], expected[key]) for key in actual
        )
    return type(actual) is type(expected) and actual == expected


def _known_failures() -> set[str]:
    lines = KNOWN_FAILURES.read_text().splitlines() if KNOWN_FAILURES.exists() else []
    return {line.split("#")[0].strip() for line in lines} - {""}
