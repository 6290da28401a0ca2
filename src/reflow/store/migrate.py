"""Create or upgrade the database schema with Alembic (``reflow db upgrade``)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from reflow.errors import SettingsError, StoreError
from reflow.store.revisions import MIGRATIONS
from reflow.store.sqlite import check_folder, create_private

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.engine import Engine

# Alembic and SQLAlchemy (about 30 MiB) are imported by the functions that migrate, not
# by this module: a serving process imports it and migrates apart (upgrade_apart).

# The advisory lock every `reflow db upgrade` on PostgreSQL takes first (a fixed 64-bit
# key, "reflowdb" in ASCII): a second host migrating at the same time waits for the first,
# then finds the schema at head and does nothing.
MIGRATION_LOCK_KEY = 0x7265_666C_6F77_6462


def _engine(database_url: str) -> Engine:
    from sqlalchemy import create_engine, event

    engine = create_engine(database_url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # Must precede the first table so the purge can give pages back to the OS.
            dbapi_connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
            dbapi_connection.execute("PRAGMA journal_mode = WAL")

    return engine


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


def upgrade_reporting(database_url: str) -> list[str]:
    """``upgrade`` to head, answering what alembic applied (empty when already up to
    date): alembic reports each step only to its log, so listen to that."""
    applied: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("Running upgrade"):
                applied.append(message.removeprefix("Running upgrade").strip())

    logger = logging.getLogger("alembic.runtime.migration")
    handler, level, propagate = Collect(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        upgrade(database_url)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    return applied


def upgrade_apart(database_url: str) -> list[str]:
    """``upgrade_reporting`` in a child process (``python -m reflow.store.migrate``, the
    URL on its stdin, never in its arguments): Alembic and SQLAlchemy, about 30 MiB, are
    loaded there and go with it instead of staying in a long-running process that never
    needs them again. A SettingsError there is raised here; anything else ends the child
    with its traceback on stderr and raises StoreError here."""
    child = subprocess.run([sys.executable, "-m", "reflow.store.migrate"],
                           input=database_url.encode(), stdout=subprocess.PIPE, check=False)
    try:
        answer = json.loads(child.stdout)
    except ValueError:
        answer = {}
    if child.returncode == 0 and "applied" in answer:
        return [str(step) for step in answer["applied"]]
    if "settings" in answer:
        raise SettingsError(str(answer["settings"]))
    raise StoreError(f"the migration process failed (exit code {child.returncode}; its "
                     "error is above)")


def _main() -> None:
    """The child of ``upgrade_apart``: migrate the URL on stdin, answer one JSON line."""
    try:
        applied = upgrade_reporting(sys.stdin.read())
    except SettingsError as exc:
        sys.stdout.write(json.dumps({"settings": exc.message}) + "\n")
        sys.exit(3)
    sys.stdout.write(json.dumps({"applied": applied}) + "\n")


def _run_migrations(connection: Connection, revision: str) -> None:
    """Alembic's upgrade on an open transaction (the caller commits it)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

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
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import create_async_engine

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


if __name__ == "__main__":
    _main()
