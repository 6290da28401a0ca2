"""PostgreSQL store: waiting executions and their wake times (waiting.sql)."""

from __future__ import annotations

from reflow.store.postgres._base import Q, _PostgresBase


class WaitingMixin(_PostgresBase):
    """Waiting executions and their wake times (waiting.sql)."""

    async def wake_waiting(self, now: int, limit: int) -> int:
        """Queue again up to ``limit`` waiting executions whose wake time has come."""
        async with self._connection("wake_waiting") as conn:
            row = await conn.fetchrow(Q["wake_waiting"], now, limit)
        return int(row["woken"])

    async def waiting(self) -> tuple[int, int | None]:
        """How many executions wait, and the soonest wake time (ms) among them."""
        count, soonest = await self._fetchrow("waiting_count"), await self._fetchrow("next_wake")
        return int(count[0]), soonest[0]
