"""SQLite store: waiting executions and their wake times (waiting.sql)."""

from __future__ import annotations

from reflow.store.sqlite._base import Q, _SqliteBase


class WaitingMixin(_SqliteBase):
    """Waiting executions and their wake times (waiting.sql)."""

    async def wake_waiting(self, now: int, limit: int) -> int:
        """Queue again up to ``limit`` waiting executions whose wake time has come."""
        with self._transaction() as db:
            return db.execute(Q["wake_waiting"], (now, limit)).rowcount

    async def waiting(self) -> tuple[int, int | None]:
        """How many executions wait, and the soonest wake time (ms) among them."""
        count, soonest = self._one("waiting_count", ()), self._one("next_wake", ())
        return (int(count[0]) if count else 0), (soonest[0] if soonest else None)
