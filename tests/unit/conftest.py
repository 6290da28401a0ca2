"""Fixtures the unit tests share: the anyio backend and a migrated SQLite store."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reflow.store.sqlite import SqliteStore


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio only (anyio would add trio where it is installed)."""
    return "asyncio"


@pytest.fixture
async def store(migrated_sqlite: Path, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A migrated, empty SQLite store, closed after the test."""
    path = tmp_path / "unit.db"
    # Copying beats migrating per test by two orders of magnitude on a busy disk.
    shutil.copyfile(migrated_sqlite, path)
    opened = SqliteStore(str(path))
    try:
        yield opened
    finally:
        await opened.close()
