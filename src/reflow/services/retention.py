"""Retention: how long finished executions are kept, and the purge that deletes the rest
(docs/operations.md "Retention").

The window of an execution is its workflow's own (the definition's ``retention``), else
its team's (``PUT /settings/retention``), else ``REFLOW_LOG_RETENTION``. A workflow may
also keep at most a count of executions, and drop the step data of its succeeded ones.
The purge runs as passes (one per workflow rule, then one per team), each deleting
batches of ids chosen on an index; the background job pauses between batches so runs
keep most of the process and the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from reflow import metrics
from reflow.clock import Clock, SystemClock
from reflow.domain.records import Team
from reflow.domain.retention import MAX_WINDOW_SECONDS, KeepSteps, TeamWindow, WorkflowRetention
from reflow.errors import InvalidRequest, NotFound
from reflow.store.base import Store

log = logging.getLogger(__name__)

# Executions per batch: one short transaction each (a few ms on SQLite).
BATCH = 1000
# The background purge works at most this share of the time: after a batch that took t,
# it waits t * (1 - share) / share, so runs keep at least the rest. A tenth: runs kept
# 87-90 % of their rate during a purge of 1,000,000, against 72-73 % with a fifth (the
# batch's WAL checkpoint takes its own share of the machine); it still purges several
# thousand a second on SQLite, more than a worker runs (docs/benchmarks.md "Retention").
BACKGROUND_SHARE = 0.1
# After a purge, at most this many freed pages (SQLite: 8 MiB) are given back to the file
# system, a step of this many per statement, and only while over a quarter of the file is
# free: the rest stay on the free list for the next inserts, which would take the space
# again within the window. Giving a page back costs more than deleting its rows (SQLite
# searches its free list for each), so a backlog's surplus is returned over many runs.
GIVE_BACK_PAGES = 2048
GIVE_BACK_STEP = 256
# The step pass reads completions at least this old, so one committed a little after its
# stop time was taken is never skipped.
STEPS_LAG_MS = 60_000


class PassKind(StrEnum):
    """What one pass deletes."""

    WORKFLOW_WINDOW = "workflow window"  # the workflow's executions older than its window
    WORKFLOW_COUNT = "workflow count"  # beyond the workflow's newest ``keep``
    TEAM_WINDOW = "team window"  # the team's older than its window (other workflows)
    BEFORE = "before"  # the operator's --before: every finished one stopped before
    STEPS = "succeeded steps"  # step data of succeeded executions (keepSteps: failed)


@dataclass(frozen=True, slots=True)
class PurgePass:
    """One rule applied to one team or workflow."""

    kind: PassKind
    team_id: str
    workflow_id: str | None = None
    cutoff: int | None = None  # ms: stopped before it (window passes and BEFORE)
    keep: int | None = None  # WORKFLOW_COUNT
    skip: tuple[str, ...] = ()  # TEAM_WINDOW: workflows with a window of their own
    since: int = 0  # STEPS: where the last pass stopped

    def describe(self) -> str:
        """For progress lines: what and whose."""
        whose = f"workflow {self.workflow_id}" if self.workflow_id else f"team {self.team_id}"
        return f"{self.kind.value} of {whose}"


@dataclass(slots=True)
class PurgeReport:
    """What a purge deleted (or, dry, would delete), per pass."""

    executions: int = 0
    steps_dropped: int = 0  # executions whose step data was dropped
    pages_given_back: int = 0  # SQLite: free pages returned to the file system
    passes: list[tuple[PurgePass, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TeamRetention:
    """A team's window and where it comes from."""

    window: float  # seconds
    inherited: bool  # True: the deployment's REFLOW_LOG_RETENTION


Progress = Callable[[PurgePass, int], None]


class RetentionService:
    """Windows per team and workflow, and the purge that applies them."""

    def __init__(self, store: Store, default_window: float, clock: Clock | None = None) -> None:
        self.store = store
        self.default_window = default_window
        self.clock: Clock = clock or SystemClock()

    # -- windows ---------------------------------------------------------------------------

    async def team_window(self, team: Team) -> TeamRetention:
        """The team's window as stored now (a key's cached team may be seconds old)."""
        stored = await self.store.get_team(team.id)
        return self._window_of(stored or team)

    def _window_of(self, team: Team) -> TeamRetention:
        if team.log_retention is None:
            return TeamRetention(self.default_window, True)
        return TeamRetention(float(team.log_retention), False)

    async def set_team_window(self, team: Team, window: float | None) -> TeamRetention:
        """Set the team's window in seconds (None: back to the deployment's)."""
        if window is not None and not 1 <= window <= MAX_WINDOW_SECONDS:
            raise InvalidRequest(f"window: must be from 1 second to {MAX_WINDOW_SECONDS:g} "
                                 "seconds (10 years)")
        stored = None if window is None else round(window)
        if not await self.store.set_team_retention(team.id, stored):
            raise NotFound(f"team {team.id} not found")
        return self._window_of(Team(team.id, team.name, team.created_at, stored))

    # -- the purge -------------------------------------------------------------------------

    async def plan(self, *, before: int | None = None, team_id: str | None = None
                   ) -> list[PurgePass]:
        """The passes a purge runs now: with ``before``, one per team deleting every
        finished execution stopped before it; else the windows, counts and step rules."""
        teams, workflows = await self.store.retention_policies()
        if team_id is not None:
            teams = [t for t in teams if t.team_id == team_id]
            workflows = [w for w in workflows if w.team_id == team_id]
        if before is not None:
            return [PurgePass(PassKind.BEFORE, t.team_id, cutoff=before) for t in teams]
        now = self.clock.now_ms()
        passes = [p for w in workflows for p in self._workflow_passes(w, now)]
        own = {w.workflow_id for w in workflows if w.retention.window is not None}
        for team in teams:
            skip = tuple(sorted(w.workflow_id for w in workflows
                                if w.team_id == team.team_id and w.workflow_id in own))
            passes.append(PurgePass(PassKind.TEAM_WINDOW, team.team_id,
                                    cutoff=now - self._window_ms(team), skip=skip))
        return passes

    def _window_ms(self, team: TeamWindow) -> int:
        window = self.default_window if team.window is None else team.window
        return round(window * 1000)

    def _workflow_passes(self, policy: WorkflowRetention, now: int) -> list[PurgePass]:
        retention, team, workflow = policy.retention, policy.team_id, policy.workflow_id
        passes = []
        if retention.keep_steps is KeepSteps.FAILED:
            passes.append(PurgePass(PassKind.STEPS, team, workflow, cutoff=now - STEPS_LAG_MS,
                                    since=policy.steps_cursor or 0))
        if retention.window is not None:
            passes.append(PurgePass(PassKind.WORKFLOW_WINDOW, team, workflow,
                                    cutoff=now - round(retention.window * 1000)))
        if retention.keep is not None:
            passes.append(PurgePass(PassKind.WORKFLOW_COUNT, team, workflow,
                                    keep=retention.keep))
        return passes

    async def count(self, step: PurgePass) -> int:
        """How many executions the pass would delete (or strip of their steps)."""
        store, team, workflow = self.store, step.team_id, step.workflow_id or ""
        if step.kind in (PassKind.TEAM_WINDOW, PassKind.BEFORE):
            return await store.count_team_executions(team, _cutoff(step), step.skip)
        if step.kind is PassKind.WORKFLOW_WINDOW:
            return await store.count_workflow_executions(team, workflow, _cutoff(step))
        if step.kind is PassKind.WORKFLOW_COUNT:
            return await store.count_workflow_excess(team, workflow, step.keep or 1)
        return await store.count_succeeded_steps(team, workflow, step.since, _cutoff(step))

    async def run(self, step: PurgePass, *, batch: int = BATCH, share: float = 1.0,
                  progress: Progress | None = None) -> int:
        """Apply the pass in batches until nothing is left; ``share`` < 1 pauses between
        batches so other work keeps the rest of the time. How many it deleted."""
        total = 0
        since = step.since
        while True:
            started = time.perf_counter()
            done, since = await self._batch(step, batch, since)
            total += done
            if progress is not None and done:
                progress(step, done)
            if done < batch:
                break
            await _pause(started, share)
        if step.kind is PassKind.STEPS:
            await self.store.set_steps_cursor(step.team_id, step.workflow_id or "",
                                              _cutoff(step))
        return total

    async def _batch(self, step: PurgePass, batch: int, since: int) -> tuple[int, int]:
        store, team, workflow = self.store, step.team_id, step.workflow_id or ""
        if step.kind in (PassKind.TEAM_WINDOW, PassKind.BEFORE):
            return await store.purge_team_executions(team, _cutoff(step), step.skip,
                                                     batch), since
        if step.kind is PassKind.WORKFLOW_WINDOW:
            return await store.purge_workflow_executions(team, workflow, _cutoff(step),
                                                         batch), since
        if step.kind is PassKind.WORKFLOW_COUNT:
            return await store.purge_workflow_excess(team, workflow, step.keep or 1,
                                                     batch), since
        # Steps: the next batch starts at the last one's stop time (those there that
        # lost their steps are not found again).
        done, last = await store.drop_succeeded_steps(team, workflow, since, _cutoff(step),
                                                      batch)
        return done, since if last is None else last

    async def purge(self, *, before: int | None = None, team_id: str | None = None,
                    dry_run: bool = False, share: float = 1.0, batch: int = BATCH,
                    progress: Progress | None = None) -> PurgeReport:
        """Plan and run (or, dry, count) every pass; see ``plan``."""
        report = PurgeReport()
        for step in await self.plan(before=before, team_id=team_id):
            if dry_run:
                done = await self.count(step)
            else:
                done = await self.run(step, batch=batch, share=share, progress=progress)
            report.passes.append((step, done))
            if step.kind is PassKind.STEPS:
                report.steps_dropped += done
            else:
                report.executions += done
        if not dry_run:
            report.pages_given_back = await self._give_back(share)
        return report

    async def _give_back(self, share: float) -> int:
        """Return part of the free space the purge left (see GIVE_BACK_PAGES)."""
        given = 0
        while given < GIVE_BACK_PAGES:
            started = time.perf_counter()
            done = await self.store.give_back_space(GIVE_BACK_STEP)
            given += done
            if done < GIVE_BACK_STEP:
                break
            await _pause(started, share)
        return given

    async def purge_once(self) -> int:
        """The background job: apply every rule, pausing between batches; how many
        executions it deleted. Periodic runs it once at a time, so an explicit run waits
        for the loop's instead of skipping the rows it holds locked."""
        report = await self.purge(share=BACKGROUND_SHARE)
        metrics.count_purged(report.executions)
        if report.executions or report.steps_dropped:
            log.info("purged %d executions past their retention, dropped the steps of %d "
                     "succeeded ones", report.executions, report.steps_dropped)
        return report.executions


async def _pause(started: float, share: float) -> None:
    """After work begun at ``started`` (perf_counter), wait so that it took ``share`` of
    the time; yield at least."""
    elapsed = time.perf_counter() - started
    await asyncio.sleep(elapsed * (1 - share) / share if share < 1 else 0)


def _cutoff(step: PurgePass) -> int:
    assert step.cutoff is not None  # set for every kind that reads it (plan)
    return step.cutoff
