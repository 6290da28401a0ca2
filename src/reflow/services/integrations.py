"""Integrations (what a team's workflows integrate with) and installations as the
reference groups them: a user's workflows of one integration (I1-I3)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from reflow.domain.definitions import BlockDef
from reflow.domain.integrations import IntegrationDeclaration
from reflow.domain.records import Installation, Integration, Team, Workflow
from reflow.errors import NotFound
from reflow.ids import new_object_id, now_ms
from reflow.services.users import UserService
from reflow.services.workflows import Detail, WorkflowService
from reflow.store.base import Store


@dataclass(frozen=True, slots=True)
class AppliedIntegration:
    """What storing a declaration did."""

    integration: Integration
    created: bool  # False when an integration of that name existed
    changed: bool  # False when the declaration equals what was stored (nothing written)


@dataclass(frozen=True, slots=True)
class UserIntegration:
    """An integration as one user sees it: its workflows, installed or not."""

    integration: Integration
    workflows: tuple[Detail, ...]

    @property
    def installed(self) -> bool:
        """Whether the user has installed any of its workflows."""
        return any(d.item.installation is not None for d in self.workflows)

    @property
    def credentials(self) -> list[str]:
        """The credentials its workflows' blocks name (``with.credential``), sorted."""
        return sorted({name for d in self.workflows for name in _credentials(d.blocks)})


@dataclass(frozen=True, slots=True)
class InstallationGroup:
    """A user's installations of one integration's workflows: the reference's installation.

    ``id`` is derived from the team, user and integration, so it stays the same while the
    user keeps any of them installed (reflow's own installations are per workflow: each
    one's id works wherever a ``workflowId`` is taken).
    """

    id: str
    integration: Integration | None  # None for workflows that name no integration
    user_id: str
    installations: tuple[tuple[Installation, Workflow], ...]  # oldest first

    @property
    def installed_at(self) -> int:
        """When the user installed the first of them."""
        return min(i.installed_at for i, _ in self.installations)

    @property
    def enabled(self) -> bool:
        """Whether any of them is active."""
        return any(i.active for i, _ in self.installations)


class IntegrationService:
    """Declares integrations and shows them, with their workflows, as users see them."""

    def __init__(self, store: Store, users: UserService, workflows: WorkflowService) -> None:
        self.store = store
        self.users = users
        self.workflows = workflows

    async def apply(self, team: Team, declared: IntegrationDeclaration) -> AppliedIntegration:
        """Create the integration the declaration names, or update it to the declaration
        (the declaration is the whole truth: a key left out takes its default)."""
        existing = await self.store.get_integration(team.id, declared.name)
        if existing is not None and existing.name != declared.name:
            existing = None  # the name matched another integration's id, not a name
        wanted = (declared.name, declared.app, declared.description, declared.icon)
        if existing is not None and wanted == (existing.name, existing.app,
                                               existing.description, existing.icon):
            return AppliedIntegration(existing, created=False, changed=False)
        now, new_id = now_ms(), new_object_id()
        stored = await self.store.save_integration(Integration(
            new_id, team.id, declared.name, declared.app, declared.description, declared.icon,
            now, now))
        # An update keeps the stored id (also when another request created it meanwhile).
        return AppliedIntegration(stored, created=stored.id == new_id, changed=True)

    async def get(self, team: Team, integration_ref: str) -> Integration:
        """An integration by id or name."""
        integration = await self.store.get_integration(team.id, integration_ref)
        if integration is None:
            raise NotFound(f"integration {integration_ref!r} not found")
        return integration

    async def with_workflows(self, team: Team) -> list[tuple[Integration, list[Workflow]]]:
        """Every integration of the team with the workflows naming it, by name."""
        by_name: dict[str, list[Workflow]] = defaultdict(list)
        for workflow in await self.workflows.all(team):
            if workflow.integration is not None:
                by_name[workflow.integration].append(workflow)
        return [(i, by_name.get(i.name, [])) for i in await self.store.list_integrations(team.id)]

    async def for_user(self, team: Team, user_ref: str) -> list[UserIntegration]:
        """Every integration of the team, with its workflows as the user sees them (I1)."""
        user = await self.users.get(team, user_ref)
        by_name: dict[str, list[Detail]] = defaultdict(list)
        for detail in await self.workflows.catalogue(team, user):
            if detail.item.workflow.integration is not None:
                by_name[detail.item.workflow.integration].append(detail)
        return [UserIntegration(i, tuple(by_name.get(i.name, ())))
                for i in await self.store.list_integrations(team.id)]

    async def one_for_user(
        self, team: Team, integration_ref: str, user_ref: str
    ) -> UserIntegration:
        """One integration, by id or name, with its workflows as the user sees them (I2)."""
        user = await self.users.get(team, user_ref)
        integration = await self.get(team, integration_ref)
        details = [d for d in await self.workflows.catalogue(team, user)
                   if d.item.workflow.integration == integration.name]
        return UserIntegration(integration, tuple(details))

    async def installations(self, team: Team) -> list[InstallationGroup]:
        """Every live user's installations, one group per user and integration (I3),
        oldest first."""
        live_users = {u.id for u in await self.store.list_users(team.id)}
        workflows = {w.id: w for w in await self.workflows.all(team)}
        integrations = {i.name: i for i in await self.store.list_integrations(team.id)}
        groups: dict[tuple[str, str | None], list[tuple[Installation, Workflow]]] = {}
        for installation in await self.store.list_installations(team.id):
            workflow = workflows.get(installation.workflow_id)
            if workflow is None or installation.user_id not in live_users:
                continue
            key = (installation.user_id, workflow.integration)
            groups.setdefault(key, []).append((installation, workflow))
        found = [
            InstallationGroup(
                group_id(team.id, user_id, integration_name),
                integrations.get(integration_name) if integration_name else None,
                user_id, tuple(members))
            for (user_id, integration_name), members in groups.items()
        ]
        return sorted(found, key=lambda g: (g.installed_at, g.id))


def group_id(team_id: str, user_id: str, integration_name: str | None) -> str:
    """A stable 24-hex id for a user's installations of one integration (I3's
    installationId, and the headless installation's)."""
    key = f"{team_id}\x00{user_id}\x00{integration_name or ''}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _credentials(blocks: Iterable[BlockDef]) -> set[str]:
    """The credential names blocks give literally (a templated one is known only when run)."""
    return {
        name for b in blocks
        if isinstance(name := b.params.get("credential"), str) and "{{" not in name
    }
