"""Running workflows: start a run, wait for it, rerun a past execution."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson

from reflow.domain.definitions import TriggerType
from reflow.domain.executions import ExecutionRecord, ExecutionStatus, TriggerMode
from reflow.domain.records import Team
from reflow.engine import Engine, Recorder, RunState, now_ms
from reflow.errors import Conflict, NotFound
from reflow.ids import execution_id_time_ms, new_execution_id
from reflow.services.workflows import Target, WorkflowService
from reflow.store.base import Store
from reflow.worker import Worker

# Resolved (workflow, user) references are reused briefly: the run path then costs no
# catalogue query. Activation changes made here clear it at once.
_TARGET_CACHE_SECONDS = 5.0


def describe_duration(seconds: float) -> str:
    """A retention window for people: "7 days", "12 hours", "90 seconds"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


@dataclass(frozen=True, slots=True)
class Started:
    """A run as answered: its execution, and its result when it finished in time."""

    execution_id: str
    finished: ExecutionRecord | None = None


class RunService:
    """Starts executions and hands them to the worker."""

    def __init__(
        self,
        store: Store,
        workflows: WorkflowService,
        engine: Engine,
        worker: Worker,
        *,
        log_retention: float,
    ) -> None:
        self.store = store
        self.workflows = workflows
        self.engine = engine
        self.worker = worker
        self.log_retention = log_retention
        self._targets: dict[tuple[str, str, str | None], tuple[float, Target]] = {}

    def forget_targets(self) -> None:
        """Drop cached references (after an activation change)."""
        self._targets.clear()

    async def _target(self, team: Team, workflow_ref: str, user_ref: str | None) -> Target:
        key = (team.id, workflow_ref, user_ref)
        now = time.monotonic()
        hit = self._targets.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        target = await self.workflows.installation(team, workflow_ref, user_ref)
        if len(self._targets) > 10_000:
            self._targets.clear()
        self._targets[key] = (now + _TARGET_CACHE_SECONDS, target)
        return target

    async def run(
        self,
        team: Team,
        workflow_ref: str,
        user_ref: str,
        data: Any,
        *,
        mode: TriggerMode = TriggerMode.API,
        wait: float | None = None,
        queue: bool = False,
    ) -> Started:
        """Start a run of the user's installation; with ``wait``, wait that long for its end.

        ``queue`` only commits it as queued, for the process that runs executions to claim
        (what a CLI does while ``serve`` runs).
        """
        target = await self._target(team, workflow_ref, user_ref)
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
                f"{trigger.event!r}: fire that event instead of running it directly"
            )
        record = self._new_record(
            team.id, installation.workflow_id, installation.id, installation.user_id,
            installation.installed_version, mode, orjson.dumps({"data": data}), None,
        )
        if queue:
            return await self._enqueue(record)
        return await self._start(record, {"data": data}, wait)

    async def rerun(
        self, team: Team, workflow_ref: str, execution_id: str, user_ref: str | None,
        *, wait: float | None = None, queue: bool = False,
    ) -> Started:
        """A new execution of the same installation and version with the original trigger."""
        source = await self.store.get_execution(team.id, execution_id)
        if source is None:
            raise self._missing(execution_id)
        target = await self.workflows.resolve(team, workflow_ref, user_ref)
        same_workflow = (
            target.installation.id == source.installation_id
            if target.via_installation and target.installation is not None
            else target.workflow.id == source.workflow_id
        )
        if not same_workflow or (target.user is not None and target.user.id != source.user_id):
            raise self._missing(execution_id)
        if not source.finished:
            raise Conflict(
                f"execution {execution_id} is still {source.status.value}; "
                "rerun it once it has finished"
            )
        record = self._new_record(
            team.id, source.workflow_id, source.installation_id, source.user_id,
            source.version, TriggerMode.RERUN, source.trigger, source.id,
        )
        if queue:
            return await self._enqueue(record)
        return await self._start(record, orjson.loads(source.trigger), wait)

    def _missing(self, execution_id: str) -> NotFound:
        minted = execution_id_time_ms(execution_id)
        if minted is not None and minted < now_ms() - self.log_retention * 1000:
            return NotFound(
                f"execution {execution_id} is no longer available: logs are kept for "
                f"{describe_duration(self.log_retention)}"
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
            status=ExecutionStatus.RUNNING,
            created_at=now,
            started_at=now,
            rerun_of=rerun_of,
            lease_owner=self.worker.owner,
            lease_expires=self.worker.lease_until(),
        )

    async def _enqueue(self, record: ExecutionRecord) -> Started:
        record.status = ExecutionStatus.QUEUED
        record.started_at = record.lease_owner = record.lease_expires = None
        await self.store.insert_execution(record)
        self.worker.wake()
        return Started(record.id)

    async def _start(self, record: ExecutionRecord, trigger: Any, wait: float | None) -> Started:
        compiled = await self.workflows.compiled(record.team_id, record.workflow_id,
                                                 record.version)
        # A run answered only when it finishes acknowledges nothing before its commit;
        # any other run is committed (and so acknowledged) before it starts.
        recorder = Recorder(self.store, record, persisted=False)
        if not wait:
            await recorder.flush()
        state = self.engine.new_state(recorder, compiled, trigger)
        task = self.worker.spawn(state)
        if not wait:
            return Started(record.id)
        done, _ = await asyncio.wait({task}, timeout=wait)
        if done:
            return Started(record.id, task.result())  # re-raises what stopped the run
        await recorder.ensure_persisted()
        return Started(record.id)

    async def prepare(self, record: ExecutionRecord) -> RunState:
        """Rebuild a claimed execution's run state from its record and recorded steps."""
        compiled = await self.workflows.compiled(record.team_id, record.workflow_id,
                                                 record.version)
        recorder = Recorder(self.store, record, persisted=True)
        recorded, record.steps = record.steps, []
        return self.engine.new_state(recorder, compiled, orjson.loads(record.trigger), recorded)
