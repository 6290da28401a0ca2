"""The blocks that shape the step loop: ``loop`` iterates, ``delay`` suspends.

Neither does I/O. A loop's outcome asks the engine to run its ``blocks`` once per item
(``Outcome.iterate``); a delay's asks it to suspend the execution until a time
(``Outcome.suspend_until``). The engine records, resumes and reruns both item by item
(docs/workflows.md "Loops and delays").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from reflow.blocks.base import BlockContext, Iteration, Outcome
from reflow.domain.definitions import BlockSpec
from reflow.domain.durations import parse_duration
from reflow.errors import BlockFailed
from reflow.ids import iso_ms, parse_iso_ms

MAX_ITEMS = 10_000
MAX_CONCURRENCY = 50
MAX_DELAY_SECONDS = 366 * 86_400
_ON_ERROR = ("fail", "collect")


def _literal(value: Any) -> bool:
    """True when the value is written as it is, not computed by a template."""
    return not (isinstance(value, str) and "{{" in value)


def _concurrency_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 1 <= value <= MAX_CONCURRENCY:
        return f"must be a whole number from 1 to {MAX_CONCURRENCY}, not {value!r}"
    return None


def _on_error_problem(value: Any) -> str | None:
    if value not in _ON_ERROR:
        return f"must be 'fail' (a failed item fails the loop) or 'collect', not {value!r}"
    return None


def _check_loop(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = []
    for key, check in (("concurrency", _concurrency_problem), ("onError", _on_error_problem)):
        value = params.get(key)
        if value is not None and _literal(value) and (reason := check(value)):
            problems.append((key, reason))
    over = params.get("over")
    if over is not None and _literal(over) and not isinstance(over, list):
        problems.append(("over", f"must be a list or an expression giving one, not {over!r}"))
    return problems


class Loop:
    """Runs its ``blocks`` for each item of ``over``, ``concurrency`` at a time.

    Inside, ``item`` and ``index`` are the current item and its position; the item's
    blocks see the outputs of blocks before the loop and of their own item. The output is
    one object per item: the outputs of the item's blocks by block id (with ``error`` for
    a failed item when ``onError`` is ``collect``).
    """

    type: ClassVar[str] = "loop"
    spec: ClassVar[BlockSpec] = BlockSpec(
        required=frozenset({"over"}), optional=frozenset({"concurrency", "onError"}),
        child_lists=frozenset({"blocks"}), check=_check_loop,
    )
    side_effects: ClassVar[bool] = False

    async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
        """Ask the engine to iterate over the rendered ``over``."""
        items = params["over"]
        if items is None:
            items = []  # a path that matched nothing
        elif not isinstance(items, list):
            items = [items]  # JSONata gives a single value where a path matched one item
        if len(items) > MAX_ITEMS:
            raise BlockFailed(f"over gave {len(items)} items; a loop runs at most "
                              f"{MAX_ITEMS} (split the list, or run a workflow per batch)",
                              retryable=False)
        concurrency = params.get("concurrency", 1)
        on_error = params.get("onError", "fail")
        for key, value, check in (("concurrency", concurrency, _concurrency_problem),
                                  ("onError", on_error, _on_error_problem)):
            if reason := check(value):
                raise BlockFailed(f"{key} {reason}", retryable=False)
        return Outcome(None, iterate=Iteration(items, "blocks", concurrency,
                                               collect=on_error == "collect"))


def _check_delay(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    given = [key for key in ("for", "until") if params.get(key) is not None]
    if len(given) != 1:
        return [("for", "give exactly one of for (a duration) and until (a time)")]
    key = given[0]
    value = params[key]
    if not _literal(value):
        return []
    try:
        _delay_until(key, value, 0)
    except BlockFailed as exc:
        return [(key, exc.message)]
    return []


def _delay_until(key: str, value: Any, now: int) -> int:
    """When a delay ends (ms since epoch) for ``for`` or ``until`` given ``value``."""
    if key == "for":
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise BlockFailed(f"for: {exc}", retryable=False) from None
        if seconds > MAX_DELAY_SECONDS:
            raise BlockFailed(f"for: a delay lasts at most 366 days, not {value!r}",
                              retryable=False)
        return now + round(seconds * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(value)  # ms since the epoch, as $millis() gives
    if isinstance(value, str):
        try:
            return parse_iso_ms(value)
        except ValueError:
            pass
    raise BlockFailed(f"until must be an ISO 8601 time (2026-12-01T09:00:00Z) or ms since "
                      f"the epoch, not {value!r}", retryable=False)


class Delay:
    """Waits ``for`` a duration or ``until`` a time, holding no worker meanwhile.

    The execution becomes ``waiting`` and is resumed when the time comes (a restart
    meanwhile loses nothing). The output says when it was due and when it resumed.
    """

    type: ClassVar[str] = "delay"
    spec: ClassVar[BlockSpec] = BlockSpec(
        required=frozenset(), optional=frozenset({"for", "until"}), check=_check_delay,
    )
    side_effects: ClassVar[bool] = False

    async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
        """Suspend until the time; go on at once when it has passed."""
        given = [key for key in ("for", "until") if params.get(key) is not None]
        if len(given) != 1:
            raise BlockFailed("give exactly one of for (a duration) and until (a time)",
                              retryable=False)
        until = _delay_until(given[0], params[given[0]], ctx.now)
        if until - ctx.now > MAX_DELAY_SECONDS * 1000:
            raise BlockFailed(f"until: a delay lasts at most 366 days; {iso_ms(until)} is "
                              "further", retryable=False)
        if until <= ctx.now:
            return Outcome({"until": iso_ms(until), "resumedAt": iso_ms(ctx.now)})
        return Outcome({"until": iso_ms(until)}, suspend_until=until)
