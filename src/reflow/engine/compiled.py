"""A workflow version compiled for running: templates compiled once per version, not per run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reflow.blocks.base import Block
from reflow.domain.definitions import BlockDef, WorkflowDefinition
from reflow.expressions import Template, compile_template


@dataclass(frozen=True, slots=True)
class CompiledBlock:
    """One block ready to run: its definition, its implementation, its compiled params."""

    definition: BlockDef
    block: Block
    params: Template
    children: Mapping[str, tuple[CompiledBlock, ...]]

    @property
    def id(self) -> str:
        """The block id (the step's ``connectorId`` in logs)."""
        return self.definition.id


@dataclass(frozen=True, slots=True)
class CompiledWorkflow:
    """One immutable workflow version, compiled."""

    workflow_id: str
    version: int
    definition: WorkflowDefinition
    blocks: tuple[CompiledBlock, ...]
    # The stored definition JSON it was compiled from (what an executor process compiles).
    source: bytes = b""
    # The apps its blocks name literally in `credential` (bound to each run), and whether
    # one names it by a template (then every app the user has a credential for is bound).
    credentials: frozenset[str] = frozenset()
    any_credential: bool = False


def _compile_blocks(
    defs: tuple[BlockDef, ...], registry: Mapping[str, Block]
) -> tuple[CompiledBlock, ...]:
    return tuple(
        CompiledBlock(
            definition=d,
            block=registry[d.type],
            params=compile_template(dict(d.params)),
            children={k: _compile_blocks(v, registry) for k, v in d.children.items()},
        )
        for d in defs
    )


def compile_workflow(
    workflow_id: str, version: int, definition: WorkflowDefinition,
    registry: Mapping[str, Block], source: bytes = b"",
) -> CompiledWorkflow:
    """Compile every block's templates; the definition must already be validated."""
    named = [b.params["credential"] for b in definition.iter_blocks()
             if b.params.get("credential") is not None]
    literal = [n for n in named if isinstance(n, str) and "{{" not in n]
    return CompiledWorkflow(workflow_id, version, definition,
                            _compile_blocks(definition.blocks, registry), source,
                            credentials=frozenset(literal),
                            any_credential=len(literal) < len(named))
