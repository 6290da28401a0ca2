"""SQLite store: credentials (credentials.sql; services/credentials.py)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from reflow.domain.apps import CredentialRecord
from reflow.store import rows
from reflow.store.queries import sealed_kind
from reflow.store.sqlite._base import Q, _SqliteBase


class CredentialsMixin(_SqliteBase):
    """Credentials (credentials.sql; services/credentials.py)."""

    async def create_credential(self, credential: CredentialRecord) -> None:
        """Insert a credential."""
        self._write([("credentials_insert", rows.credential_params(credential))])

    async def list_credentials(self, team_id: str, user_id: str) -> list[CredentialRecord]:
        """The user's credentials, oldest first."""
        return [rows.credential_of(r)
                for r in self._all("credentials_list", (team_id, user_id))]

    async def credential_apps(self, team_id: str, ids: Sequence[str]
                              ) -> dict[str, tuple[str, str]]:
        """Of these credential ids, the team's: id -> (user id, app)."""
        return {r["id"]: (r["user_id"], r["app"])
                for r in self._all("credential_apps", (team_id, orjson.dumps(list(ids))))}

    async def delete_credential(self, team_id: str, user_id: str, credential_id: str) -> bool:
        """Delete one of the user's credentials."""
        with self._transaction() as db:
            cursor = db.execute(Q["credentials_delete"], (team_id, user_id, credential_id))
        return cursor.rowcount > 0

    async def run_credentials(
        self, team_id: str, user_id: str, installation_id: str
    ) -> tuple[list[str], list[CredentialRecord]]:
        """The installation's pinned ids and the user's credentials, newest first."""
        pinned = self._one("credentials_pinned", (team_id, installation_id))
        found = self._all("credentials_of_user_newest_first", (team_id, user_id))
        ids = orjson.loads(pinned[0]) if pinned is not None and pinned[0] else []
        return ids, [rows.credential_of(r) for r in found]

    async def pin_credentials(
        self, team_id: str, installation_id: str, credential_ids: Sequence[str]
    ) -> bool:
        """Pin the installation to these credentials."""
        value = orjson.dumps(list(credential_ids)).decode() if credential_ids else None
        with self._transaction() as db:
            cursor = db.execute(Q["credentials_pin"], (value, team_id, installation_id))
        return cursor.rowcount > 0

    async def sealed_batch(self, kind: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        """A batch of sealed values of ``kind``, by key."""
        found = self._all(f"rotate_{sealed_kind(kind)}_batch", (after, limit))
        return [(r[0], r[1].encode() if isinstance(r[1], str) else bytes(r[1])) for r in found]

    async def reseal(self, kind: str, key: str, old: bytes, new: bytes) -> bool:
        """Replace a sealed value if it is still ``old``."""
        text = sealed_kind(kind) != "triggers"
        with self._transaction() as db:
            cursor = db.execute(Q[f"rotate_{kind}_set"], (
                new.decode() if text else new, key, old.decode() if text else old))
        return cursor.rowcount > 0
