"""SQLite store: the error stream and its outbox (services/error_stream.py)."""

from __future__ import annotations

import orjson

from reflow.store import rows
from reflow.store.base import ErrorNotification, ErrorStreamSetting, ErrorStreamStats
from reflow.store.sqlite._base import Q, _SqliteBase


class ErrorStreamMixin(_SqliteBase):
    """The error stream and its outbox (services/error_stream.py)."""

    async def get_error_stream(self, team_id: str) -> ErrorStreamSetting | None:
        """The team's error stream."""
        row = self._one("error_stream_get", (team_id,))
        return None if row is None else ErrorStreamSetting(row[0], row[1])

    async def set_error_stream(self, team_id: str, url: str, sealed_secret: str) -> bool:
        """Set the team's error stream."""
        with self._transaction() as db:
            return db.execute(Q["error_stream_set"], (url, sealed_secret, team_id)).rowcount > 0

    async def clear_error_stream(self, team_id: str) -> bool:
        """Stop the team's error stream and delete its notifications."""
        with self._transaction() as db:
            if db.execute(Q["error_stream_clear"], (team_id,)).rowcount == 0:
                return False
            db.execute(Q["error_outbox_delete_team"], (team_id,))
        return True

    async def claim_error_notifications(
        self, now: int, claimed_until: int, limit: int, per_team: int
    ) -> list[ErrorNotification]:
        """Claim due notifications (one process delivers on SQLite: no lock to skip)."""
        with self._transaction() as db:
            ids = [r[0] for r in db.execute(Q["error_outbox_claim"],
                                            (now, claimed_until, limit, per_team))]
        if not ids:
            return []
        found = self._all("error_outbox_claimed", (orjson.dumps(ids),))
        return [rows.error_notification_of(r) for r in found]

    async def error_notification_delivered(self, execution_id: str, now: int) -> None:
        """Mark a notification delivered."""
        self._write([("error_outbox_delivered", (now, execution_id))])

    async def error_notification_retry(
        self, execution_id: str, next_attempt_at: int, error: str
    ) -> None:
        """Record a failed attempt."""
        self._write([("error_outbox_retry", (next_attempt_at, error, execution_id))])

    async def error_notification_dead(self, execution_id: str, now: int, error: str) -> None:
        """Give a notification up."""
        self._write([("error_outbox_dead", (now, error, execution_id))])

    async def pause_error_stream(self, team_id: str, until: int) -> None:
        """Claim none of the team's notifications before ``until``."""
        self._write([("error_stream_pause", (until, team_id))])

    async def drop_error_notification(self, execution_id: str) -> None:
        """Delete a notification."""
        self._write([("error_outbox_drop", (execution_id,))])

    async def purge_error_notifications(self, finished_before: int, limit: int) -> int:
        """Delete a batch of old delivered or dead notifications."""
        with self._transaction() as db:
            return db.execute(Q["error_outbox_purge"], (finished_before, limit)).rowcount

    async def error_stream_stats(self, team_id: str) -> ErrorStreamStats:
        """Counts of the team's notifications by state, and its latest failure."""
        row = self._one("error_outbox_stats", (team_id,))
        assert row is not None  # an aggregate always answers one row
        failure = self._one("error_outbox_last_failure", (team_id,))
        return ErrorStreamStats(
            int(row["pending"]), int(row["delivered"]), int(row["dead"]),
            row["last_delivered_at"],
            None if failure is None else (failure[0], failure[1], failure[2]))
