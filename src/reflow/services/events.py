"""Custom events: which a team's workflows declare, and which installations one reaches.

An event workflow (``trigger: {type: event, event: NAME}``) is not run by id: firing
``NAME`` for a user starts every one of that user's active installations whose installed
version subscribes to it (``RunService.fire_event``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reflow.domain.definitions import TriggerType
from reflow.domain.records import Installation, Team
from reflow.engine.compiled import CompiledWorkflow
from reflow.services.workflows import WorkflowService
from reflow.store.base import Store


@dataclass(frozen=True, slots=True)
class DeclaredEvent:
    """An event a workflow's latest version declares, as ``GET /events`` lists it."""

    name: str
    # Definitions have no per-event description: the declaring workflow's own, if any.
    description: str | None
    body: dict[str, Any]  # the trigger's example data (``schema``), or {}


@dataclass(frozen=True, slots=True)
class Subscriber:
    """An active installation whose installed version is triggered by the event."""

    installation: Installation
    compiled: CompiledWorkflow


def _event_of(compiled: CompiledWorkflow) -> str | None:
    trigger = compiled.definition.trigger
    return trigger.event if trigger.type is TriggerType.EVENT else None


class EventCatalog:
    """Reads a team's event triggers from its workflow versions (compiled, so cached)."""

    def __init__(self, store: Store, workflows: WorkflowService) -> None:
        self.store = store
        self.workflows = workflows

    async def declared(self, team: Team, user_ref: str | None = None) -> list[DeclaredEvent]:
        """Every event some workflow's latest version declares, once each, by name.

        ``user_ref`` only has to name a live user (NotFound otherwise): the SDKs send it,
        but the list is the team's. Of two workflows declaring one event, the first by
        workflow name gives its description and body.
        """
        if user_ref is not None:
            await self.workflows.users.get(team, user_ref)
        found: dict[str, DeclaredEvent] = {}
        for workflow in await self.store.list_workflows(team.id):
            compiled = await self.workflows.compiled(team.id, workflow.id,
                                                     workflow.latest_version)
            name = _event_of(compiled)
            if name is None or name in found:
                continue
            schema = compiled.definition.trigger.schema
            found[name] = DeclaredEvent(name, compiled.definition.description or None,
                                        dict(schema) if schema is not None else {})
        return [found[name] for name in sorted(found)]

    async def subscribers(self, team: Team, user_id: str, event: str) -> list[Subscriber]:
        """The user's active installations whose installed version the event triggers,
        oldest installation first."""
        subscribed = []
        for installation in await self.store.list_installations(team.id, user_id=user_id):
            if not installation.active:
                continue
            compiled = await self.workflows.compiled(team.id, installation.workflow_id,
                                                     installation.installed_version)
            if _event_of(compiled) == event:
                subscribed.append(Subscriber(installation, compiled))
        return subscribed
