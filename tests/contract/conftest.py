"""One parametrized ``store`` fixture: every Store backend runs the same contract suite.

A backend is one entry in ``BACKENDS``: a function that yields a migrated, empty Store in
the test's folder (or skips, e.g. when its server does not answer). PostgreSQL joins as a
second entry that skips locally and fails when ``REFLOW_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from reflow.store.base import Store
from reflow.store.migrate import upgrade
from reflow.store.sqlite import SqliteStore


@asynccontextmanager
async def _sqlite(tmp_path: Path) -> AsyncIterator[Store]:
    path = tmp_path / "x.db"
    upgrade(f"sqlite:///{path}")
    store = SqliteStore(str(path))
    try:
        yield store
    finally:
        await store.close()


BACKENDS: dict[str, Callable[[Path], AbstractAsyncContextManager[Store]]] = {
    "sqlite": _sqlite,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=list(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated, empty Store of each backend, closed after the test."""
    async with BACKENDS[request.param](tmp_path) as opened:
        yield opened
