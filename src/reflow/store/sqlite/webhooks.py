"""SQLite store: webhook tokens (webhooks.sql)."""

from __future__ import annotations

import sqlite3

from reflow.errors import Conflict, NotFound
from reflow.store import rows
from reflow.store.base import WebhookTarget
from reflow.store.sqlite._base import Q, _SqliteBase


class WebhooksMixin(_SqliteBase):
    """Webhook tokens (webhooks.sql)."""

    async def ensure_webhook_token(
        self, team_id: str, installation_id: str, token: str, now: int
    ) -> str:
        """The installation's token, ``token`` stored now when it had none."""
        with self._transaction() as db:
            db.execute(Q["webhook_token_insert"], (token, now, team_id, installation_id))
            row = db.execute(Q["webhook_token_of"], (team_id, installation_id)).fetchone()
        if row is None:
            raise NotFound(f"installation {installation_id!r} not found")
        return str(row[0])

    async def rotate_webhook_token(
        self, team_id: str, installation_id: str, token: str, now: int
    ) -> None:
        """Replace the installation's token."""
        try:
            with self._transaction() as db:
                cursor = db.execute(Q["webhook_token_rotate"],
                                    (token, now, team_id, installation_id))
        except sqlite3.IntegrityError as exc:
            raise Conflict("a new webhook token collided with another; try again") from exc
        if cursor.rowcount == 0:
            raise NotFound(f"installation {installation_id!r} not found")

    async def find_webhook(self, token: str) -> WebhookTarget | None:
        """The installation a token names."""
        row = self._one("webhook_find", (token,))
        return None if row is None else rows.webhook_target_of(row)
