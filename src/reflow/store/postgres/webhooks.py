"""PostgreSQL store: webhook tokens (webhooks.sql)."""

from __future__ import annotations

from reflow.errors import NotFound
from reflow.store import rows
from reflow.store.base import WebhookTarget
from reflow.store.postgres._base import Q, _PostgresBase


class WebhooksMixin(_PostgresBase):
    """Webhook tokens (webhooks.sql)."""

    async def ensure_webhook_token(
        self, team_id: str, installation_id: str, token: str, now: int
    ) -> str:
        """The installation's token, ``token`` stored now when it had none."""
        async with self._connection("webhook_token_insert") as conn, conn.transaction():
            await conn.execute(Q["webhook_token_insert"], token, now, team_id, installation_id)
            stored = await conn.fetchval(Q["webhook_token_of"], team_id, installation_id)
        if stored is None:
            raise NotFound(f"installation {installation_id!r} not found")
        return str(stored)

    async def rotate_webhook_token(
        self, team_id: str, installation_id: str, token: str, now: int
    ) -> None:
        """Replace the installation's token."""
        changed = await self._execute(
            "webhook_token_rotate", token, now, team_id, installation_id,
            conflict="a new webhook token collided with another; try again")
        if changed == 0:
            raise NotFound(f"installation {installation_id!r} not found")

    async def find_webhook(self, token: str) -> WebhookTarget | None:
        """The installation a token names."""
        row = await self._fetchrow("webhook_find", token)
        return None if row is None else rows.webhook_target_of(row)
