"""PostgreSQL store: OAuth connections and credential refresh (oauth.sql; services/oauth.py)."""

from __future__ import annotations

from reflow.domain.apps import CredentialRecord
from reflow.store import rows
from reflow.store.base import CredentialEvent
from reflow.store.postgres._base import Q, _clean, _count, _has_nul, _PostgresBase


class OAuthMixin(_PostgresBase):
    """OAuth connections and credential refresh (oauth.sql; services/oauth.py)."""

    async def insert_oauth_state(self, team_id: str, state_hash: str, user_id: str, app: str,
                                 created_at: int, expires_at: int) -> None:
        """Remember a connect flow's state."""
        await self._execute("oauth_state_insert", state_hash, team_id, user_id, app,
                            created_at, expires_at)

    async def take_oauth_state(self, state_hash: str) -> tuple[str, str, str, int] | None:
        """Delete the state; what it was for."""
        if _has_nul((state_hash,)):
            return None
        async with self._connection("oauth_state_take") as conn:
            row = await conn.fetchrow(Q["oauth_state_take"], state_hash)
        return None if row is None else (row[0], row[1], row[2], row[3])

    async def purge_oauth_states(self, before: int, limit: int) -> int:
        """Delete expired states."""
        return await self._execute("oauth_state_purge", before, limit)

    async def get_oauth_redirect(self, team_id: str) -> str | None:
        """The team's OAuth redirect URL."""
        row = await self._fetchrow("oauth_redirect_get", team_id)
        return None if row is None else row[0]

    async def set_oauth_redirect(self, team_id: str, url: str | None) -> bool:
        """Set the team's OAuth redirect URL."""
        return await self._execute("oauth_redirect_set", url, team_id) > 0

    async def get_credential(self, team_id: str, credential_id: str) -> CredentialRecord | None:
        """One of the team's credentials."""
        row = await self._fetchrow("oauth_credential_get", team_id, credential_id)
        return None if row is None else rows.credential_of(row)

    async def save_connected_credential(
        self, credential: CredentialRecord, replace_id: str | None, event: CredentialEvent
    ) -> bool:
        """Store a connect flow's tokens (replacing ``replace_id``'s) and the event."""
        c = credential
        async with self._connection("oauth_credential_reconnect") as conn, conn.transaction():
            if replace_id is None:
                await conn.execute(Q["credentials_insert"], *rows.credential_params(c))
            elif _count(await conn.execute(Q["oauth_credential_reconnect"], c.sealed,
                                           c.expires_at, c.updated_at, c.team_id,
                                           replace_id)) == 0:
                return False
            await conn.execute(Q["credential_event_insert"],
                               *rows.credential_event_params(event))
        return True

    async def claim_credential_refresh(self, credential_id: str, version: int, owner: str,
                                       until: int, now: int) -> bool:
        """Take the refresh lease."""
        return await self._execute("oauth_refresh_claim", owner, until, credential_id,
                                   version, now) > 0

    async def credential_refreshed(self, credential_id: str, version: int, owner: str,
                                   sealed: str, expires_at: int | None, now: int,
                                   event: CredentialEvent | None = None) -> bool:
        """Write refreshed values under the lease and version."""
        async with self._connection("oauth_refreshed") as conn, conn.transaction():
            done = _count(await conn.execute(Q["oauth_refreshed"], sealed, expires_at, now,
                                             credential_id, version, owner)) > 0
            if done and event is not None:
                await conn.execute(Q["credential_event_insert"],
                                   *rows.credential_event_params(event))
        return done

    async def credential_refresh_refused(
        self, credential_id: str, version: int, owner: str, reason: str, blocked_until: int,
        now: int, event: CredentialEvent | None, notification: bytes | None,
    ) -> bool:
        """Mark needs_reconnect, with the event and notification."""
        async with self._connection("oauth_refresh_refused") as conn, conn.transaction():
            done = _count(await conn.execute(Q["oauth_refresh_refused"], _clean(reason), now,
                                             blocked_until, credential_id, version,
                                             owner)) > 0
            if done and event is not None:
                await conn.execute(Q["credential_event_insert"],
                                   *rows.credential_event_params(event))
                if notification is not None:
                    await conn.execute(Q["credential_outbox_insert"], event.id,
                                       event.user_id, now, event.kind, notification,
                                       event.team_id)
        return done

    async def release_credential_refresh(self, credential_id: str, owner: str,
                                         blocked_until: int) -> None:
        """Free the refresh lease after a passing failure."""
        await self._execute("oauth_refresh_release", blocked_until, credential_id, owner)

    async def add_credential_event(self, event: CredentialEvent) -> None:
        """Record a credential event."""
        await self._execute("credential_event_insert", *rows.credential_event_params(event))

    async def list_credential_events(self, team_id: str, user_id: str | None,
                                     limit: int) -> list[CredentialEvent]:
        """Credential events, newest first."""
        return [rows.credential_event_of(r)
                for r in await self._fetch("credential_events_list", team_id, user_id, limit)]
