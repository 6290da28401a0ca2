"""SQLite store: schedules (schedules.sql)."""

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
from reflow.store.sqlite._base import Q, _SqliteBase


class SchedulesMixin(_SqliteBase):
    """Schedules (schedules.sql)."""

    async def installations_updated_max(self) -> int | None:
        """The latest installation update."""
        row = self._one("schedule_installations_updated_max", ())
        return None if row is None or row[0] is None else int(row[0])

    async def changed_installations(self, since: int, limit: int) -> list[InstallationChange]:
        """Installations changed since ``since`` whose state is missing or stale."""
        found = self._all("schedule_changed_installations", (since, limit))
        return [rows.installation_change_of(r) for r in found]

    async def save_schedule_states(self, states: Sequence[ScheduleState]) -> None:
        """Insert or replace states (one from the same installation update is kept)."""
        if states:
            with self._transaction() as db:
                db.executemany(Q["schedule_state_save"],
                               [rows.schedule_state_params(s) for s in states])

    async def due_schedules(self, now: int, limit: int) -> list[DueSchedule]:
        """States due by ``now``, earliest first."""
        return [rows.due_schedule_of(r) for r in self._all("schedule_due", (now, limit))]

    async def advance_schedule(
        self, seen: ScheduleState, next_due_at: int | None, fire: Fire | None = None
    ) -> Advance:
        """Move a state, and claim and insert a fire with it, in one transaction."""
        move = (next_due_at, seen.installation_id, seen.next_due_at,
                seen.installation_updated_at)
        with self._transaction() as db:
            if db.execute(Q["schedule_move" if fire is None else "schedule_move_active"],
                          move).rowcount == 0:
                return Advance.LOST
            if fire is None:
                return Advance.MOVED
            execution = fire.execution
            claim = (seen.installation_id, fire.due_at, execution.id, execution.created_at)
            if db.execute(Q["schedule_claim"], claim).rowcount == 0:
                return Advance.MOVED
            db.execute(Q["insert_execution"], rows.execution_params(execution))
        return Advance.FIRED

    async def list_schedules(self, team_id: str) -> list[ScheduleListing]:
        """A team's active schedules."""
        return [rows.schedule_listing_of(r) for r in self._all("schedule_list", (team_id,))]

    async def prune_schedule_claims(self, before: int, limit: int) -> int:
        """Delete a batch of old claims."""
        with self._transaction() as db:
            return db.execute(Q["schedule_claims_prune"], (before, limit)).rowcount
