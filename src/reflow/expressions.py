"""JSONata expressions and ``{{ }}`` templates: compiled once, evaluated within a budget.

This is the only module that imports ``jsonata`` (the jsonata-rs engine), so the engine can
be swapped here alone. docs/expressions.md says why this engine, what the budget bounds and
what it does not.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Final

import jsonata

from reflow.errors import ExpressionError, Problem

DEFAULT_TIMEOUT_MS: Final = 1000
# Counted in engine evaluation frames (a recursive call costs two or three). The engine
# recurses on the native stack and crashes the process near 6,500 frames on an 8 MiB stack,
# so the default keeps a wide margin while allowing ~200 levels of user recursion.
DEFAULT_MAX_DEPTH: Final = 500
_CACHE_SIZE: Final = 4096

# What the engine is given to compile. Its parser and the passes over the tree it builds recurse
# once per nested operator on the native stack, and a stack overflow kills the process: a chain
# of 9,400 operators (`+`, `.`, `and`, `&`, `~>`, `[0]`...) crashes on an 8 MiB stack, 1,170 on
# a 1 MiB thread stack (nested calls: 890). 400 keeps a 23x margin on the first and 2.2x on the
# second, and leaves 100 frames of the depth budget to whatever such an expression calls
# (evaluating a chain takes a frame per operator). docs/expressions.md has the measurements.
MAX_NESTING: Final = 400
# All operators, nested or not: bounds compile time, which grows with the square of a path's
# length (5 paths of 400 steps: ~17 ms).
MAX_OPERATORS: Final = 2_000
# A backstop that needs no tokenizing: each operator of a chain comes with an operand, two
# characters at least, so this many characters cannot nest deep enough to crash an 8 MiB stack
# even if the scan below misread the source.
MAX_SOURCE_LENGTH: Final = 10_000
# Results deeper than this are refused: they could not be stored (orjson writes 255 levels at
# most, and a template adds its own), and the engine crashes converting ~11,000 levels.
MAX_VALUE_DEPTH: Final = 128
_CONTAINERS: Final = frozenset({dict, list})  # what the engine gives that can nest

# $error() and $assert() carry the author's own message, which is then the whole message.
_AUTHORED_CODES: Final = frozenset({"D3137", "D3141"})
_TIMEOUT_CODE: Final = "TIMEOUT"
_TOO_DEEP_CODE: Final = "STACK_OVERFLOW"

_OPEN: Final = "{{"
_CLOSE: Final = "}}"
_SHOWN: Final = 80  # characters of a faulty expression quoted in its problem


_PER_THREAD = threading.local()


class Expression:
    """A compiled JSONata expression; ``evaluate`` runs it within its time and depth budget."""

    __slots__ = ("max_depth", "source", "timeout_ms")

    def __init__(
        self,
        source: str,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        max_depth: int = DEFAULT_MAX_DEPTH,
        slot_object: bool = False,
    ) -> None:
        """``slot_object`` is only for a template's ``{"s0": (e0), ...}``: built from checked
        expressions, it is not checked again (together they may be larger than one may)."""
        if not slot_object and (problem := size_problem(source)) is not None:
            raise ExpressionError(problem)
        self.source = source
        self.timeout_ms = timeout_ms
        self.max_depth = max_depth
        self._compiled()  # a syntax error shows now, not at the first evaluation

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(
        self, context: Mapping[str, Any], *, bindings: Mapping[str, Any] | None = None
    ) -> Any:
        """Evaluate against ``context`` (``$`` variables from ``bindings``); undefined is None."""
        return _depth_checked(self._evaluate(context, bindings))

    def _evaluate(self, context: Mapping[str, Any], bindings: Mapping[str, Any] | None) -> Any:
        """The engine's result, not checked for depth."""
        if not isinstance(context, dict) and isinstance(context, Mapping):
            context = dict(context)  # the engine converts only real dicts
        try:
            # No local holds the engine object: a traceback kept alive elsewhere must not
            # carry it to another thread.
            return self._compiled().evaluate(
                context, None if bindings is None else dict(bindings)
            )
        except jsonata.JsonataError as error:
            raise ExpressionError(self._failure_message(error)) from error
        except (ValueError, OverflowError) as error:
            # The engine's conversion of the context: a set, a date, an int beyond 64 bits...
            raise ExpressionError(f"expression input is not JSON data: {error}") from error
        except RecursionError as error:
            raise ExpressionError(
                f"expression input or result is nested too deeply to convert: {error}"
            ) from error
        except MemoryError as error:
            raise ExpressionError("expression ran out of memory") from error

    def _compiled(self) -> jsonata.Jsonata:
        # A jsonata-rs object may be used, and dropped, only on the thread that made it
        # (dropping it elsewhere panics). So engine objects live in a bounded per-thread map that
        # only its own thread touches and that dies with the thread; an Expression holds
        # none, and may be dropped anywhere.
        cache: OrderedDict[Expression, jsonata.Jsonata] | None = getattr(
            _PER_THREAD, "cache", None
        )
        if cache is None:
            cache = _PER_THREAD.cache = OrderedDict()
        compiled = cache.get(self)
        if compiled is not None:
            return compiled
        try:
            compiled = jsonata.Jsonata(self.source)
        except jsonata.JsonataError as error:
            raise ExpressionError(_syntax_message(error)) from error
        except UnicodeError as error:
            raise ExpressionError(f"expression is not valid text: {error}") from error
        compiled.set_runtime_bounds(self.timeout_ms, self.max_depth)
        cache[self] = compiled
        if len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
        return compiled

    def _failure_message(self, error: jsonata.JsonataError) -> str:
        code = error.code
        if code in _AUTHORED_CODES:
            return str(error)
        if code == _TIMEOUT_CODE:
            return f"expression ran past its {self.timeout_ms} ms budget (an endless loop?)"
        if code == _TOO_DEEP_CODE:
            return (
                f"expression nested deeper than its budget of {self.max_depth} "
                "(endless recursion? make the recursive call the last thing the function does)"
            )
        return f"{error} ({code})"


def _syntax_message(error: jsonata.JsonataError) -> str:
    return f"{error} at position {error.position} ({error.code})"


def _depth_checked(value: Any) -> Any:
    """``value``, unless it is nested deeper than MAX_VALUE_DEPTH: then ExpressionError."""
    if type(value) in _CONTAINERS and _nested_deeper_than(value, MAX_VALUE_DEPTH - 1):
        raise ExpressionError(
            f"expression result is nested more than {MAX_VALUE_DEPTH} levels deep"
        )
    return value


def _nested_deeper_than(value: dict[Any, Any] | list[Any], levels: int) -> bool:
    """Whether a dict or list holds dicts or lists more than ``levels`` levels below its top.

    Only containers are descended, so a result of scalars costs one pass over its items.
    """
    items = value.values() if type(value) is dict else value
    if levels <= 0:
        return any(type(item) is dict or type(item) is list for item in items)
    for item in items:
        kind = type(item)
        if (kind is dict or kind is list) and _nested_deeper_than(item, levels - 1):
            return True
    return False


# One token of JSONata text, as the engine's tokenizer cuts it, for counting operators only.
_TOKEN: Final = re.compile(
    r"""
      (?P<space> \s+ | /\*.*?(?:\*/|\Z) )
    | (?P<value> "(?:[^"\\]|\\(?:.|\Z))*(?:"|\Z) | '(?:[^'\\]|\\(?:.|\Z))*(?:'|\Z)
               | `[^`]*(?:`|\Z) | \d+(?:\.\d+)?(?:[eE][-+]?\d+)?
               | \$?[^\s()\[\]{}.,;:!=<>+\-*/%&|?~^@\#"'`$]+ | \$ )
    | (?P<open> [(\[{] )
    | (?P<close> [)\]}] )
    | (?P<separator> [,;] )
    | (?P<slash> / )
    | (?P<operator> ~> | := | != | <= | >= | \.\. | [-+*%&.?=<>!~^@\#|] )
    | (?P<other> . )
    """,
    re.VERBOSE | re.DOTALL,
)
# A regex literal, after its opening slash; its flags follow the closing one.
_REGEX_LITERAL: Final = re.compile(r"(?:[^/\\]|\\(?:.|\Z))*(?:/[a-z]*|\Z)", re.DOTALL)
_OPERATOR_CHARS: Final = re.compile(r"[-+*%&.?=<>!~^@#|(\[{]")
_WORD_OPERATORS: Final = frozenset({"and", "or", "in"})
# _TOKEN's groups by number (Match.lastindex), cheaper to compare than by name.
(_TOKEN_SPACE, _TOKEN_VALUE, _TOKEN_OPEN, _TOKEN_CLOSE, _TOKEN_SEPARATOR, _TOKEN_SLASH,
 _TOKEN_OPERATOR, _TOKEN_OTHER) = range(1, 9)


def size_problem(source: str) -> str | None:
    """Why ``source`` is too large to give the engine, or None: the check before compiling.

    One pass counts the operators that can nest into each other: a chain (``a.b.c``,
    ``1 + 2 + 3``) or brackets inside brackets add up, while items separated by ``,`` or ``;``
    are siblings and do not. Strings and comments are skipped.
    """
    if len(source) > MAX_SOURCE_LENGTH:
        return (
            f"expression is too large to compile ({len(source):,} characters; "
            f"at most {MAX_SOURCE_LENGTH:,})"
        )
    if len(source) <= MAX_NESTING:
        return None  # every operator takes a character: this many cannot be too many
    nesting, count = _operators(source)
    if nesting > MAX_NESTING:
        return (
            f"expression is too large to compile ({nesting:,} operators nested in one chain; "
            f"at most {MAX_NESTING:,})"
        )
    if count > MAX_OPERATORS:
        return (
            f"expression is too large to compile ({count:,} operators; "
            f"at most {MAX_OPERATORS:,})"
        )
    return None


def _operators(source: str) -> tuple[int, int]:
    """The most operators nested at any point of ``source`` (an upper bound of its depth), and
    how many operators it has."""
    outer: list[int] = []  # operators counted in each enclosing bracket's current item
    current = total = deepest = 0  # this item's count; the sum over all open levels; max
    count = 0
    prefix = True  # where the engine reads '/' as the start of a regex, not a division
    index, size = 0, len(source)
    while index < size:
        for token in _TOKEN.finditer(source, index):
            kind = token.lastindex
            if kind == _TOKEN_SPACE:
                continue
            if kind == _TOKEN_VALUE:
                if token.group() not in _WORD_OPERATORS:
                    prefix = False
                    continue
                added = 1
            elif kind == _TOKEN_OPEN:
                outer.append(current + 1)
                total += 1
                count += 1
                current, prefix = 0, True
                deepest = max(deepest, total)
                continue
            elif kind == _TOKEN_SEPARATOR:  # the next item is a sibling of this one
                total -= current
                current, prefix = 0, True
                continue
            elif kind == _TOKEN_CLOSE:
                total -= current
                # An unmatched closer is a syntax error: the engine stops there anyway.
                current, prefix = (outer.pop() if outer else 0), False
                continue
            elif kind == _TOKEN_SLASH and prefix:
                literal = _REGEX_LITERAL.match(source, token.end())
                assert literal is not None  # it can match the empty string
                # Its characters count as operators too: should the engine read a division
                # here, nothing it parses goes uncounted.
                added = len(_OPERATOR_CHARS.findall(literal.group())) + 1
                current += added
                total += added
                count += added
                deepest = max(deepest, total)
                index, prefix = literal.end(), False
                break  # the scan resumes after the literal
            else:  # an operator, a division, or ':' and the like
                added = kind != _TOKEN_OTHER
                prefix = True
            current += added
            total += added
            count += added
            deepest = max(deepest, total)
        else:
            break
    return deepest, count


def compile_expression(
    source: str,
    *,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Expression:
    """Compile ``source``, once per source (cached); a syntax error raises ExpressionError."""
    return _compile_cached(source, timeout_ms, max_depth)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile_cached(source: str, timeout_ms: int, max_depth: int) -> Expression:
    return Expression(source, timeout_ms=timeout_ms, max_depth=max_depth)


# --- templates --------------------------------------------------------------------------------
#
# A template renders with ONE engine call, however many expressions it holds: the engine copies
# the whole context into its own values on every call (linear in the context's size), so the
# expressions are gathered into one JSONata object of "slots" ({"s0": (expr0), "s1": ...}) and
# precomputed builders put the slot values into a copy of the template's constant skeleton.

_Build = Callable[[dict[str, Any]], Any]

# $string writes numbers with 15 significant digits; integers below this need no rounding.
_EXACT_INT: Final = 10**15
_PRECISION_15: Final = Context(prec=15, rounding=ROUND_HALF_UP)


class Template:
    """A compiled ``with`` value: ``render(context)`` gives it with every ``{{ }}`` evaluated.

    Constant parts are built once and returned shared by every render: callers must not
    mutate what ``render`` returns (copy it first).
    """

    __slots__ = ("_build", "_expression", "_typed", "_value", "expressions", "is_constant")

    def __init__(
        self,
        value: Any,
        expression: Expression | None,
        build: _Build | None,
        expressions: tuple[Expression, ...],
        typed: tuple[str, ...] = (),
    ) -> None:
        self._value = value
        self._expression = expression
        self._build = build
        # The slots whose values go into the result as they are (the others become text).
        self._typed = typed
        self.expressions = expressions
        self.is_constant = expression is None

    def __repr__(self) -> str:
        sources = [e.source for e in self.expressions]
        return f"Template(constant={self.is_constant}, expressions={sources!r})"

    def render(self, context: Mapping[str, Any]) -> Any:
        """The value with each expression evaluated on ``context``; raises ExpressionError."""
        expression = self._expression
        if expression is None:
            return self._value
        build = self._build
        # Inline type checks before any depth check: this is the hot path.
        if build is None:
            value = expression._evaluate(context, None)
            return _depth_checked(value) if type(value) in _CONTAINERS else value
        # Only the slots used as they are need a depth check: a deep value written as text is
        # flat, and a deeper one than Python can write fails below. Checking the slot object
        # as a whole would cost the common all-text template ~8 % of its render.
        slots = expression._evaluate(context, None)
        for name in self._typed:
            if type(value := slots.get(name)) in _CONTAINERS:  # undefined leaves a slot out
                _depth_checked(value)
        try:
            return build(slots)
        except RecursionError as error:
            raise ExpressionError(
                "expression result is nested too deeply to write as text"
            ) from error


def compile_template(
    value: Any,
    *,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Template:
    """Compile a template value once; any syntax problem raises ExpressionError naming its path."""
    compiler = _TemplateCompiler(timeout_ms, max_depth)
    node = compiler.node(value, "")
    if compiler.problems:
        raise ExpressionError("; ".join(str(p) for p in compiler.problems))
    expressions = tuple(compiler.expressions)
    if node.build is None:
        return Template(node.value, None, None, expressions)
    if node.single is not None:
        # A lone "{{ expr }}" at the root is that expression: no slot object to unpack.
        return Template(None, node.single, None, expressions)
    slots = ", ".join(f'"{name}": {source}' for name, source in compiler.slots)
    combined = Expression(
        "{" + slots + "}", timeout_ms=timeout_ms, max_depth=max_depth, slot_object=True
    )
    return Template(None, combined, node.build, expressions, tuple(compiler.typed))


def compile_template_problems(value: Any, path: str) -> list[Problem]:
    """Every template syntax problem in ``value``, each at its path (``blocks[1].with.url``)."""
    compiler = _TemplateCompiler(DEFAULT_TIMEOUT_MS, DEFAULT_MAX_DEPTH)
    compiler.node(value, path)
    return compiler.problems


class _Node:
    """A compiled template part: a constant ``value``, or a ``build`` over the slot values."""

    __slots__ = ("build", "single", "value")

    def __init__(
        self,
        value: Any = None,
        build: _Build | None = None,
        single: Expression | None = None,
    ) -> None:
        self.value = value
        self.build = build
        self.single = single


class _TemplateCompiler:
    """Walks a template value once, collecting slots, expressions and problems."""

    def __init__(self, timeout_ms: int, max_depth: int) -> None:
        self.timeout_ms = timeout_ms
        self.max_depth = max_depth
        self.problems: list[Problem] = []
        self.expressions: list[Expression] = []
        self.slots: list[tuple[str, str]] = []
        self.typed: list[str] = []  # slots whose values are used as they are, not as text

    def node(self, value: Any, path: str) -> _Node:
        if isinstance(value, str):
            return self._string(value, path)
        if isinstance(value, Mapping):
            return self._mapping(value, path)
        if isinstance(value, list | tuple):
            return self._sequence(value, path)
        return _Node(value)

    def _mapping(self, value: Mapping[Any, Any], path: str) -> _Node:
        skeleton: dict[Any, Any] = {}
        dynamic: list[tuple[Any, _Build]] = []
        for key, item in value.items():
            child = self.node(item, f"{path}.{key}" if path else str(key))
            skeleton[key] = child.value
            if child.build is not None:
                dynamic.append((key, child.build))
        if not dynamic:
            return _Node(skeleton)
        parts = tuple(dynamic)

        def build(slots: dict[str, Any]) -> dict[Any, Any]:
            # Assigning over the skeleton's placeholder keys keeps the written key order.
            out = skeleton.copy()
            for key, part in parts:
                out[key] = part(slots)
            return out

        return _Node(build=build)

    def _sequence(self, value: list[Any] | tuple[Any, ...], path: str) -> _Node:
        skeleton: list[Any] = []
        dynamic: list[tuple[int, _Build]] = []
        for index, item in enumerate(value):
            child = self.node(item, f"{path}[{index}]")
            skeleton.append(child.value)
            if child.build is not None:
                dynamic.append((index, child.build))
        if not dynamic:
            return _Node(skeleton)
        parts = tuple(dynamic)

        def build(slots: dict[str, Any]) -> list[Any]:
            out = skeleton.copy()
            for index, part in parts:
                out[index] = part(slots)
            return out

        return _Node(build=build)

    def _string(self, text: str, path: str) -> _Node:
        try:
            pieces = _split(text)
        except _Unclosed as problem:
            self.problems.append(Problem(path, problem.reason))
            return _Node(text)
        holes = [piece for piece in pieces if isinstance(piece, _Hole)]
        if not holes:
            return _Node(text)
        compiled = [e for e in (self._expression(h.source, path) for h in holes) if e is not None]
        if len(compiled) < len(holes):
            return _Node(text)  # the problem is recorded; nothing will render this template
        names = [self._slot(expression.source) for expression in compiled]
        if len(holes) == 1 and all(isinstance(p, _Hole) or p.isspace() for p in pieces):
            self.typed.append(names[0])
            return _Node(build=operator.methodcaller("get", names[0]), single=compiled[0])
        return _Node(build=_interpolation(pieces, names))

    def _expression(self, source: str, path: str) -> Expression | None:
        if not source:
            self.problems.append(Problem(path, "empty expression in '{{ }}'"))
            return None
        if (too_large := size_problem(source)) is not None:
            self.problems.append(Problem(path, too_large))  # the source itself is no help
            return None
        try:
            expression = compile_expression(
                source, timeout_ms=self.timeout_ms, max_depth=self.max_depth
            )
        except ExpressionError as error:
            shown = source if len(source) <= _SHOWN else source[: _SHOWN - 1] + "…"
            self.problems.append(Problem(path, f"invalid expression {shown!r}: {error.message}"))
            return None
        self.expressions.append(expression)
        return expression

    def _slot(self, source: str) -> str:
        name = f"s{len(self.slots)}"
        # Parenthesised, the expression is a block of its own: its variables stay inside.
        self.slots.append((name, f"({source})"))
        return name


def _interpolation(pieces: list[str | _Hole], names: list[str]) -> _Build:
    if len(names) == 1:
        # The common "https://host/{{ id }}" shape, without a format string to parse.
        before, after = _around_hole(pieces)
        name = names[0]

        def build_one(slots: dict[str, Any]) -> str:
            return before + _text(slots.get(name)) + after

        return build_one
    # Literal text goes through str.format, so its own braces are escaped for it.
    form = "".join(
        "{}" if isinstance(piece, _Hole) else piece.replace("{", "{{").replace("}", "}}")
        for piece in pieces
    )

    def build(slots: dict[str, Any]) -> str:
        return form.format(*map(_text, map(slots.get, names)))

    return build


def _around_hole(pieces: list[str | _Hole]) -> tuple[str, str]:
    """The literal text before and after the one hole in ``pieces``."""
    at = next(i for i, piece in enumerate(pieces) if isinstance(piece, _Hole))
    return "".join(map(str, pieces[:at])), "".join(map(str, pieces[at + 1 :]))


def _text(value: Any) -> str:
    """``value`` as interpolated text: as JSONata's ``$string`` writes it, but null is ""."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return _json_text(value)


def _json_text(value: Any) -> str:
    """Compact JSON as JSONata's ``$string`` writes it (numbers to 15 significant digits).

    Done here rather than by the engine: a call to its ``$string`` costs more than a render.
    """
    kind = type(value)  # exact types first: these are what the engine returns
    if kind is float:
        return _number_text(value)
    if kind is int:
        return str(value) if -_EXACT_INT < value < _EXACT_INT else _number_text(float(value))
    if kind is bool:
        return "true" if value else "false"
    if kind is str:
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        items = (f"{_json_text(str(k))}:{_json_text(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json_text(item) for item in value) + "]"
    if isinstance(value, int | float):
        return _number_text(float(value))
    return ""  # a function: JSONata writes it as ""


def _number_text(number: float) -> str:
    """JavaScript's Number(n.toPrecision(15)).toString(), which JSONata's ``$string`` uses."""
    if not math.isfinite(number):
        raise ExpressionError(f"cannot write {number} as text (D3001)")
    if number == 0:
        return "0"  # -0 too, as in JavaScript
    text = repr(number)  # the shortest round trip, as in JavaScript
    if "e" not in text and len(text) - ("." in text) - (text[0] == "-") <= 15:
        # 15 digits or fewer survive toPrecision(15) unchanged, and in this range Python and
        # JavaScript both write plain decimals.
        return text[:-2] if text.endswith(".0") else text
    # toPrecision rounds the exact binary value half away from zero; Decimal does it exactly.
    text = repr(float(_PRECISION_15.plus(Decimal(number))))
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    significant = digits.lstrip("0")
    # The value is 0.<significant> x 10**point.
    point = len(whole) + int(exponent or 0) - (len(digits) - len(significant))
    significant = significant.rstrip("0")
    size = len(significant)
    if size <= point <= 21:
        body = significant + "0" * (point - size)
    elif 0 < point <= 21:
        body = f"{significant[:point]}.{significant[point:]}"
    elif -6 < point <= 0:
        body = "0." + "0" * -point + significant
    else:
        power = point - 1
        head = significant[0] + (f".{significant[1:]}" if size > 1 else "")
        body = f"{head}e{'+' if power > 0 else '-'}{abs(power)}"
    return sign + body


class _Hole:
    """One ``{{ ... }}`` in a string: the expression inside it."""

    __slots__ = ("source",)

    def __init__(self, source: str) -> None:
        self.source = source


class _Unclosed(Exception):
    """A ``{{`` without its ``}}``."""

    def __init__(self, start: int) -> None:
        self.reason = f"'{_OPEN}' at position {start} has no matching '{_CLOSE}'"
        super().__init__(self.reason)


def _split(text: str) -> list[str | _Hole]:
    """The text cut into literal strings and holes; raises _Unclosed for a ``{{`` left open."""
    pieces: list[str | _Hole] = []
    done = 0
    while (start := text.find(_OPEN, done)) != -1:
        end = _closing(text, start + len(_OPEN))
        if end == -1:
            raise _Unclosed(start)
        if start > done:
            pieces.append(text[done:start])
        pieces.append(_Hole(text[start + len(_OPEN) : end].strip()))
        done = end + len(_CLOSE)
    if done < len(text):
        pieces.append(text[done:])
    return pieces


def _closing(text: str, index: int) -> int:
    """Where the ``}}`` closing a hole starts: the first one outside JSONata strings, comments
    and braces, so ``{{ {"a": {"b": 1}} }}`` closes at the end; -1 if there is none."""
    depth = 0
    size = len(text)
    while index < size:
        char = text[index]
        if char in "\"'`":
            index = _after_quoted(text, index)
            continue
        if text.startswith("/*", index):
            end = text.find("*/", index + 2)
            index = size if end == -1 else end + 2
            continue
        if char == "\\":
            index += 2  # an escaped brace in a regex literal does not nest
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0 and text.startswith(_CLOSE, index):
                return index
            depth = max(depth - 1, 0)
        index += 1
    return -1


def _after_quoted(text: str, index: int) -> int:
    quote = text[index]
    index += 1
    size = len(text)
    while index < size:
        char = text[index]
        if char == "\\" and quote != "`":
            index += 2
            continue
        if char == quote:
            return index + 1
        index += 1
    return size
