"""SQLite store: OAuth connections and credential refresh (oauth.sql; services/oauth.py)."""

from __future__ import annotations

from reflow.domain.apps import CredentialRecord
from reflow.store import rows
from reflow.store.base import CredentialEvent
from reflow.store.sqlite._base import Q, _SqliteBase


class OAuthMixin(_SqliteBase):
    """OAuth connections and credential refresh (oauth.sql; services/oauth.py)."""

    async def insert_oauth_state(self, team_id: str, state_hash: str, user_id: str, app: str,
                                 created_at: int, expires_at: int) -> None:
        """Remember a connect flow's state."""
        self._write([("oauth_state_insert",
                      (state_hash, team_id, user_id, app, created_at, expires_at))])

    async def take_oauth_state(self, state_hash: str) -> tuple[str, str, str, int] | None:
        """Delete the state; what it was for."""
        with self._transaction() as db:
            row = db.execute(Q["oauth_state_take"], (state_hash,)).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    async def purge_oauth_states(self, before: int, limit: int) -> int:
        """Delete expired states."""
        with self._transaction() as db:
            cursor = db.execute(Q["oauth_state_purge"], (before, limit))
        return cursor.rowcount

    async def get_oauth_redirect(self, team_id: str) -> str | None:
        """The team's OAuth redirect URL."""
        row = self._one("oauth_redirect_get", (team_id,))
        return None if row is None else row[0]

    async def set_oauth_redirect(self, team_id: str, url: str | None) -> bool:
        """Set the team's OAuth redirect URL."""
        with self._transaction() as db:
            cursor = db.execute(Q["oauth_redirect_set"], (url, team_id))
        return cursor.rowcount > 0

    async def get_credential(self, team_id: str, credential_id: str) -> CredentialRecord | None:
        """One of the team's credentials."""
        row = self._one("oauth_credential_get", (team_id, credential_id))
        return None if row is None else rows.credential_of(row)

    async def save_connected_credential(
        self, credential: CredentialRecord, replace_id: str | None, event: CredentialEvent
    ) -> bool:
        """Store a connect flow's tokens (replacing ``replace_id``'s) and the event."""
        c = credential
        with self._transaction() as db:
            if replace_id is None:
                db.execute(Q["credentials_insert"], rows.credential_params(c))
            elif db.execute(Q["oauth_credential_reconnect"], (
                    c.sealed, c.expires_at, c.updated_at, c.team_id, replace_id)
                    ).rowcount == 0:
                return False
            db.execute(Q["credential_event_insert"], rows.credential_event_params(event))
        return True

    async def claim_credential_refresh(self, credential_id: str, version: int, owner: str,
                                       until: int, now: int) -> bool:
        """Take the refresh lease."""
        with self._transaction() as db:
            cursor = db.execute(Q["oauth_refresh_claim"],
                                (owner, until, credential_id, version, now))
        return cursor.rowcount > 0

    async def credential_refreshed(self, credential_id: str, version: int, owner: str,
                                   sealed: str, expires_at: int | None, now: int,
                                   event: CredentialEvent | None = None) -> bool:
        """Write refreshed values under the lease and version."""
        with self._transaction() as db:
            cursor = db.execute(Q["oauth_refreshed"],
                                (sealed, expires_at, now, credential_id, version, owner))
            if cursor.rowcount and event is not None:
                db.execute(Q["credential_event_insert"], rows.credential_event_params(event))
        return cursor.rowcount > 0

    async def credential_refresh_refused(
        self, credential_id: str, version: int, owner: str, reason: str, blocked_until: int,
        now: int, event: CredentialEvent | None, notification: bytes | None,
    ) -> bool:
        """Mark needs_reconnect, with the event and notification."""
        with self._transaction() as db:
            cursor = db.execute(Q["oauth_refresh_refused"], (
                reason, now, blocked_until, credential_id, version, owner))
            if cursor.rowcount and event is not None:
                db.execute(Q["credential_event_insert"], rows.credential_event_params(event))
                if notification is not None:
                    db.execute(Q["credential_outbox_insert"], (
                        event.id, event.user_id, now, event.kind, notification, event.team_id))
        return cursor.rowcount > 0

    async def release_credential_refresh(self, credential_id: str, owner: str,
                                         blocked_until: int) -> None:
        """Free the refresh lease after a passing failure."""
        self._write([("oauth_refresh_release", (blocked_until, credential_id, owner))])

    async def add_credential_event(self, event: CredentialEvent) -> None:
        """Record a credential event."""
        self._write([("credential_event_insert", rows.credential_event_params(event))])

    async def list_credential_events(self, team_id: str, user_id: str | None,
                                     limit: int) -> list[CredentialEvent]:
        """Credential events, newest first."""
        return [rows.credential_event_of(r)
                for r in self._all("credential_events_list", (team_id, user_id, limit))]
