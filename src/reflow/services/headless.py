"""Headless installation: a user installs an integration's workflows with the values its
blocks ask for (docs/api.md "Headless installation").

``start`` answers which configurable fields still need a value, per workflow and block,
and which apps' credentials the workflows use; ``complete`` checks the values, stores them
on the user's installations (a secret field's value sealed with REFLOW_SECRET_KEY), pins
the chosen credentials and activates the installations, all in one transaction. Runs read
the stored values as ``config`` (``configured``), and refuse an installation that lacks a
required one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.fernet import InvalidToken, MultiFernet

from reflow.clock import Clock, SystemClock
from reflow.domain.configuration import (
    ConfigField,
    describe_missing,
    effective,
    missing,
    stored_values,
)
from reflow.domain.configuration import value_problem as field_value_problem
from reflow.domain.definitions import WorkflowDefinition
from reflow.domain.records import (
    ConfigChange,
    HeadlessInstallation,
    Installation,
    Integration,
    Team,
    User,
    Workflow,
)
from reflow.engine.compiled import CompiledWorkflow
from reflow.errors import Conflict, InstallationInvalid, InvalidRequest, NotFound, Problem
from reflow.ids import new_object_id
from reflow.sealing import SEALED, SealError
from reflow.services.integrations import InstallationGroup, IntegrationService, group_id
from reflow.services.workflows import WorkflowService
from reflow.store.base import Store

log = logging.getLogger(__name__)

# How long an install URL (K1) works after it is made.
INSTALL_LINK_SECONDS = 24 * 3600
INSTALL_PATH = "/install/"
_NO_KEY = ("REFLOW_SECRET_KEY is not set, so {what}; set it (`make run` makes one for dev; "
           "docs/security.md)")

Values = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FormBlock:
    """The fields one block of a workflow asks the user for."""

    workflow_id: str
    block_id: str
    app: str  # the app the block's credential names, else its block type
    fields: tuple[ConfigField, ...]


@dataclass(frozen=True, slots=True)
class NeededCredential:
    """An app the workflows use, and the user's credential for it (None: none yet)."""

    app: str
    credential_id: str | None


@dataclass(frozen=True, slots=True)
class StartedInstallation:
    """What ``start`` answers: the fields still to fill in and the credentials needed."""

    id: str
    integration: Integration
    user: User
    workflows: tuple[Workflow, ...]
    form: tuple[FormBlock, ...]
    credentials: tuple[NeededCredential, ...]


@dataclass(frozen=True, slots=True)
class InstallationView:
    """A user's installations of one integration (I3) with what they were given: the
    fields still lacking a value and the credential pinned per app."""

    group: InstallationGroup
    form: tuple[FormBlock, ...]
    credential_ids: dict[str, str]


@dataclass(frozen=True, slots=True)
class Completed:
    """What ``complete`` did: the installations written, all active now."""

    id: str
    installations: tuple[Installation, ...]


class HeadlessService:
    """Start and complete headless installations; give runs their installation's values."""

    def __init__(self, store: Store, workflows: WorkflowService,
                 integrations: IntegrationService, keys: MultiFernet | None,
                 clock: Clock | None = None, public_url: str = "") -> None:
        self.store = store
        self.workflows = workflows
        self.integrations = integrations
        self.keys = keys
        self.clock: Clock = clock or SystemClock()
        self.install_base = public_url.rstrip("/") + INSTALL_PATH

    # -- start -----------------------------------------------------------------------------

    async def start(self, team: Team, user_ref: str, integration_ref: str,
                    workflow_refs: Sequence[str] | None = None,
                    credential_ids: Any = None) -> StartedInstallation:
        """Start (or start again) installing an integration's workflows for a user: the
        fields that still need a value, and the credentials the workflows use."""
        user = await self.workflows.users.get(team, user_ref)
        integration = await self.integrations.get(team, integration_ref)
        chosen = await self._workflows(team, integration, workflow_refs)
        pins = await self._pins(team, user, credential_ids)
        started_id = group_id(team.id, user.id, integration.name)
        now = self.clock.now_ms()
        earlier = await self.store.get_headless_installation(team.id, started_id)
        await self.store.save_headless_installation(HeadlessInstallation(
            started_id, team.id, user.id, integration.id, tuple(w.id for w in chosen),
            pins or (earlier.credential_ids if earlier is not None else {}),
            earlier.created_at if earlier is not None else now, now))
        return await self._started(team, started_id, integration, user, chosen,
                                   pins or (earlier.credential_ids if earlier else {}))

    async def _started(self, team: Team, started_id: str, integration: Integration,
                       user: User, chosen: Sequence[Workflow], pins: Mapping[str, str]
                       ) -> StartedInstallation:
        installations = await self._installations(team, user, chosen)
        settings = await self.store.installation_settings(
            team.id, [i.id for i in installations.values()])
        form: list[FormBlock] = []
        apps: set[str] = set()
        for workflow in chosen:
            installation = installations.get(workflow.id)
            compiled = await self._latest(workflow)
            stored = settings.get(installation.id) if installation is not None else None
            values = stored_values(stored.config if stored is not None else None)
            form += _pending(workflow.id, compiled.definition, values)
            apps.update(compiled.credentials)
        return StartedInstallation(started_id, integration, user, tuple(chosen), tuple(form),
                                   await self._needed(team, user, sorted(apps), pins))

    async def _workflows(self, team: Team, integration: Integration,
                         refs: Sequence[str] | None) -> list[Workflow]:
        """The integration's workflows the user installs: those named, else all of them."""
        of_integration = [w for w in await self.workflows.all(team)
                          if w.integration == integration.name]
        if not refs:
            if not of_integration:
                raise InvalidRequest(f"integration {integration.name!r} has no workflows "
                                     "to install")
            return sorted(of_integration, key=lambda w: w.name)
        chosen: list[Workflow] = []
        for ref in refs:
            found = next((w for w in of_integration if ref in (w.id, w.name)), None)
            if found is None:
                raise NotFound(f"workflow {ref!r} not found in integration "
                               f"{integration.name!r}")
            if found not in chosen:
                chosen.append(found)
        return chosen

    async def _pins(self, team: Team, user: User, given: Any) -> dict[str, str]:
        """The credentials to pin, by app: ``credentialIds`` as a list of the user's
        credential ids or a mapping of app to one; NotFound for one the user lacks."""
        if given is None or given == [] or given == {}:
            return {}
        if isinstance(given, Mapping):
            ids = list(given.values())
        elif isinstance(given, list):
            ids = list(given)
        else:
            raise InvalidRequest("credentialIds: must be a list of credential ids or an "
                                 "object of app name to credential id")
        owned = {c.id: c for c in await self.store.list_credentials(team.id, user.id)}
        pins: dict[str, str] = {}
        for credential_id in ids:
            if not isinstance(credential_id, str) or credential_id not in owned:
                raise NotFound(f"credential {credential_id!r} not found for user "
                               f"{user.username!r}")
            app = owned[credential_id].app
            if isinstance(given, Mapping) and given.get(app) != credential_id:
                raise InvalidRequest(f"credentialIds: credential {credential_id!r} is for "
                                     f"app {app!r}, not the app it is given for")
            pins[app] = credential_id
        return pins

    async def _needed(self, team: Team, user: User, apps: Sequence[str],
                      pins: Mapping[str, str]) -> tuple[NeededCredential, ...]:
        if not apps:
            return ()
        # Newest first, as a run binds them when nothing is pinned.
        found = sorted(await self.store.list_credentials(team.id, user.id),
                       key=lambda c: (c.created_at, c.id), reverse=True)
        needed = []
        for app in apps:
            own = [c.id for c in found if c.app == app]
            pinned = pins.get(app)
            needed.append(NeededCredential(app, pinned if pinned in own else
                                           (own[0] if own else None)))
        return tuple(needed)

    # -- complete --------------------------------------------------------------------------

    async def complete(self, team: Team, installation_id: str, data: Any,
                       credential_ids: Any = None) -> Completed:
        """Store the values given for a started installation, pin its credentials and
        activate its workflows; InstallationInvalid names every missing or invalid field
        (nothing is written then)."""
        started = await self.store.get_headless_installation(team.id, installation_id)
        if started is None:
            raise NotFound(f"installation {installation_id!r} not found; start one with "
                           "POST /headless/startInstallation")
        user = await self.workflows.users.get(team, started.user_id)
        chosen = [await self.workflows.get(team, w) for w in started.workflow_ids]
        pins = await self._pins(team, user, credential_ids) or started.credential_ids
        installations = await self._installations(team, user, chosen)
        settings = await self.store.installation_settings(
            team.id, [i.id for i in installations.values()])
        versions = {w.id: await self._latest(w) for w in chosen}
        given, problems = _given(data, chosen, versions)
        changes: list[tuple[Workflow, Values]] = []
        for workflow in chosen:
            installation = installations.get(workflow.id)
            stored = settings.get(installation.id) if installation is not None else None
            values = {**stored_values(stored.config if stored is not None else None),
                      **given.get(workflow.id, {})}
            fields = versions[workflow.id].definition.config_fields
            problems += [Problem(f"data[workflowId={workflow.id}]",
                                 f"workflow {workflow.name!r} needs a value for "
                                 f"'{f.name}' (block '{f.block_id}', {f.display_name})")
                         for f in missing(fields, values)]
            changes.append((workflow, values))
        if problems:
            raise InstallationInvalid(problems)
        written = [await self._change(team, user, workflow, installations.get(workflow.id),
                                      versions[workflow.id], values, pins)
                   for workflow, values in changes]
        now = self.clock.now_ms()
        await self.store.configure_installations(team.id, [c for _, c in written], now)
        self.workflows.forget_targets()
        log.info("installation %s completed for user %s: %d workflows active",
                 installation_id, user.id, len(written))
        done = [await self.store.get_installation_by_id(team.id, i.id) for i, _ in written]
        return Completed(installation_id, tuple(i for i in done if i is not None))

    async def _change(self, team: Team, user: User, workflow: Workflow,
                      installation: Installation | None, compiled: CompiledWorkflow,
                      values: Values, pins: Mapping[str, str]
                      ) -> tuple[Installation, ConfigChange]:
        if installation is None:
            now = self.clock.now_ms()
            # Installed inactive; the change below activates it with its values.
            installation = await self.store.install(Installation(
                new_object_id(), team.id, workflow.id, user.id, workflow.latest_version,
                False, now, now))
        config = self._sealed(compiled.definition.config_fields, values)
        return installation, ConfigChange(installation.id, compiled.version, config,
                                          tuple(pins[app] for app in sorted(pins)), True)

    def _sealed(self, fields: Sequence[ConfigField], values: Values) -> bytes | None:
        """The values as stored: a secret field's sealed (a value sealed already is kept)."""
        known = {f.name: f for f in fields}
        kept = {name: value for name, value in values.items()
                if name in known and value is not None}
        if not kept:
            return None
        for name, value in kept.items():
            if known[name].secret and not _is_sealed(value):
                if self.keys is None:
                    raise SealError(_NO_KEY.format(what=f"the secret field {name!r} cannot "
                                                        "be stored encrypted"))
                kept[name] = {SEALED: self.keys.encrypt(orjson.dumps(value)).decode()}
        return orjson.dumps(kept)

    # -- runs ------------------------------------------------------------------------------

    async def configured(self, team_id: str, installation_id: str,
                         compiled: CompiledWorkflow) -> tuple[Values, tuple[str, ...]]:
        """What a run of the installation sees as ``config``, and its secret values (to
        hide from the steps). Conflict naming each field a required value is missing for."""
        fields = compiled.definition.config_fields
        settings = await self.store.installation_settings(team_id, [installation_id])
        stored = settings.get(installation_id)
        values = stored_values(stored.config if stored is not None else None)
        lacking = missing(fields, values)
        if lacking:
            raise Conflict(describe_missing(compiled.definition.name, lacking))
        opened = self._opened(values)
        secrets = tuple(str(opened[f.name]) for f in fields
                        if f.secret and opened.get(f.name))
        return effective(fields, opened), secrets

    def _opened(self, values: Values) -> Values:
        if not any(_is_sealed(v) for v in values.values()):
            return values
        if self.keys is None:
            raise SealError(_NO_KEY.format(what="the installation's secret fields cannot "
                                                "be opened"))
        try:
            return {name: orjson.loads(self.keys.decrypt(v[SEALED].encode()))
                    if _is_sealed(v) else v for name, v in values.items()}
        except InvalidToken:
            raise SealError("the installation's secret fields were encrypted with a key "
                            "that is no longer in REFLOW_SECRET_KEY; add that key back, or "
                            "complete the installation again") from None

    async def lacking(self, installation: Installation, definition: WorkflowDefinition
                      ) -> list[ConfigField]:
        """The required fields of ``definition`` the installation has no value for."""
        if not definition.config_fields:
            return []
        settings = await self.store.installation_settings(installation.team_id,
                                                          [installation.id])
        stored = settings.get(installation.id)
        return missing(definition.config_fields,
                       stored_values(stored.config if stored is not None else None))

    # -- GET /installations (I3) ----------------------------------------------------------

    async def installations(self, team: Team) -> list[InstallationView]:
        """Every user's installations per integration (I3), with the fields still lacking
        a value and the credentials pinned."""
        groups = await self.integrations.installations(team)
        ids = [i.id for g in groups for i, _ in g.installations]
        settings = await self.store.installation_settings(team.id, ids)
        pins = [i for s in settings.values() for i in s.credential_ids]
        apps_of = await self.store.credential_apps(team.id, pins) if pins else {}
        views = []
        for group in groups:
            form: list[FormBlock] = []
            pinned: list[str] = []
            for installation, workflow in group.installations:
                stored = settings.get(installation.id)
                compiled = await self._version(workflow, installation)
                form += _pending(workflow.id, compiled.definition,
                                 stored_values(stored.config if stored is not None else None))
                pinned += stored.credential_ids if stored is not None else ()
            # Pins of this user's own credentials that still exist, by app.
            by_app = {apps_of[i][1]: i for i in pinned
                      if i in apps_of and apps_of[i][0] == group.user_id}
            views.append(InstallationView(group, tuple(form), by_app))
        return views

    # -- install URL (K1) -----------------------------------------------------------------

    async def install_url(self, team: Team, user_ref: str, integration_ref: str
                          ) -> tuple[str, int]:
        """A URL where the user's installation of the integration is started (GET) and
        completed (POST) without an API key, and when it stops working (epoch ms)."""
        user = await self.workflows.users.get(team, user_ref)
        integration = await self.integrations.get(team, integration_ref)
        await self._workflows(team, integration, None)  # one with no workflows: a 422
        if self.keys is None:
            raise SealError(_NO_KEY.format(what="install URLs cannot be signed"))
        now = self.clock.now_ms()
        token = self.keys.encrypt_at_time(
            orjson.dumps([team.id, user.id, integration.id]), now // 1000).decode()
        return self.install_base + token, now + INSTALL_LINK_SECONDS * 1000

    async def link_target(self, token: str) -> tuple[Team, str, str]:
        """The team, user id and integration id of an install URL's token; NotFound for a
        forged, expired or unreadable one (an install URL names nothing else)."""
        if self.keys is None:
            raise NotFound("install URL not found")
        try:
            opened = orjson.loads(self.keys.decrypt_at_time(
                token.encode(), INSTALL_LINK_SECONDS, self.clock.now_ms() // 1000))
            team_id, user_id, integration_id = opened
        except (InvalidToken, ValueError, TypeError):
            raise NotFound("install URL not found or expired; ask for a new one "
                           "(GET /users/{userId}/integrations/{integrationId}/install-url)"
                           ) from None
        team = await self.store.get_team(team_id)
        if team is None:
            raise NotFound("install URL not found")
        return team, user_id, integration_id

    # -- shared ----------------------------------------------------------------------------

    async def _installations(self, team: Team, user: User, chosen: Sequence[Workflow]
                             ) -> dict[str, Installation]:
        wanted = {w.id for w in chosen}
        return {i.workflow_id: i
                for i in await self.store.list_installations(team.id, user_id=user.id)
                if i.workflow_id in wanted}

    async def _latest(self, workflow: Workflow) -> CompiledWorkflow:
        """The workflow's latest version: what a headless installation installs."""
        return await self.workflows.compiled(workflow.team_id, workflow.id,
                                             workflow.latest_version)

    async def _version(self, workflow: Workflow, installation: Installation | None
                       ) -> CompiledWorkflow:
        """The version the user runs (the latest when not installed)."""
        version = (installation.installed_version if installation is not None
                   else workflow.latest_version)
        return await self.workflows.compiled(workflow.team_id, workflow.id, version)


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(SEALED), str)


def _app_of(definition: WorkflowDefinition, block_id: str) -> str:
    block = definition.block(block_id)
    credential = block.params.get("credential")
    return credential if isinstance(credential, str) and "{{" not in credential else block.type


def _pending(workflow_id: str, definition: WorkflowDefinition, values: Values
             ) -> list[FormBlock]:
    """Per block, the fields with no stored value (defaults do not count as set)."""
    by_block: dict[str, list[ConfigField]] = {}
    for f in definition.config_fields:
        if values.get(f.name) is None:
            by_block.setdefault(f.block_id, []).append(f)
    return [FormBlock(workflow_id, block_id, _app_of(definition, block_id), tuple(fields))
            for block_id, fields in by_block.items()]


def _given(data: Any, chosen: Sequence[Workflow], versions: Mapping[str, CompiledWorkflow]
           ) -> tuple[dict[str, Values], list[Problem]]:
    """The values ``data`` gives, by workflow id and field name, and what is wrong in it:
    ``[{workflowId, blockId?, fields: [{name, value}]}]``."""
    problems: list[Problem] = []
    given: dict[str, Values] = {}
    if data is None:
        return given, problems
    if not isinstance(data, list):
        return given, [Problem("data", "must be a list of {workflowId, blockId, fields}")]
    by_ref = {ref: w for w in chosen for ref in (w.id, w.name)}
    for i, item in enumerate(data):
        where = f"data[{i}]"
        if not isinstance(item, dict):
            problems.append(Problem(where, "must be an object {workflowId, blockId, fields}"))
            continue
        ref = item.get("workflowId")
        workflow = by_ref.get(ref) if isinstance(ref, str) else None
        if workflow is None:
            problems.append(Problem(f"{where}.workflowId",
                                    f"{ref!r} is not a workflow of this installation"))
            continue
        entries = item.get("fields")
        if not isinstance(entries, list):
            problems.append(Problem(f"{where}.fields", "must be a list of {name, value}"))
            continue
        values = given.setdefault(workflow.id, {})
        for j, entry in enumerate(entries):
            problem = _take(entry, f"{where}.fields[{j}]", workflow,
                            versions[workflow.id].definition, item.get("blockId"), values)
            if problem is not None:
                problems.append(problem)
    return given, problems


def _take(entry: Any, at: str, workflow: Workflow, definition: WorkflowDefinition,
          block_id: Any, values: Values) -> Problem | None:
    """Put one ``{name, value}`` of ``data`` in ``values``, or say what is wrong with it."""
    name = entry.get("name") if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or not isinstance(name, str):
        return Problem(f"{at}.name", "required: the field's name")
    found = next((f for f in definition.config_fields if f.name == name), None)
    if found is None or (block_id is not None and found.block_id != block_id):
        inside = f" in block {block_id!r}" if block_id is not None else ""
        return Problem(f"{at}.name", f"workflow {workflow.name!r} has no configurable "
                                     f"field {name!r}{inside}")
    reason = field_value_problem(found, entry.get("value"))
    if reason is not None:
        return Problem(f"{at}.value", f"{name}: {reason}")
    values[name] = entry["value"]
    return None
