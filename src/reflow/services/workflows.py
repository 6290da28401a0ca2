"""Workflows, their immutable versions, and users' installations of them."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

import orjson

from reflow.blocks import block_specs, load_blocks
from reflow.clock import Clock, SystemClock
from reflow.domain.configuration import missing, stored_values
from reflow.domain.definitions import (
    BlockDef,
    WorkflowDefinition,
    canonical_json,
    parse_document,
    validate_definition,
)
from reflow.domain.executions import ExecutionRecord
from reflow.domain.integrations import IntegrationDeclaration
from reflow.domain.records import (
    Installation,
    Integration,
    Team,
    User,
    Workflow,
    WorkflowVersion,
)
from reflow.engine.compiled import CompiledWorkflow, compile_workflow
from reflow.errors import Conflict, InvalidRequest, NotFound
from reflow.expressions import compile_template_problems
from reflow.ids import new_object_id, now_ms
from reflow.services.users import UserService
from reflow.store.base import Activity, ExecutionQuery, Store

_COMPILED_CACHE = 1024
_TARGET_CACHE_SIZE = 10_000
_TARGET_CACHE_SECONDS = 5.0


def definition_from_text(text: str | bytes, content_type: str | None = None) -> WorkflowDefinition:
    """Parse and validate a definition; DefinitionInvalid lists every problem by path."""
    return definition_from_document(parse_document(text, content_type))


def definition_from_document(doc: object) -> WorkflowDefinition:
    """Validate a parsed definition, templates included."""
    return validate_definition(doc, block_specs(), compile_template_problems)


@dataclass(frozen=True, slots=True)
class Applied:
    """What storing a definition did."""

    workflow: Workflow
    version: int
    created: bool  # False when the definition equals the latest version (nothing added)


@dataclass(frozen=True, slots=True)
class Target:
    """A workflow reference resolved: the parent, and the user's installation if known."""

    workflow: Workflow
    installation: Installation | None
    user: User | None
    # True when the reference was an installation id (a user's copy), not the parent.
    via_installation: bool = False
    # True when ``installation`` was deleted (W6): resolved only when asked for.
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Installed:
    """A parent workflow and a user's installation of it (None when not installed)."""

    workflow: Workflow
    installation: Installation | None
    integration: Integration | None = None  # the one the workflow's definition names


@dataclass(frozen=True, slots=True)
class Detail:
    """A workflow as one user sees it, with the blocks of the version that user runs."""

    item: Installed
    blocks: tuple[BlockDef, ...]


@dataclass(frozen=True, slots=True)
class FailedRun:
    """A failed execution, with the block that failed it (None when no block did)."""

    execution: ExecutionRecord
    message: str
    block_id: str | None
    block_type: str | None


class WorkflowService:
    """Workflow definitions, versions, installations, and compiled versions for the engine."""

    def __init__(self, store: Store, users: UserService, clock: Clock | None = None) -> None:
        self.store = store
        self.users = users
        # Installation times come from the process's clock: a schedule starts from its
        # installation's activation (docs/schedules.md), which tests move with the clock.
        self.clock: Clock = clock or SystemClock()
        self._compiled: OrderedDict[tuple[str, str, int], CompiledWorkflow] = OrderedDict()
        self._targets: dict[tuple[str, str, str | None], tuple[float, Target]] = {}
        # A deleted user, or one whose workflows were all deactivated, must not keep
        # running from a cached lookup in this process.
        users.on_installations_changed(self._targets.clear)

    # -- definitions -----------------------------------------------------------------------

    async def create(self, team: Team, definition: WorkflowDefinition) -> Applied:
        """A new workflow at version 1; a taken name is a Conflict."""
        now = now_ms()
        body, digest = _stored(definition)
        workflow = Workflow(new_object_id(), team.id, definition.name, definition.integration,
                            1, now, now)
        version = WorkflowVersion(workflow.id, 1, body, digest, now)
        existing = await self.store.get_workflow(team.id, definition.name)
        if existing is not None and existing.name == definition.name:
            raise Conflict(
                f"a workflow named {definition.name!r} already exists ({existing.id}); "
                f"PUT /workflows/{existing.id}/definition adds a version"
            )
        await self._ensure_integration(team, definition.integration)
        await self.store.create_workflow(workflow, version)
        # The purge reads the latest version's retention from the workflow's row.
        await self.store.set_workflow_retention(team.id, workflow.id, definition.retention)
        return Applied(workflow, 1, True)

    async def add_version(
        self, team: Team, workflow_ref: str, definition: WorkflowDefinition
    ) -> Applied:
        """A new version of a workflow (by parent id, name or installation id), unless the
        definition equals its latest version."""
        workflow = await self.resolve_parent(team, workflow_ref)
        return await self._add_version(team, workflow, definition)

    async def apply(self, team: Team, definition: WorkflowDefinition) -> Applied:
        """Create the workflow named in the definition, or add a version if it changed."""
        workflow = await self.store.get_workflow(team.id, definition.name)
        if workflow is None or workflow.name != definition.name:
            return await self.create(team, definition)
        return await self._add_version(team, workflow, definition)

    async def _add_version(
        self, team: Team, workflow: Workflow, definition: WorkflowDefinition
    ) -> Applied:
        body, digest = _stored(definition)
        latest = await self.store.get_version(team.id, workflow.id, workflow.latest_version)
        if latest is not None and latest.digest == digest:
            return Applied(workflow, workflow.latest_version, False)
        if definition.name != workflow.name:
            other = await self.store.get_workflow(team.id, definition.name)
            if other is not None and other.id != workflow.id:
                raise Conflict(f"a workflow named {definition.name!r} already exists")
        await self._ensure_integration(team, definition.integration)
        renamed = Workflow(workflow.id, team.id, definition.name, definition.integration,
                           workflow.latest_version, workflow.created_at, workflow.updated_at)
        version = await self.store.add_version(renamed, body, digest, now_ms())
        await self.store.set_workflow_retention(team.id, workflow.id, definition.retention)
        return Applied(renamed, version.version, True)

    async def _ensure_integration(self, team: Team, name: str | None) -> None:
        """The integration a definition names exists afterwards: declared already, or made
        now with the defaults (so a definition alone is enough)."""
        if name is None:
            return
        declared = IntegrationDeclaration.default(name)
        now = now_ms()
        await self.store.ensure_integration(Integration(
            new_object_id(), team.id, declared.name, declared.app, declared.description,
            declared.icon, now, now))

    async def get(self, team: Team, workflow_ref: str) -> Workflow:
        """A parent workflow by id or name."""
        workflow = await self.store.get_workflow(team.id, workflow_ref)
        if workflow is None:
            raise NotFound(f"workflow {workflow_ref!r} not found")
        return workflow

    async def all(self, team: Team) -> list[Workflow]:
        """Every workflow of a team."""
        return await self.store.list_workflows(team.id)

    async def versions(
        self, team: Team, workflow_ref: str
    ) -> tuple[Workflow, list[WorkflowVersion]]:
        """A workflow and all its versions."""
        workflow = await self.resolve_parent(team, workflow_ref)
        return workflow, await self.store.list_versions(team.id, workflow.id)

    # -- installations ---------------------------------------------------------------------

    async def activate(self, team: Team, user_ref: str, workflow_ref: str) -> Installation:
        """Install the latest version for a user, or reactivate the user's installation
        (by parent id, name or installation id). A deleted installation is installed
        again under its old id, at the latest version."""
        target = await self.resolve(team, workflow_ref, user_ref)
        user = target.user if target.user is not None else await self.users.get(team, user_ref)
        installation = target.installation
        now = self.clock.now_ms()
        if installation is None:
            workflow = target.workflow
            installation = await self.store.install(Installation(
                new_object_id(), team.id, workflow.id, user.id, workflow.latest_version,
                True, now, now))
        elif installation.active:
            return installation
        else:
            installation = replace(installation, active=True, updated_at=now)
            await self.store.save_installation(installation)
        self._targets.clear()
        return installation

    async def delete(self, team: Team, workflow_ref: str, user_ref: str | None) -> Installation:
        """Delete a user's installation (W6): it runs nothing more and is gone from their
        workflows; its executions and logs stay. Conflict while any of them is unfinished."""
        target = await self.installation(team, workflow_ref, user_ref)
        installation = target.installation
        assert installation is not None  # installation() guarantees it
        if not await self.store.delete_installation(team.id, installation.id, now_ms()):
            raise NotFound(f"workflow {workflow_ref!r} not found")  # deleted meanwhile
        self._targets.clear()
        return installation

    async def upgrade(self, team: Team, user_ref: str, workflow_ref: str) -> Installation:
        """Move a user's installation to the workflow's latest version (active or not)."""
        return (await self.upgrade_from(team, user_ref, workflow_ref))[1]

    async def upgrade_from(
        self, team: Team, user_ref: str, workflow_ref: str
    ) -> tuple[int, Installation]:
        """``upgrade``, also answering the version the user ran before (equal when the
        installation was already at the latest, and then nothing is written)."""
        target = await self.installation(team, workflow_ref, user_ref)
        installation = target.installation
        assert installation is not None  # installation() guarantees it
        before = installation.installed_version
        latest = target.workflow.latest_version
        if before == latest:
            return before, installation
        await self._check_configured(target, installation, latest)
        upgraded = replace(installation, installed_version=latest,
                           updated_at=self.clock.now_ms())
        await self.store.save_installation(upgraded)
        self._targets.clear()
        return before, upgraded

    async def _check_configured(
        self, target: Target, installation: Installation, version: int
    ) -> None:
        """InvalidRequest naming each required configurable field of ``version`` the
        installation has no value for (an upgrade must not leave it unable to run)."""
        compiled = await self.compiled(installation.team_id, installation.workflow_id, version)
        fields = compiled.definition.config_fields
        if not fields:
            return
        settings = await self.store.installation_settings(installation.team_id,
                                                          [installation.id])
        stored = settings.get(installation.id)
        lacking = missing(fields, stored_values(stored.config if stored else None))
        if lacking:
            names = ", ".join(f"'{f.name}' (block '{f.block_id}')" for f in lacking)
            raise InvalidRequest(
                f"version {version} of workflow {target.workflow.name!r} needs configuration "
                f"this installation lacks: {names}; complete the installation again "
                "(POST /headless/startInstallation, then completeInstallation) to give "
                "the values, then upgrade"
            )

    async def deactivate(self, team: Team, user_ref: str, workflow_ref: str) -> Installation:
        """Stop a user's installation from running (its runs are refused until reactivated)."""
        target = await self.installation(team, workflow_ref, user_ref)
        installation = target.installation
        assert installation is not None  # installation() guarantees it
        if not installation.active:
            return installation
        deactivated = replace(installation, active=False, updated_at=self.clock.now_ms())
        await self.store.save_installation(deactivated)
        self._targets.clear()
        return deactivated

    async def installed(self, team: Team, user_ref: str) -> list[Installed]:
        """A user's installations with their parent workflows, by workflow name."""
        user = await self.users.get(team, user_ref)
        installations = await self.store.list_installations(team.id, user_id=user.id)
        workflows = {w.id: w for w in await self.store.list_workflows(team.id)}
        integrations = await self._integrations(team)
        found = [Installed(workflows[i.workflow_id], i,
                           integrations.get(workflows[i.workflow_id].integration or ""))
                 for i in installations if i.workflow_id in workflows]
        return sorted(found, key=lambda item: item.workflow.name)

    async def detail(self, team: Team, workflow_ref: str, user_ref: str) -> Detail:
        """A workflow as a user sees it: their installation (if any) and the blocks of the
        version they run (the latest when they have none)."""
        target = await self.resolve(team, workflow_ref, user_ref)
        integration = None
        if target.workflow.integration is not None:
            integration = await self.store.get_integration(team.id, target.workflow.integration)
        return await self._detail(Installed(target.workflow, target.installation, integration))

    async def catalogue(self, team: Team, user: User) -> list[Detail]:
        """Every workflow of the team as ``user`` sees it (installed or not), by name."""
        installations = {i.workflow_id: i for i in
                         await self.store.list_installations(team.id, user_id=user.id)}
        integrations = await self._integrations(team)
        return [
            await self._detail(Installed(w, installations.get(w.id),
                                         integrations.get(w.integration or "")))
            for w in await self.store.list_workflows(team.id)
        ]

    async def _detail(self, item: Installed) -> Detail:
        """The item with the blocks of the version its user runs (the latest when the
        user has not installed it)."""
        installation, workflow = item.installation, item.workflow
        version = (installation.installed_version if installation is not None
                   else workflow.latest_version)
        compiled = await self.compiled(workflow.team_id, workflow.id, version)
        return Detail(item, tuple(compiled.definition.iter_blocks()))

    async def _integrations(self, team: Team) -> dict[str, Integration]:
        return {i.name: i for i in await self.store.list_integrations(team.id)}

    async def installers(self, team: Team, workflow_ref: str) -> list[tuple[User, Installation]]:
        """The live users with an installation of a parent workflow, oldest user first."""
        workflow = await self.resolve_parent(team, workflow_ref)
        users = await self.store.list_users(team.id, workflow.id)
        by_user = {i.user_id: i
                   for i in await self.store.list_installations(team.id, workflow_id=workflow.id)}
        return [(u, by_user[u.id]) for u in users if u.id in by_user]

    async def errors(
        self, team: Team, workflow_ref: str, user_ref: str | None, limit: int
    ) -> list[FailedRun]:
        """The newest ``limit`` failed executions of a user's installation (of every
        installation when neither a user nor an installation id narrows it)."""
        target, installation_id = await self._scope(team, workflow_ref, user_ref)
        failed = await self.store.list_executions(ExecutionQuery(
            team.id, target.workflow.id, installation_id, failed_only=True, limit=limit))
        return [await self._failed_run(e) for e in failed]

    async def activity(self, team: Team, workflow_ref: str, user_ref: str | None) -> Activity:
        """Runs, failed runs and http steps run (the reference's app actions) of a user's
        copy, or of every copy given a parent id alone; over the executions still kept."""
        target, installation_id = await self._scope(team, workflow_ref, user_ref)
        actions: set[str] = set()
        for version in range(1, target.workflow.latest_version + 1):
            compiled = await self.compiled(team.id, target.workflow.id, version)
            actions.update(b.id for b in compiled.definition.iter_blocks() if b.type == "http")
        return await self.store.workflow_activity(team.id, target.workflow.id,
                                                  installation_id, sorted(actions))

    async def _scope(
        self, team: Team, workflow_ref: str, user_ref: str | None
    ) -> tuple[Target, str | None]:
        """The workflow asked about and the installation that narrows it: a user's (who
        must have one: NotFound otherwise), an installation id's, or None for every copy."""
        target = await self.resolve(team, workflow_ref, user_ref)
        if target.user is not None and target.installation is None:
            target = await self.installation(team, workflow_ref, user_ref)  # raises NotFound
        return target, target.installation.id if target.installation else None

    async def _failed_run(self, execution: ExecutionRecord) -> FailedRun:
        error = orjson.loads(execution.error) if execution.error else {}
        block_id = error.get("blockId")
        block_type = await self.block_type(execution.team_id, execution.workflow_id,
                                           execution.version, block_id)
        return FailedRun(execution, str(error.get("message", "")), block_id, block_type)

    async def block_type(
        self, team_id: str, workflow_id: str, version: int, block_id: str | None
    ) -> str | None:
        """The type of a block of a version (None for no block, or one it lacks)."""
        if block_id is None:
            return None
        compiled = await self.compiled(team_id, workflow_id, version)
        try:
            return compiled.definition.block(block_id).type
        except KeyError:
            return None

    async def resolve_parent(self, team: Team, workflow_ref: str) -> Workflow:
        """The parent workflow for a parent id, name, or an installation id."""
        workflow = await self.store.get_workflow(team.id, workflow_ref)
        if workflow is not None:
            return workflow
        installation = await self.store.get_installation_by_id(team.id, workflow_ref)
        if installation is not None:
            return await self.get(team, installation.workflow_id)
        raise NotFound(f"workflow {workflow_ref!r} not found")

    async def resolve(
        self, team: Team, workflow_ref: str, user_ref: str | None, *, deleted: bool = False
    ) -> Target:
        """A workflow reference: a parent id or name (with a user, their installation),
        or an installation id. Every route that takes a ``workflowId`` resolves it here.

        With ``deleted``, a deleted installation (W6) is resolved too, marked ``deleted``
        (for what stays readable after the delete: its logs, and why a rerun is refused).
        """
        user = await self.users.get(team, user_ref) if user_ref else None
        workflow = await self.store.get_workflow(team.id, workflow_ref)
        if workflow is not None:
            if user is None:
                return Target(workflow, None, None)
            installation = await self.store.get_installation(team.id, workflow.id, user.id)
            if installation is None and deleted:
                installation = await self.store.get_deleted_installation(
                    team.id, workflow_id=workflow.id, user_id=user.id)
                return Target(workflow, installation, user, deleted=installation is not None)
            return Target(workflow, installation, user)
        installation = await self.store.get_installation_by_id(team.id, workflow_ref)
        was_deleted = False
        if installation is None and deleted:
            installation = await self.store.get_deleted_installation(
                team.id, installation_id=workflow_ref)
            was_deleted = installation is not None
        if installation is None or (user is not None and installation.user_id != user.id):
            raise NotFound(f"workflow {workflow_ref!r} not found")
        workflow = await self.get(team, installation.workflow_id)
        return Target(workflow, installation, user, via_installation=True, deleted=was_deleted)

    def forget_targets(self) -> None:
        """Drop the cached run targets: installations changed (activated, configured)."""
        self._targets.clear()

    async def installation_cached(
        self, team: Team, workflow_ref: str, user_ref: str | None
    ) -> Target:
        """``installation``, reused for a few seconds: the run path then costs no catalogue
        query. Activation changes made in this process clear it at once."""
        key = (team.id, workflow_ref, user_ref)
        now = time.monotonic()
        hit = self._targets.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        target = await self.installation(team, workflow_ref, user_ref)
        if len(self._targets) > _TARGET_CACHE_SIZE:
            self._targets.clear()
        self._targets[key] = (now + _TARGET_CACHE_SECONDS, target)
        return target

    async def installation(self, team: Team, workflow_ref: str, user_ref: str | None) -> Target:
        """Like ``resolve``, but the user must have the workflow installed."""
        target = await self.resolve(team, workflow_ref, user_ref)
        if target.installation is None:
            if target.user is None:
                raise NotFound(f"workflow {workflow_ref!r}: give userId to pick a user's copy")
            raise NotFound(
                f"workflow {target.workflow.name!r} is not installed for user "
                f"{target.user.username!r}; activate it with PUT /workflows/activate"
            )
        return target

    # -- compiled versions -----------------------------------------------------------------

    async def compiled(self, team_id: str, workflow_id: str, version: int) -> CompiledWorkflow:
        """A version compiled for the engine; versions are immutable, so this is cached."""
        key = (team_id, workflow_id, version)  # a hit must not skip the team check
        hit = self._compiled.get(key)
        if hit is not None:
            return hit
        stored = await self.store.get_version(team_id, workflow_id, version)
        if stored is None:
            raise NotFound(f"workflow {workflow_id!r} has no version {version}")
        definition = definition_from_document(orjson.loads(stored.definition))
        compiled = compile_workflow(workflow_id, version, definition, load_blocks(),
                                    stored.definition)
        self._compiled[key] = compiled
        if len(self._compiled) > _COMPILED_CACHE:
            self._compiled.popitem(last=False)
        return compiled


def _stored(definition: WorkflowDefinition) -> tuple[bytes, str]:
    # Stored as written, so a respond body keeps its key order; compared canonically, so
    # reordering keys in a file is not a new version.
    body = orjson.dumps(definition.raw)
    return body, hashlib.sha256(canonical_json(definition.raw)).hexdigest()
