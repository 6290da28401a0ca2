"""The scheduler: fires schedule triggers, one execution per due time (docs/schedules.md).

Every process that serves the API or runs executions runs it, as the ``schedules``
periodic job; none is named leader. A tick does two things, each on an index:

1. **Sync.** Installations updated since this process last looked (``updated_at``) get
   their schedule state computed again: the schedule of the installed version, and the
   next due time (none while inactive). A new or reactivated installation, or one moved to
   a version with another cron or time zone, starts from that change: nothing before it
   fires. Other changes (an upgrade keeping the schedule) keep the next due time.
2. **Fire.** States whose next due time has come are read (``next_due_at <= now``), and
   each is moved to its next due time in one transaction that also claims the due time
   (unique per installation and due time) and inserts the queued execution. The move is
   conditional on the due time this scheduler saw, so when several schedulers reach the
   same due time, one moves it and the others change nothing: a due time fires once, and
   a crash between claim and execution cannot happen (they commit together).

Due times missed while no scheduler ran follow the schedule's ``missed`` policy. Time is
read from the injectable clock only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from reflow.clock import Clock
from reflow.domain.configuration import describe_missing
from reflow.domain.definitions import TriggerType
from reflow.domain.executions import ExecutionRecord, ExecutionStatus, TriggerMode
from reflow.domain.records import Installation, Team
from reflow.domain.schedules import (
    MISSED_AFTER_MS,
    Advance,
    DueSchedule,
    Fire,
    InstallationChange,
    Schedule,
    ScheduleListing,
    ScheduleState,
)
from reflow.errors import InvalidRequest, NotFound
from reflow.ids import new_execution_id
from reflow.services.logs import iso
from reflow.services.workflows import WorkflowService
from reflow.store.base import Store

if TYPE_CHECKING:
    from reflow.services.headless import HeadlessService

log = logging.getLogger(__name__)

# Rows read per query (changed installations, due states).
BATCH = 500
# Installation changes are looked for from this long before the latest one seen last
# time: a change committed that much later than its timestamp (a slow transaction, or a
# host whose clock is behind) is still found.
SYNC_OVERLAP_MS = 10 * 60_000
# Claims older than the log retention are deleted, at most this often.
PRUNE_EVERY_MS = 3_600_000


class Scheduler:
    """Keeps schedule states in step with installations and fires what is due."""

    def __init__(
        self,
        store: Store,
        workflows: WorkflowService,
        clock: Clock,
        *,
        interval: float,
        claim_retention: float,
        on_fired: Callable[[], None] | None = None,
        headless: HeadlessService | None = None,
    ) -> None:
        self.store = store
        self.workflows = workflows
        self.clock = clock
        # A due time reached later than this counts as missed (``missed: skip``).
        self.grace_ms = max(MISSED_AFTER_MS, round(2 * interval * 1000))
        self.claim_retention_ms = round(claim_retention * 1000)
        self.on_fired = on_fired
        # Reads installations' configured fields: one lacking a required value is skipped.
        self.headless = headless
        self._since = 0  # installations updated before this were synced (less the overlap)
        self._pruned_at: int | None = None
        # One tick at a time in this process (the loop's, a test's, the CLI's listing):
        # once a tick returns, everything due by its start has fired.
        self._lock = asyncio.Lock()

    async def tick(self) -> int:
        """Sync changed installations, then fire every due time that has come; how many
        executions this scheduler inserted."""
        async with self._lock:
            await self._sync()
            now = self.clock.now_ms()
            fired = await self._fire_due(now)
            if fired and self.on_fired is not None:
                self.on_fired()
            if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_MS:
                self._pruned_at = now
                await self._prune(now - self.claim_retention_ms)
        return fired

    async def upcoming(self, team: Team) -> list[ScheduleListing]:
        """A team's active schedules with their next due times (after a sync, so a change
        made a moment ago shows)."""
        await self.sync()
        return await self.store.list_schedules(team.id)

    # -- sync ------------------------------------------------------------------------------

    async def sync(self) -> int:
        """Compute the state of every installation changed since the last sync; how many
        states were written."""
        async with self._lock:
            return await self._sync()

    async def _sync(self) -> int:
        # Read first: whatever commits while this sync runs is found by the next one.
        latest = await self.store.installations_updated_max()
        since, written = self._since, 0
        while True:
            changes = await self.store.changed_installations(since, BATCH)
            states = [await self._state_of(change) for change in changes]
            await self.store.save_schedule_states(states)
            written += len(states)
            if len(changes) < BATCH:
                break
            # Each change read now has a current state, so the query moves past it.
            since = changes[-1].installation.updated_at
        if latest is not None:
            self._since = max(self._since, latest - SYNC_OVERLAP_MS)
        return written

    async def _state_of(self, change: InstallationChange) -> ScheduleState:
        installation, old = change.installation, change.state
        schedule = await self._schedule_of(installation)
        state = ScheduleState(installation.id, installation.team_id, installation.updated_at,
                              installation.installed_version)
        if schedule is None:
            return state
        state = replace(state, cron=schedule.cron, timezone=schedule.timezone,
                        missed=schedule.missed)
        if not installation.active:
            return state
        kept = (old is not None and old.next_due_at is not None
                and (old.cron, old.timezone) == (schedule.cron, schedule.timezone)
                # A due time from before the change may fall in an inactive spell that
                # no scheduler saw: the change is where the schedule starts again.
                and old.next_due_at > installation.updated_at)
        next_due = (old.next_due_at if kept and old is not None
                    else schedule.next_after(installation.updated_at))
        return replace(state, next_due_at=next_due)

    async def _schedule_of(self, installation: Installation) -> Schedule | None:
        """The schedule of the installation's version (None: not a schedule workflow)."""
        try:
            compiled = await self.workflows.compiled(
                installation.team_id, installation.workflow_id, installation.installed_version)
        except (NotFound, InvalidRequest) as exc:
            # A version that no longer loads runs nothing, on a schedule or otherwise.
            log.warning("installation %s: its version %d does not load, so it is not "
                        "scheduled: %s", installation.id, installation.installed_version, exc)
            return None
        trigger = compiled.definition.trigger
        return trigger.schedule if trigger.type is TriggerType.SCHEDULE else None

    # -- fire ------------------------------------------------------------------------------

    async def _fire_due(self, now: int) -> int:
        fired = 0
        done: set[str] = set()
        while True:
            due = await self.store.due_schedules(now, BATCH)
            fresh = [d for d in due if d.state.installation_id not in done]
            for item in fresh:
                done.add(item.state.installation_id)
                fired += await self._fire(item, now)
            # A full batch may hide more; one with nothing new means the rest were lost
            # to another scheduler or could not move: the next tick looks again.
            if len(due) < BATCH or not fresh:
                return fired

    async def _fire(self, item: DueSchedule, now: int) -> int:
        """Fire what is due of one state by its missed-runs policy, and move it to the
        next due time after ``now``; how many executions this inserted."""
        state, installation = item.state, item.installation
        schedule = state.schedule
        if (installation is None or item.user_deleted or not installation.active
                or installation.updated_at != state.installation_updated_at
                or schedule is None or state.next_due_at is None):
            # Changed since its state was computed: nothing fires until a sync has seen
            # the change (a deleted user's or a deactivated installation: never).
            await self.store.advance_schedule(state, None)
            return 0
        times = schedule.missed_times(state.next_due_at, now, self.grace_ms)
        after = schedule.next_after(now)
        if times and await self._unconfigured(installation):
            await self.store.advance_schedule(state, after)
            return 0
        if not times:
            await self.store.advance_schedule(state, after)
            return 0
        fired = 0
        for index, due in enumerate(times):
            next_due = times[index + 1] if index + 1 < len(times) else after
            fire = Fire(due, _execution(installation, schedule, due, now))
            outcome = await self.store.advance_schedule(state, next_due, fire)
            if outcome is Advance.LOST:
                break  # another scheduler moved it: the rest is its to fire
            fired += outcome is Advance.FIRED
            state = replace(state, next_due_at=next_due)
        return fired

    async def _unconfigured(self, installation: Installation) -> bool:
        """Whether the installation lacks a required configured value (then its due
        times are skipped, each logged with the fields it lacks)."""
        if self.headless is None:
            return False
        compiled = await self.workflows.compiled(
            installation.team_id, installation.workflow_id, installation.installed_version)
        lacking = await self.headless.lacking(installation, compiled.definition)
        if lacking:
            log.warning("schedule of installation %s (user %s) skipped: %s", installation.id,
                        installation.user_id, describe_missing(compiled.definition.name,
                                                               lacking))
        return bool(lacking)

    async def _prune(self, before: int) -> None:
        while await self.store.prune_schedule_claims(before, BATCH) == BATCH:
            pass


def _execution(
    installation: Installation, schedule: Schedule, due: int, now: int
) -> ExecutionRecord:
    """The queued execution of one due time; its trigger data says which."""
    data = {
        "scheduledAt": iso(due),
        "localTime": schedule.local(due).isoformat(),
        "cron": schedule.cron,
        "timezone": schedule.timezone,
    }
    return ExecutionRecord(
        id=new_execution_id(now),
        team_id=installation.team_id,
        workflow_id=installation.workflow_id,
        installation_id=installation.id,
        user_id=installation.user_id,
        version=installation.installed_version,
        mode=TriggerMode.SCHEDULE,
        trigger=orjson.dumps({"data": data}),
        status=ExecutionStatus.QUEUED,
        created_at=now,
    )
