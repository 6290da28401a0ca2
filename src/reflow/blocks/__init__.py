"""Block types: the built-ins, plus any registered under the ``reflow.blocks`` entry points."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points

from reflow.blocks.base import Block, BlockContext, Outcome
from reflow.blocks.flow import Delay, Loop
from reflow.blocks.http import Http
from reflow.blocks.pure import Branch, Fail, Filter, Respond, Transform
from reflow.domain.definitions import BlockSpec

__all__ = ["Block", "BlockContext", "Outcome", "block_specs", "load_blocks"]

BUILTIN: tuple[type[Block], ...] = (Http, Transform, Branch, Filter, Respond, Fail, Loop, Delay)


@cache
def load_blocks() -> Mapping[str, Block]:
    """Every block type by name: built-ins first, then third-party entry points."""
    blocks: dict[str, Block] = {cls.type: cls() for cls in BUILTIN}
    for ep in entry_points(group="reflow.blocks"):
        cls = ep.load()
        blocks.setdefault(cls.type, cls())
    return blocks


def block_specs() -> Mapping[str, BlockSpec]:
    """What each block type's ``with`` needs, for definition validation."""
    return {name: block.spec for name, block in load_blocks().items()}
