"""PostgreSQL store: the error stream and its outbox (services/error_stream.py)."""

from __future__ import annotations

from reflow.store import rows
from reflow.store.base import ErrorNotification, ErrorStreamSetting, ErrorStreamStats
from reflow.store.postgres._base import Q, _clean, _count, _has_nul, _PostgresBase


class ErrorStreamMixin(_PostgresBase):
    """The error stream and its outbox (services/error_stream.py)."""

    async def get_error_stream(self, team_id: str) -> ErrorStreamSetting | None:
        """The team's error stream."""
        row = await self._fetchrow("error_stream_get", team_id)
        return None if row is None else ErrorStreamSetting(row[0], row[1])

    async def set_error_stream(self, team_id: str, url: str, sealed_secret: str) -> bool:
        """Set the team's error stream."""
        return await self._execute("error_stream_set", url, sealed_secret, team_id) > 0

    async def clear_error_stream(self, team_id: str) -> bool:
        """Stop the team's error stream and delete its notifications."""
        if _has_nul((team_id,)):
            return False
        async with self._connection("error_stream_clear") as conn, conn.transaction():
            if _count(await conn.execute(Q["error_stream_clear"], team_id)) == 0:
                return False
            await conn.execute(Q["error_outbox_delete_team"], team_id)
        return True

    async def claim_error_notifications(
        self, now: int, claimed_until: int, limit: int, per_team: int
    ) -> list[ErrorNotification]:
        """Claim due notifications; rows another process holds are skipped."""
        async with self._connection("error_outbox_claim") as conn:
            found = await conn.fetch(Q["error_outbox_claim"], now, claimed_until, limit,
                                     per_team)
        return [rows.error_notification_of(r) for r in found]

    async def error_notification_delivered(self, execution_id: str, now: int) -> None:
        """Mark a notification delivered."""
        await self._execute("error_outbox_delivered", now, execution_id)

    async def error_notification_retry(
        self, execution_id: str, next_attempt_at: int, error: str
    ) -> None:
        """Record a failed attempt."""
        await self._execute("error_outbox_retry", next_attempt_at, _clean(error), execution_id)

    async def error_notification_dead(self, execution_id: str, now: int, error: str) -> None:
        """Give a notification up."""
        await self._execute("error_outbox_dead", now, _clean(error), execution_id)

    async def pause_error_stream(self, team_id: str, until: int) -> None:
        """Claim none of the team's notifications before ``until``."""
        await self._execute("error_stream_pause", until, team_id)

    async def drop_error_notification(self, execution_id: str) -> None:
        """Delete a notification."""
        await self._execute("error_outbox_drop", execution_id)

    async def purge_error_notifications(self, finished_before: int, limit: int) -> int:
        """Delete a batch of old delivered or dead notifications (SKIP LOCKED across nodes)."""
        return await self._execute("error_outbox_purge", finished_before, limit)

    async def error_stream_stats(self, team_id: str) -> ErrorStreamStats:
        """Counts of the team's notifications by state, and its latest failure."""
        row = await self._fetchrow("error_outbox_stats", team_id)
        failure = await self._fetchrow("error_outbox_last_failure", team_id)
        return ErrorStreamStats(
            int(row["pending"]), int(row["delivered"]), int(row["dead"]),
            row["last_delivered_at"],
            None if failure is None else (failure[0], failure[1], failure[2]))
