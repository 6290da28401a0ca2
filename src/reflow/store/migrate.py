"""Create or upgrade the database schema with Alembic (``reflow db upgrade``)."""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from reflow.errors import SettingsError
from reflow.store.revisions import MIGRATIONS
from reflow.store.sqlite import create_private

# The advisory lock every `reflow db upgrade` on PostgreSQL takes first (a fixed 64-bit
# key, "reflowdb" in ASCII): a second host migrating at the same time waits for the first,
# then finds the schema at head and does nothing.
MIGRATION_LOCK_KEY = 0x7265_666C_6F77_6462


def _engine(database_url: str) -> Engine:
    engine = create_engine(database_url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # Must precede the first table so the purge can give pages back to the OS.
            dbapi_connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
            dbapi_connection.execute("PRAGMA journal_mode = WAL")

    return engine


def check_folder(path: str) -> None:
    """Refuse, as one SettingsError line, a database whose folder is missing or read-only.

    SQLite writes beside the file (its -wal and -shm files), so the folder must be
    writable even when the database exists. A probe file tells, even for root, whom
    permission bits do not stop but a read-only mount or an immutable folder does.
    """
    folder = Path(path).parent
    verb = "use" if os.path.exists(path) else "create"
    problem = f"REFLOW_DATABASE_URL: cannot {verb} the database at {path}: directory {folder}"
    if not folder.is_dir():
        reason = "is not a directory" if folder.exists() else "does not exist"
        raise SettingsError(f"{problem} {reason}")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        read_only = exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        raise SettingsError(f"{problem} {'is read-only' if read_only else 'is unusable'} "
                            f"({exc.strerror})") from None
    try:
        os.close(os.open(path, os.O_RDWR))
    except FileNotFoundError:
        pass  # a new database: the folder can take it
    except OSError as exc:
        raise SettingsError(f"REFLOW_DATABASE_URL: cannot open the database at {path} for "
                            f"writing ({exc.strerror})") from None


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision`` (creating it if new).

    A PostgreSQL URL is migrated through asyncpg (the store's driver, so it is the only
    PostgreSQL driver reflow needs) on an event loop of its own.
    """
    if database_url.startswith(("postgresql://", "postgres://", "postgresql+")):
        asyncio.run(_upgrade_postgres(database_url, revision))
        return
    path = database_url.removeprefix("sqlite:///")
    if database_url.startswith("sqlite:///") and path != ":memory:":
        check_folder(path)
        try:
            create_private(path)  # before SQLite makes it (and its -wal, -shm) world-readable
        except OSError as exc:
            raise SettingsError(f"REFLOW_DATABASE_URL: cannot create {path!r}: "
                                f"{exc.strerror}") from None
    engine = _engine(database_url)
    try:
        with engine.begin() as connection:
            _run_migrations(connection, revision)
    finally:
        engine.dispose()


def _run_migrations(connection: Connection, revision: str) -> None:
    """Alembic's upgrade on an open transaction (the caller commits it)."""
    if connection.dialect.name == "postgresql":
        # Held until the commit; taken before alembic reads the current revision.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": MIGRATION_LOCK_KEY})
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def asyncpg_url(database_url: str) -> str:
    """The URL with SQLAlchemy's asyncpg dialect (``postgresql+asyncpg://...``)."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(scheme="postgresql+asyncpg"))


async def _upgrade_postgres(database_url: str, revision: str) -> None:
    # The documented Alembic async pattern: an async engine, the migrations in run_sync.
    from reflow.store.postgres import connect_error  # asyncpg only for PostgreSQL URLs

    engine = create_async_engine(asyncpg_url(database_url))
    try:
        try:
            connection = await engine.connect()
        except (OSError, TimeoutError, DBAPIError) as exc:
            raise connect_error(database_url, exc) from None
        try:
            async with connection.begin():
                await connection.run_sync(_run_migrations, revision)
        finally:
            await connection.close()
    finally:
        await engine.dispose()
