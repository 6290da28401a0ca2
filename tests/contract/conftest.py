"""One parametrized ``store`` fixture: every Store backend runs the same contract suite.

A backend is one entry in ``BACKENDS``: a function of the test's request and folder that
yields a migrated, empty Store (or skips, e.g. when its server does not answer). PostgreSQL
joins as a second entry that skips locally and fails when ``REFLOW_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from pg_support import postgres_url, truncate_async
from reflow.store.base import Store
from reflow.store.postgres import PostgresStore
from reflow.store.sqlite import SqliteStore

__all__ = ["postgres_url"]  # the session database fixture the postgres backend uses

# Enough connections for the concurrency tests (two claimers, two purgers, group commits).
POSTGRES_POOL_SIZE = 4


@asynccontextmanager
async def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    path = tmp_path / "x.db"
    # Copying beats migrating per test by two orders of magnitude on a busy disk.
    shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
    store = SqliteStore(str(path))
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = request.getfixturevalue("postgres_url")  # skips when no server is configured
    await truncate_async(url)
    store = PostgresStore(url, pool_size=POSTGRES_POOL_SIZE)
    try:
        yield store
    finally:
        await store.close()


Backend = Callable[[pytest.FixtureRequest, Path], AbstractAsyncContextManager[Store]]
BACKENDS: dict[str, Backend] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=list(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated, empty Store of each backend, closed after the test."""
    async with BACKENDS[request.param](request, tmp_path) as opened:
        yield opened
