"""The pure built-in blocks: no I/O, so their steps may ride in the next commit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from reflow.blocks.base import BlockContext, Outcome
from reflow.domain.definitions import BlockSpec
from reflow.errors import BlockFailed


def _truthy(value: Any) -> bool:
    # JSONata's boolean casting: empty strings, arrays, objects and zero are false.
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


class Transform:
    """Outputs its ``value`` (usually an expression over earlier outputs)."""

    type: ClassVar[str] = "transform"
    spec: ClassVar[BlockSpec] = BlockSpec(required=frozenset({"value"}), optional=frozenset())
    side_effects: ClassVar[bool] = False

    async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
        """Output the rendered value."""
        return Outcome(params["value"])


class Filter:
    """Ends the execution as succeeded when ``when`` is false."""

    type: ClassVar[str] = "filter"
    spec: ClassVar[BlockSpec] = BlockSpec(required=frozenset({"when"}), optional=frozenset())
    side_effects: ClassVar[bool] = False

    async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
        """Output the condition; stop the execution when it is false."""
        passed = _truthy(params["when"])
        return Outcome(passed, stop=not passed)

    def replay(self, output: Any) -> Outcome:
        """A recorded false condition stops the execution again."""
        return Outcome(output, stop=not output)


class Branch:
    """Runs its ``then`` blocks when ``if`` is true, else its ``else`` blocks."""

    type: ClassVar[str] = "branch"
    spec: ClassVar[BlockSpec] = BlockSpec(
        required=frozenset({"if"}), optional=frozenset(), child_lists=frozenset({"then", "else"})
    )
    side_effects: ClassVar[bool] = False

    async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
        """Output which arm ran."""
        arm = "then" if _truthy(params["if"]) else "else"
        return Outcome(arm, children=arm)

    def replay(self, output: Any) -> Outcome:
        """The recorded arm runs again (its blocks resume or run)."""
        return Outcome(output, children=output if output in ("then", "else") else None)


class Respond:
    """Sets the execution's answer: ``body`` and ``status`` (default 200)."""

    type: ClassVar[str] = "respond"
    spec: ClassVar[BlockSpec] = BlockSpec(
        required=frozenset(), optional=frozenset({"body", "status"})
    )
    side_effects: ClassVar[bool] = False

    async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
        """Output the body; the engine records it as the execution's output."""
        status = params.get("status", 200)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            message = f"status must be an HTTP status code, got {status!r}"
            raise BlockFailed(message, retryable=False)
        return Outcome(params.get("body"), respond_status=status)

    def replay(self, output: Any) -> Outcome:
        """The recorded body answers again (its status is kept on the execution)."""
        return Outcome(output, respond_status=200)


class Fail:
    """Fails the execution with ``message``; never retried."""

    type: ClassVar[str] = "fail"
    spec: ClassVar[BlockSpec] = BlockSpec(required=frozenset({"message"}), optional=frozenset())
    side_effects: ClassVar[bool] = False

    async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
        """Raise the configured failure."""
        message = params["message"]
        raise BlockFailed(message if isinstance(message, str) else repr(message), retryable=False)
