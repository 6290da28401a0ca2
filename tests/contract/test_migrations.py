"""Migrations reach the schema in ``reflow.store.schema``: migrated equals built fresh.

The metadata comparison runs on both backends; the shape comparisons read SQLite's own
catalogue (PRAGMAs), and PostgreSQL adds what only it has: concurrent upgrades.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.ext.asyncio import create_async_engine

import pg_support
from reflow.errors import SettingsError
from reflow.store.migrate import asyncpg_url, upgrade, upgrade_apart
from reflow.store.revisions import head_revision
from reflow.store.schema import metadata

SQLITE_AUTO_VACUUM_INCREMENTAL = 2


@contextmanager
def _engine(path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    """A database built by running every migration."""
    path = tmp_path / "migrated.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    """A database built directly from the metadata."""
    path = tmp_path / "fresh.db"
    with _engine(path) as engine:
        metadata.create_all(engine)
    return path


def _schema(path: Path) -> dict[str, Any]:
    """Tables with their columns, indexes (with columns and WHERE) and foreign keys."""
    with closing(sqlite3.connect(path)) as db:
        tables = sorted(
            name for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'"
            )
        )
        return {table: _table(db, table) for table in tables}


def _table(db: sqlite3.Connection, table: str) -> dict[str, Any]:
    # PRAGMA rows: table_info (cid, name, type, notnull, default, pk);
    # index_list (seq, name, unique, origin, partial); foreign_key_list (..., table, from, to).
    columns = sorted(tuple(row[1:]) for row in db.execute(f"PRAGMA table_info('{table}')"))
    indexes = {}
    for _, name, unique, origin, partial in db.execute(f"PRAGMA index_list('{table}')"):
        keys = [row[2] for row in db.execute(f"PRAGMA index_info('{name}')")]
        # Auto-indexes (primary keys, UNIQUE) are named by creation order: key them by shape.
        label = f"auto:{origin}:{','.join(keys)}" if name.startswith("sqlite_autoindex") else name
        indexes[label] = (keys, unique, origin, partial, _index_where(db, name))
    foreign_keys = sorted(tuple(row[2:5]) for row in db.execute(
        f"PRAGMA foreign_key_list('{table}')"
    ))
    without_rowid = _create_sql(db, "table", table).upper().rstrip().endswith("WITHOUT ROWID")
    return {"columns": columns, "indexes": indexes, "foreign_keys": foreign_keys,
            "without_rowid": without_rowid}


def _create_sql(db: sqlite3.Connection, kind: str, name: str) -> str:
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = ? AND name = ?",
                     (kind, name)).fetchone()
    return "" if row is None or row[0] is None else str(row[0])


def _index_where(db: sqlite3.Connection, name: str) -> str | None:
    sql = _create_sql(db, "index", name)
    _, found, where = sql.partition(" WHERE ")
    return " ".join(where.split()) if found else None


def _differences(connection: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def _postgres_differences(url: str) -> list[Any]:
    engine = create_async_engine(asyncpg_url(url))
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_differences)
    finally:
        await engine.dispose()


def test_migrated_database_matches_the_metadata(migrated: Path) -> None:
    with _engine(migrated) as engine, engine.connect() as connection:
        assert _differences(connection) == []


@pytest.mark.postgres
def test_migrated_postgres_database_matches_the_metadata(postgres_url: str) -> None:
    assert asyncio.run(_postgres_differences(postgres_url)) == []


@pytest.fixture
def empty_postgres(postgres_url: str) -> Iterator[str]:
    """A database of its own with no schema yet, dropped after the test."""
    name = f"reflow_test_{os.getpid()}_empty"
    url = pg_support.create_database(postgres_url, name)
    try:
        yield url
    finally:
        pg_support.drop_database(postgres_url, name)


async def _revisions(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [r["version_num"] for r in await conn.fetch("SELECT version_num FROM "
                                                            "alembic_version")]
    finally:
        await conn.close()


@pytest.mark.postgres
def test_two_hosts_upgrading_postgres_at_once_migrate_it_once(empty_postgres: str) -> None:
    # The second waits on the advisory lock, then finds the schema at head: without the
    # lock both would create the same tables and one would fail.
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            upgrade(empty_postgres)
        except BaseException as exc:
            errors.append(exc)

    hosts = [threading.Thread(target=migrate) for _ in range(2)]
    for host in hosts:
        host.start()
    for host in hosts:
        host.join(60)
    assert errors == []
    assert asyncio.run(_revisions(empty_postgres)) == [head_revision()]
    assert asyncio.run(_postgres_differences(empty_postgres)) == []


def test_migrated_schema_equals_a_fresh_create_all(migrated: Path, fresh: Path) -> None:
    built, expected = _schema(migrated), _schema(fresh)
    assert sorted(built) == sorted(expected)
    for table, shape in expected.items():
        assert built[table] == shape, table


def test_schema_comparison_sees_partial_indexes(fresh: Path) -> None:
    # Guards the comparison itself: a WHERE clause lost by a migration must show.
    where = _schema(fresh)["executions"]["indexes"]["ix_executions_rerun_of"][4]
    assert where == "rerun_of IS NOT NULL"


def test_upgrade_twice_changes_nothing_and_keeps_data(migrated: Path) -> None:
    before = _schema(migrated)
    with closing(sqlite3.connect(migrated)) as db, db:
        db.execute("INSERT INTO teams (id, name, created_at) VALUES ('t1', 'acme', 1)")
    upgrade(f"sqlite:///{migrated}")
    assert _schema(migrated) == before
    with closing(sqlite3.connect(migrated)) as db:
        assert db.execute("SELECT id, name FROM teams").fetchall() == [("t1", "acme")]
        assert db.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


def test_migrated_database_uses_wal_and_incremental_auto_vacuum(migrated: Path) -> None:
    with closing(sqlite3.connect(migrated)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA auto_vacuum").fetchone() == (SQLITE_AUTO_VACUUM_INCREMENTAL,)


def test_serve_migrates_in_a_child_and_keeps_alembic_and_sqlalchemy_out(tmp_path: Path) -> None:
    """``upgrade_apart`` (what `reflow serve` runs): the steps applied, then none; a bad
    folder is the same SettingsError as in-process; the serving modules never load
    Alembic or SQLAlchemy (about 30 MiB of a long-running process)."""
    url = f"sqlite:///{tmp_path / 'apart.db'}"
    applied = upgrade_apart(url)
    assert applied[0] == "-> 0001, initial schema"
    assert f"-> {head_revision()}, " in applied[-1]
    assert upgrade_apart(url) == []
    with pytest.raises(SettingsError, match="does not exist"):
        upgrade_apart(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    probe = ("import sys, reflow.cli, reflow.cli.serve; "
             "print(sorted(m for m in ('alembic', 'sqlalchemy') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"
