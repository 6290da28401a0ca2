"""The one clock that time-driven work reads: schedules, retention, tokens, leases, outbox.

Production uses ``SystemClock``. Tests give the process a ``ManualClock`` and move it with
``advance``: a schedule fires, a window expires, a retry comes due, and no test sleeps.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in milliseconds since the epoch, and a sleep on that time."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch: how every timestamp is stored."""

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""


class SystemClock:
    """The machine's clock."""

    def now_ms(self) -> int:
        """Wall-clock milliseconds since the epoch."""
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that tests move (``advance``), and whose sleeps end only when it is moved.

    Made with a time, it stands still there. Made without one, it follows the machine's
    clock plus whatever it was advanced by, so that timestamps other components take from
    the machine (an execution's stop time) stay in order with it.
    """

    def __init__(self, now_ms: int | None = None) -> None:
        self._fixed = now_ms
        self._offset = 0
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now_ms(self) -> int:
        """The clock's time."""
        base = time.time_ns() // 1_000_000 if self._fixed is None else self._fixed
        return base + self._offset

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock is advanced past now + ``seconds``."""
        due = self.now_ms() + max(0, round(seconds * 1000))
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (due, next(self._order), waiter))
        await waiter

    def advance(self, seconds: float) -> int:
        """Move the clock forward and wake every sleeper now due; the new time."""
        self._offset += max(0, round(seconds * 1000))
        now = self.now_ms()
        while self._sleepers and self._sleepers[0][0] <= now:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                # The sleeper's loop may be another thread's (a test client's portal).
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)
        return now


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
