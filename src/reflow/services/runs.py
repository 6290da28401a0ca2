"""Running workflows: start a run, wait for it, rerun a past execution."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

from reflow import sealing
from reflow.clock import Clock, SystemClock
from reflow.dispatch import Dispatch, Started, Submission
from reflow.domain.definitions import TriggerType
from reflow.domain.executions import (
    ExecutionRecord,
    ExecutionStatus,
    StepRecord,
    StepStatus,
    TriggerMode,
    error_json,
)
from reflow.domain.records import Installation, Team
from reflow.engine.compiled import CompiledBlock, CompiledWorkflow
from reflow.errors import Conflict, InvalidRequest, NotFound, ReflowError
from reflow.executor import Job
from reflow.ids import execution_id_time_ms, new_execution_id, now_ms
from reflow.services.credentials import Bindings, CredentialService
from reflow.services.events import EventCatalog
from reflow.services.teams import TeamService
from reflow.services.workflows import Target, WorkflowService
from reflow.store.base import Store

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

    from reflow.services.headless import HeadlessService

log = logging.getLogger(__name__)

# What a run of an installation sees as ``config``, and the secret values among it.
Configured = tuple[dict[str, Any], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class RerunOptions:
    """How a rerun differs from its source (DESIGN "Rerun")."""

    # "start", "failed" (the source's failed block) or a block id: the steps before it are
    # copied from the source (marked reused) instead of running again.
    start_from: str = "start"
    # "original" (the source's version), "installed" (the user's now) or "latest".
    version: str = "original"
    # Replaces the trigger's data when given.
    data: Any = None


def _reused_steps(
    source: ExecutionRecord, compiled: CompiledWorkflow, start_from: str
) -> list[StepRecord]:
    """The source's steps to reuse for ``start_from``, copied for the new execution.

    Steps are keyed by their path (block, item), so inside loops this works item by item:
    ``failed`` reruns each failed step's block and what comes after it in the definition,
    but not the other items of the loops around it (a loop around a failed item runs
    again, replaying its other items: only the failed items' blocks run); a block id
    reruns that block and what follows, in every item.
    """
    if start_from == "start":
        return []
    if source.status is ExecutionStatus.SUCCEEDED and not source.steps:
        # Every run records a step: none left means the retention dropped them.
        raise InvalidRequest(
            f"from: the step data of execution {source.id} was not kept (its workflow's "
            "retention keepSteps is 'failed'); rerun it from 'start'"
        )
    tree = _BlockTree(compiled.blocks)
    if start_from == "failed":
        failed = [s.key for s in source.steps if s.status is StepStatus.FAILED
                  and s.block_id in tree.order]
        # A loop failed by its failed items: the items are where to start.
        starts = [key for key in failed
                  if not any(key[0] in tree.loops[other] for other, _ in failed)]
        if not starts:
            raise InvalidRequest(
                f"from: execution {source.id} has no failed step; rerun it from 'start' "
                "or from a block id"
            )
    else:
        if start_from not in tree.order:
            raise InvalidRequest(
                f"from: version {compiled.version} has no block {start_from!r}"
            )
        if not any(s.block_id == start_from for s in source.steps):
            raise InvalidRequest(
                f"from: block {start_from!r} did not run in execution {source.id}"
            )
        starts = [(start_from, None)]  # in every item
    kept = [s for s in source.steps if s.status is StepStatus.SUCCEEDED
            and s.block_id in tree.order and not any(tree.reruns(s.key, at) for at in starts)]
    return [replace(s, seq=i, reused=True) for i, s in enumerate(kept)]


StepKey = tuple[str, str | None]


class _BlockTree:
    """A version's blocks in definition order, with the loops each one is inside."""

    def __init__(self, blocks: tuple[CompiledBlock, ...]) -> None:
        self.order: dict[str, int] = {}
        # The blocks around each block whose output is made of their children's (loops,
        # unlike a branch, which only picks an arm), outermost first.
        self.loops: dict[str, tuple[str, ...]] = {}
        self._walk(blocks, ())

    def _walk(self, blocks: tuple[CompiledBlock, ...], loops: tuple[str, ...]) -> None:
        for block in blocks:
            self.order[block.id] = len(self.order)
            self.loops[block.id] = loops
            iterates = getattr(block.block, "replay", None) is None
            for arm in block.children.values():
                self._walk(arm, (*loops, block.id) if iterates else loops)

    def reruns(self, step: StepKey, start: StepKey) -> bool:
        """Whether a rerun from ``start`` (a step, or a block in every item when its item
        is None) runs ``step`` again rather than reusing it."""
        (block, item), (first, first_item) = step, start
        path = item.split(".") if item else []
        if first_item is not None:
            # Another item of a loop around both is not rerun (nor what it holds).
            first_path = first_item.split(".")
            shared = 0
            for mine, theirs in zip(self.loops[block], self.loops[first], strict=False):
                if mine != theirs:
                    break
                shared += 1
            if path[:shared] != first_path[:shared]:
                return False
        if block in self.loops[first]:
            return True  # a loop around the start: it runs again, replaying the rest
        return self.order[block] >= self.order[first]


def describe_duration(seconds: float) -> str:
    """A retention window for people: "7 days", "12 hours", "90 seconds"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


class RunService:
    """Builds executions and hands them to the dispatch (run here, or queue for a worker)."""

    def __init__(
        self,
        store: Store,
        workflows: WorkflowService,
        dispatch: Dispatch,
        *,
        teams: TeamService,
        log_retention: float,
        sealing_keys: MultiFernet | None = None,
        clock: Clock | None = None,
        credentials: CredentialService | None = None,
        headless: HeadlessService | None = None,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.workflows = workflows
        self.dispatch = dispatch
        self.log_retention = log_retention
        self.teams = teams
        # REFLOW_SECRET_KEY: seals a trigger's secret fields when stored, opens them to run.
        self.sealing_keys = sealing_keys
        # Binds each run's credentials (docs/credentials.md "In workflows").
        self.credentials = credentials
        # Gives each run its installation's configured fields (docs/workflows.md
        # "Configurable fields"), refusing one that lacks a required value.
        self.headless = headless
        self.events = EventCatalog(store, workflows)

    async def run(
        self,
        team: Team,
        workflow_ref: str,
        user_ref: str,
        data: Any,
        *,
        mode: TriggerMode = TriggerMode.API,
        wait: float | None = None,
    ) -> Started:
        """Start a run of the user's installation; with ``wait``, wait that long for its end."""
        target = await self.workflows.installation_cached(team, workflow_ref, user_ref)
        installation = target.installation
        assert installation is not None  # installation() guarantees it
        if not installation.active:
            raise Conflict(
                f"workflow {target.workflow.name!r} is not active for this user; "
                "reactivate it with PUT /workflows/activate"
            )
        compiled = await self.workflows.compiled(
            team.id, installation.workflow_id, installation.installed_version
        )
        trigger = compiled.definition.trigger
        if trigger.type is TriggerType.EVENT:
            raise Conflict(
                f"workflow {target.workflow.name!r} is triggered by the event "
                f"{trigger.event!r}: fire that event with POST /run/event instead of "
                "running the workflow directly"
            )
        stored_trigger = sealing.seal({"data": data}, self.sealing_keys)
        record = self._new_record(
            team.id, installation.workflow_id, installation.id, installation.user_id,
            installation.installed_version, mode, stored_trigger, None,
        )
        return await self._submit(record, compiled, {"data": data}, wait)

    async def fire_event(
        self, team: Team, event: str, user_ref: str, data: Any
    ) -> list[str]:
        """Start one execution (mode ``event``) per active installation of the user whose
        installed version the event triggers; their ids, once all are committed.

        NotFound for an unknown user, or an event no workflow of the team declares (in its
        latest version, or in a version one of the user's installations runs); a user with
        nothing subscribed gets an empty list.
        """
        user = await self.workflows.users.get(team, user_ref)
        subscribers = await self.events.subscribers(team, user.id, event)
        if not subscribers and all(
            declared.name != event for declared in await self.events.declared(team)
        ):
            raise NotFound(f"event {event!r} not found: no workflow declares it"
                           f"{await self._not_an_event(team, event)}")
        trigger = {"data": data, "event": event}
        stored_trigger = sealing.seal(trigger, self.sealing_keys)
        configured: list[Configured | None] = []
        ready = []
        for s in subscribers:
            try:
                configured.append(await self._configured(team.id, s.installation.id,
                                                         s.compiled))
            except Conflict as exc:
                # One copy lacking a value must not keep the event from the others.
                log.warning("event %r: installation %s of user %s skipped: %s", event,
                            s.installation.id, user.id, exc)
                continue
            ready.append(s)
        subscribers = ready
        records = [
            self._new_record(
                team.id, s.installation.workflow_id, s.installation.id, user.id,
                s.installation.installed_version, TriggerMode.EVENT, stored_trigger, None,
            )
            for s in subscribers
        ]
        # Submitted together, so the store's group commit can share their transactions.
        started = await asyncio.gather(*(
            self._submit(record, s.compiled, trigger, None, configured=c)
            for record, s, c in zip(records, subscribers, configured, strict=True)
        ))
        return [s.execution_id for s in started]

    async def _not_an_event(self, team: Team, name: str) -> str:
        """When ``name`` is a workflow started otherwise: which call starts it."""
        workflow = await self.store.get_workflow(team.id, name)
        if workflow is None:
            return ""
        compiled = await self.workflows.compiled(team.id, workflow.id, workflow.latest_version)
        kind = compiled.definition.trigger.type
        if kind is TriggerType.EVENT:
            return ""
        return (f"; {workflow.name!r} is a workflow triggered by {kind.value}: start it "
                "with POST /run/workflow {workflowId, userId, data}")

    async def fire_webhook(
        self, installation: Installation, compiled: CompiledWorkflow, trigger: dict[str, Any],
        *, wait: float | None = None, delivery_key: str | None = None,
    ) -> Started:
        """Start an execution (mode ``webhook``) of the installation from a webhook call's
        trigger (``services/webhooks.py`` checked the call); with ``wait``, wait that long.

        ``delivery_key`` is stored as the execution's idempotency key in its transaction:
        a key already stored raises Conflict, and nothing starts.
        """
        record = self._new_record(
            installation.team_id, installation.workflow_id, installation.id,
            installation.user_id, installation.installed_version, TriggerMode.WEBHOOK,
            sealing.seal(trigger, self.sealing_keys), None,
        )
        return await self._submit(record, compiled, trigger, wait, delivery_key)

    async def rerun(
        self, team: Team, workflow_ref: str, execution_id: str, user_ref: str | None,
        *, options: RerunOptions = RerunOptions(), wait: float | None = None,
        idempotency_key: str | None = None,
    ) -> Started:
        """A new execution of the same installation: by default on the original version,
        with the original trigger, from the start (``options`` says otherwise).

        With an ``idempotency_key``, the same key gives back the execution it first made
        (the request is checked in full first; a key used for another rerun is a 422).
        """
        record = await self._rerun_record(team, workflow_ref, execution_id, user_ref, options)
        if idempotency_key is not None:
            earlier = await self._keyed(team, idempotency_key, record, wait)
            if earlier is not None:
                return earlier
        return await self._start_rerun(team, record, wait, idempotency_key)

    async def rerun_many(
        self, team: Team, reruns: Sequence[tuple[str, str]], options: RerunOptions
    ) -> list[Started | ReflowError]:
        """``rerun`` of each (execution id, idempotency key) on its own workflow, for any
        user, without waiting: what each one started, or why it was refused, in order.

        The sources and their installations are read with one query each for the whole
        batch (and each workflow once), and the new executions are submitted together, so
        the store's group commit inserts them in one transaction. The keys are not looked
        up first: the caller knows them unused (a bulk job reads its own with its pending
        items); a key stored meanwhile gives back its execution, as in ``rerun``.
        """
        ids = [execution_id for execution_id, _ in reruns]
        sources = {s.id: s for s in await self.store.get_executions(
            team.id, ids, steps=options.start_from != "start")}
        installations = {i.id: i for i in await self.store.get_installations(
            team.id, sorted({s.installation_id for s in sources.values()}))}
        targets: dict[str, Target | ReflowError] = {}
        for workflow_id in sorted({s.workflow_id for s in sources.values()}):
            try:
                targets[workflow_id] = await self.workflows.resolve(
                    team, workflow_id, None, deleted=True)
            except ReflowError as exc:
                targets[workflow_id] = exc
        records: list[ExecutionRecord | ReflowError] = []
        for execution_id, _ in reruns:
            source = sources.get(execution_id)
            if source is None:
                records.append(self._missing(execution_id, team))
                continue
            target = targets[source.workflow_id]
            if isinstance(target, ReflowError):
                records.append(target)
                continue
            try:
                records.append(await self._rerun_of(
                    team, target, source, installations.get(source.installation_id), options))
            except ReflowError as exc:
                records.append(exc)
        started = iter(await asyncio.gather(*(
            self._start_rerun(team, record, None, key)
            for record, (_, key) in zip(records, reruns, strict=True)
            if isinstance(record, ExecutionRecord)), return_exceptions=True))
        outcomes: list[Started | ReflowError] = []
        for record in records:
            outcome = record if isinstance(record, ReflowError) else next(started)
            if not isinstance(outcome, Started | ReflowError):
                raise outcome  # a bug, not a refusal
            outcomes.append(outcome)
        return outcomes

    async def _start_rerun(
        self, team: Team, record: ExecutionRecord, wait: float | None,
        idempotency_key: str | None,
    ) -> Started:
        """Submit a rerun's new execution; when its key was stored meanwhile (the same
        request twice at once), the execution that key made."""
        # Opened before anything is stored: a key since removed is a 409, not a new run.
        trigger = sealing.open_trigger(record.trigger, self.sealing_keys)
        compiled = await self.workflows.compiled(team.id, record.workflow_id, record.version)
        try:
            return await self._submit(record, compiled, trigger, wait, idempotency_key)
        except Conflict:
            # The same key, sent twice at once: the other request stored it first.
            earlier = None
            if idempotency_key is not None:
                earlier = await self._keyed(team, idempotency_key, record, wait)
            if earlier is None:
                raise
            return earlier

    async def _keyed(
        self, team: Team, key: str, record: ExecutionRecord, wait: float | None
    ) -> Started | None:
        """The execution this key already made, if any; it must be the same rerun."""
        execution_id = await self.store.find_idempotency_key(team.id, key)
        if execution_id is None:
            return None
        if wait:
            await self.dispatch.wait(team.id, execution_id, wait)
        earlier = await self.store.get_execution(team.id, execution_id)
        if earlier is None:
            return None  # purged with its execution: the key is free again
        # Each sealing encrypts anew, so equal data can differ in bytes: compare it opened.
        same_trigger = earlier.trigger == record.trigger or (
            sealing.open_trigger(earlier.trigger, self.sealing_keys)
            == sealing.open_trigger(record.trigger, self.sealing_keys))
        same = same_trigger and (earlier.rerun_of, earlier.version, len(earlier.reused_steps)) == (
            record.rerun_of, record.version, len(record.steps))
        if not same:
            raise InvalidRequest(
                f"Idempotency-Key {key!r} was used for a different rerun "
                f"(execution {execution_id}); use a new key for a new request"
            )
        finished = earlier if earlier.finished and wait else None
        return Started(execution_id, finished, finished.output if finished else None)

    async def _rerun_record(
        self, team: Team, workflow_ref: str, execution_id: str, user_ref: str | None,
        options: RerunOptions,
    ) -> ExecutionRecord:
        source = await self.store.get_execution(team.id, execution_id)
        if source is None:
            raise self._missing(execution_id, team)
        # A deleted installation's execution is found (to say why it cannot rerun).
        target = await self.workflows.resolve(team, workflow_ref, user_ref, deleted=True)
        installation = await self.store.get_installation_by_id(team.id, source.installation_id)
        return await self._rerun_of(team, target, source, installation, options)

    async def _rerun_of(
        self, team: Team, target: Target, source: ExecutionRecord,
        installation: Installation | None, options: RerunOptions,
    ) -> ExecutionRecord:
        """The new execution rerunning ``source`` (asked for through ``target``, running on
        ``installation``, its source's live one), or why it cannot be made."""
        execution_id = source.id
        same_workflow = (
            target.installation.id == source.installation_id
            if target.via_installation and target.installation is not None
            else target.workflow.id == source.workflow_id
        )
        if not same_workflow or (target.user is not None and target.user.id != source.user_id):
            raise self._missing(execution_id, team)
        if not source.finished:
            raise Conflict(
                f"execution {execution_id} is still {source.status.value}; "
                "rerun it once it has finished"
            )
        installation = self._rerun_installation(target, source, installation)
        version = await self._rerun_version(target, source, installation, options.version)
        compiled = await self.workflows.compiled(team.id, source.workflow_id, version)
        trigger = (source.trigger if options.data is None
                   else sealing.seal({"data": options.data}, self.sealing_keys))
        record = self._new_record(
            team.id, source.workflow_id, source.installation_id, source.user_id,
            version, TriggerMode.RERUN, trigger, source.id,
        )
        record.steps = _reused_steps(source, compiled, options.start_from)
        return record

    def _rerun_installation(
        self, target: Target, source: ExecutionRecord, installation: Installation | None
    ) -> Installation:
        """The installation a rerun runs on: the source's, which must be live and active
        (a deactivated installation runs nothing; a deleted one, W6, until reinstalled:
        activating it again revives the same installation)."""
        name = target.workflow.name
        if installation is None:
            raise Conflict(
                f"execution {source.id} ran on an installation of workflow {name!r} that was "
                "deleted; activate the workflow for the user again (PUT /workflows/activate) "
                "to rerun it"
            )
        if not installation.active:
            raise Conflict(
                f"workflow {name!r} is not active for this user; reactivate it with "
                "PUT /workflows/activate to rerun its executions"
            )
        return installation

    async def _rerun_version(
        self, target: Target, source: ExecutionRecord, installation: Installation, choice: str
    ) -> int:
        if choice == "original":
            return source.version
        if choice == "latest":
            return target.workflow.latest_version
        return installation.installed_version

    def _missing(self, execution_id: str, team: Team) -> NotFound:
        # The team's window (docs/operations.md "Retention"); a workflow's shorter one or
        # its count may have purged a younger execution, which answers "not found".
        window = self.log_retention if team.log_retention is None else team.log_retention
        minted = execution_id_time_ms(execution_id)
        if minted is not None and minted < self.clock.now_ms() - window * 1000:
            return NotFound(
                f"execution {execution_id} is no longer available: logs are kept for "
                f"{describe_duration(window)}"
            )
        return NotFound(f"execution {execution_id} not found")

    def _new_record(
        self, team_id: str, workflow_id: str, installation_id: str, user_id: str,
        version: int, mode: TriggerMode, trigger: bytes, rerun_of: str | None,
    ) -> ExecutionRecord:
        now = now_ms()
        return ExecutionRecord(
            id=new_execution_id(now),
            team_id=team_id,
            workflow_id=workflow_id,
            installation_id=installation_id,
            user_id=user_id,
            version=version,
            mode=mode,
            trigger=trigger,
            status=ExecutionStatus.QUEUED,
            created_at=now,
            rerun_of=rerun_of,
        )

    async def _configured(
        self, team_id: str, installation_id: str, compiled: CompiledWorkflow
    ) -> Configured | None:
        """The installation's configured fields for a run of this version (None when it
        declares none); Conflict naming each required field it lacks a value for."""
        if self.headless is None or not compiled.definition.config_fields:
            return None
        return await self.headless.configured(team_id, installation_id, compiled)

    async def _submit(
        self, record: ExecutionRecord, compiled: CompiledWorkflow, trigger: Any,
        wait: float | None, idempotency_key: str | None = None,
        configured: Configured | None = None,
    ) -> Started:
        if configured is None:
            configured = await self._configured(record.team_id, record.installation_id,
                                                compiled)
        env = await self.teams.expression_env(record.team_id)
        # Most versions name no credential: no coroutine for them on the hot path.
        bound = (await self._bind(record, compiled)
                 if compiled.credentials or compiled.any_credential else None)
        submission = Submission(record, compiled, trigger, env, idempotency_key, bound,
                                *(configured or (None, ())))
        return await self.dispatch.submit(submission, wait)

    async def _bind(self, record: ExecutionRecord, compiled: CompiledWorkflow
                    ) -> Bindings | None:
        """The run's credential bindings, decrypted here (docs/architecture.md
        "Credentials in runs"); None when the version names no credential."""
        if self.credentials is None or not (compiled.credentials or compiled.any_credential):
            return None
        return await self.credentials.bindings(record, compiled)

    async def prepare(self, record: ExecutionRecord) -> Job:
        """The job of a claimed execution: its record, recorded steps and opened trigger."""
        compiled = await self.workflows.compiled(record.team_id, record.workflow_id,
                                                 record.version)
        recorded, record.steps = record.steps, []
        env = await self.teams.expression_env(record.team_id)
        trigger = sealing.open_trigger(record.trigger, self.sealing_keys)
        config, hidden = await self._configured(record.team_id, record.installation_id,
                                                compiled) or (None, ())
        return Job(record, compiled, trigger, recorded, persisted=True, env=env,
                   credentials=await self._bind(record, compiled), config=config,
                   config_secrets=hidden)

    async def cancel(self, team: Team, execution_id: str) -> ExecutionRecord:
        """Cancel an execution: a queued one at once, a running one before its next block.

        Answers the execution as it is now; cancelling a cancelled one again is harmless,
        a finished one is a Conflict.
        """
        error = orjson.dumps(error_json("cancelled before it started", None))
        waiting = orjson.dumps(error_json("cancelled while it waited", None))
        record = await self.store.request_cancel(team.id, execution_id, now_ms(), error,
                                                 waiting)
        if record is None:
            raise self._missing(execution_id, team)
        if record.finished and record.status is not ExecutionStatus.CANCELLED:
            raise Conflict(
                f"execution {execution_id} already {record.status.value}; "
                "only a queued or running execution can be cancelled"
            )
        if record.cancel_requested:
            # Here at once; a runner in another process sees the flag at its next poll.
            self.dispatch.cancel(execution_id)
        return record
