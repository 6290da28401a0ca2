"""The Block protocol: what the engine needs from every block type, built-in or plugged in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from reflow.domain.definitions import BlockSpec

if TYPE_CHECKING:
    from reflow.blocks.http import HttpClients


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What a running block may know about its execution, beside its resolved params."""

    execution_id: str
    block_id: str
    attempt: int
    # Stable per (execution, block) across retries and resumes, so targets can deduplicate.
    idempotency_key: str
    http: HttpClients | None = None
    credentials: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Seconds this attempt may take (the block's `timeout`, within the execution's).
    timeout: float | None = None
    # The execution's team: whose HTTP client and connection limits the block uses.
    team_id: str = ""
    # After a target refused an OAuth credential (401): the app's binding renewed by the
    # serving process (refreshed token, or ``unavailable`` saying why); None: no renewal.
    renew_credential: Callable[[str], Awaitable[Mapping[str, Any]]] | None = None
    # Now on the serving process's clock (ms since epoch; injected in tests): what a
    # ``delay`` counts from.
    now: int = 0


@dataclass(frozen=True, slots=True)
class Iteration:
    """What a ``loop`` asks of the step loop: run the child list ``arm`` once per item."""

    items: list[Any]
    arm: str = "blocks"
    # Items run at once (lanes); each lane takes the next item when its own is done.
    concurrency: int = 1
    # True: a failed item is kept in the output (with ``error``) and the others go on;
    # False: it stops new items and fails the loop.
    collect: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """A block's result: its output, plus what it asks of the step loop."""

    output: Any
    # For blocks with child lists (branch): which list runs next, or None.
    children: str | None = None
    # True ends the execution as succeeded right after this block (a false filter).
    stop: bool = False
    # Set by `respond`: the HTTP status the execution answers with.
    respond_status: int | None = None
    # Set by `loop`: the engine runs the child list per item; the step's output becomes
    # the items' outputs.
    iterate: Iteration | None = None
    # Set by `delay`: the execution waits until this time (ms since epoch); the step is
    # recorded as waiting with this output, and succeeds when the time has come.
    suspend_until: int | None = None


class Block(Protocol):
    """One block type. ``run`` gets the block's ``with`` already rendered from templates."""

    type: ClassVar[str]
    spec: ClassVar[BlockSpec]
    # Side-effecting steps are committed before the next block runs (DESIGN "Performance").
    side_effects: ClassVar[bool]

    async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
        """Run once; raise ``BlockFailed`` (or any exception) to fail this attempt."""
        ...


def replay(block: Block, output: Any) -> Outcome:
    """The outcome of a step that is reused instead of run (resume, rerun ``from``).

    A block whose outcome says more than its output (which arm, stop or not) defines
    ``replay(output) -> Outcome`` to derive it from the recorded output; any other block
    just gives its output back.
    """
    derive = getattr(block, "replay", None)
    if derive is None:
        return Outcome(output)
    outcome: Outcome = derive(output)
    return outcome
