"""The SQLite files reflow creates are readable by their owner only, whatever the umask."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from reflow.store.migrate import upgrade
from reflow.store.sqlite import SqliteStore


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The common 022 umask, which alone would leave the files world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


async def open_and_write(path: Path, *, runner: bool) -> None:
    """Open the store (as the runner: with its lock file), write once, check every file."""
    store = SqliteStore(str(path))
    try:
        if runner:
            await store.start_runner()
        store._db.execute("CREATE TABLE IF NOT EXISTS probe (x)")
        store._db.execute("INSERT INTO probe VALUES (1)")
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        files += [Path(f"{path}.lock")] if runner else []
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await store.close()


def test_a_migrated_database_and_its_wal_shm_and_lock_files_are_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "reflow.db"
    upgrade(f"sqlite:///{path}")
    assert mode(path) == 0o600
    asyncio.run(open_and_write(path, runner=True))


def test_a_database_the_store_creates_itself_is_owner_only(tmp_path: Path) -> None:
    asyncio.run(open_and_write(tmp_path / "fresh.db", runner=False))


def test_an_existing_database_keeps_the_mode_its_operator_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    upgrade(f"sqlite:///{path}")
    path.chmod(0o640)
    upgrade(f"sqlite:///{path}")
    assert mode(path) == 0o640

