"""PostgreSQL store: hints heard through LISTEN on a dedicated connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Any

import asyncpg

from reflow.store.base import HINTS
from reflow.store.postgres._base import _CONNECTION_ERRORS, _PostgresBase, connect_error, log

# LISTEN channels and the hint names ``listen`` reports them as.
CHANNELS = {"reflow_queued": "queued", "reflow_finished": "finished",
            "reflow_revoked": "revoked"}
# The listener's reconnect backoff, doubling from the first to the last (seconds).
_RECONNECT_FIRST = 0.1
_RECONNECT_LAST = 5.0


class ListenerMixin(_PostgresBase):
    """Hints heard through LISTEN on a dedicated connection."""

    async def listen(
        self, on_hint: Callable[[str, str], None], hints: Collection[str] = HINTS
    ) -> None:
        """Call ``on_hint`` for these hints; one dedicated connection (not the pool's)
        listens, only to their channels, and is reconnected in the background when it
        drops."""
        self._hints.append((on_hint, frozenset(hints)))
        new = [c for c, hint in CHANNELS.items() if hint in hints and c not in self._channels]
        self._channels.update(new)
        try:
            if self._listener is None and self._reconnecting is None:
                self._listener = await self._open_listener()
            elif self._listener is not None:
                for channel in new:
                    await self._listener.add_listener(channel, self._on_notification)
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            raise connect_error(self.url, exc) from exc

    async def _open_listener(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(self.url)
        try:
            for channel in self._channels:
                await conn.add_listener(channel, self._on_notification)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._on_listener_lost)
        return conn

    def _on_notification(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        hint = CHANNELS[channel]
        for on_hint, wanted in self._hints:
            if hint not in wanted:
                continue
            try:
                on_hint(hint, payload)
            except Exception:
                log.exception("a %s hint handler failed", hint)

    def _on_listener_lost(self, _conn: Any) -> None:
        self._listener = None
        if not self._closed and self._reconnecting is None:
            log.warning("the PostgreSQL hint listener lost its connection; reconnecting")
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Reopen the listener, waiting longer after each failure (hints meanwhile are
        lost, which is fine: whoever acts on them also polls)."""
        delay = _RECONNECT_FIRST
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                self._listener = await self._open_listener()
            except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("the hint listener cannot reconnect (%s); next try in %.1fs",
                            exc, delay)
                delay = min(2 * delay, _RECONNECT_LAST)
                continue
            log.info("the PostgreSQL hint listener reconnected")
            break
        self._reconnecting = None
