"""PostgreSQL store: schedules (schedules.sql)."""

from __future__ import annotations

from collections.abc import Sequence

from reflow.domain.schedules import (
    Advance,
    DueSchedule,
    Fire,
    InstallationChange,
    ScheduleListing,
    ScheduleState,
)
from reflow.store import rows
from reflow.store.postgres._base import Q, _count, _PostgresBase


class SchedulesMixin(_PostgresBase):
    """Schedules (schedules.sql)."""

    async def installations_updated_max(self) -> int | None:
        """The latest installation update."""
        row = await self._fetchrow("schedule_installations_updated_max")
        return None if row is None or row[0] is None else int(row[0])

    async def changed_installations(self, since: int, limit: int) -> list[InstallationChange]:
        """Installations changed since ``since`` whose state is missing or stale."""
        found = await self._fetch("schedule_changed_installations", since, limit)
        return [rows.installation_change_of(r) for r in found]

    async def save_schedule_states(self, states: Sequence[ScheduleState]) -> None:
        """Insert or replace states (one from the same installation update is kept)."""
        if not states:
            return
        async with self._connection("schedule_state_save") as conn, conn.transaction():
            await conn.executemany(Q["schedule_state_save"],
                                   [rows.schedule_state_params(s) for s in states])

    async def due_schedules(self, now: int, limit: int) -> list[DueSchedule]:
        """States due by ``now``, earliest first."""
        return [rows.due_schedule_of(r) for r in await self._fetch("schedule_due", now, limit)]

    async def advance_schedule(
        self, seen: ScheduleState, next_due_at: int | None, fire: Fire | None = None
    ) -> Advance:
        """Move a state, and claim and insert a fire with it, in one transaction (the
        ``queued`` hint is sent in it, so workers hear of the execution on commit)."""
        name = "schedule_move" if fire is None else "schedule_move_active"
        async with self._connection(name) as conn, conn.transaction():
            moved = await conn.execute(Q[name], next_due_at, seen.installation_id,
                                       seen.next_due_at, seen.installation_updated_at)
            if _count(moved) == 0:
                return Advance.LOST
            if fire is None:
                return Advance.MOVED
            execution = fire.execution
            claimed = await conn.execute(Q["schedule_claim"], seen.installation_id,
                                         fire.due_at, execution.id, execution.created_at)
            if _count(claimed) == 0:
                return Advance.MOVED
            await conn.execute(Q["insert_execution"], *rows.execution_params(execution))
            await conn.execute(Q["notify_queued"])
        return Advance.FIRED

    async def list_schedules(self, team_id: str) -> list[ScheduleListing]:
        """A team's active schedules."""
        found = await self._fetch("schedule_list", team_id)
        return [rows.schedule_listing_of(r) for r in found]

    async def prune_schedule_claims(self, before: int, limit: int) -> int:
        """Delete a batch of old claims."""
        return await self._execute("schedule_claims_prune", before, limit)
