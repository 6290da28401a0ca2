"""Create or upgrade the database schema with Alembic (``reflow db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from reflow.errors import SettingsError
from reflow.store.sqlite import create_private

MIGRATIONS = Path(__file__).parent / "migrations"


def _engine(database_url: str) -> Engine:
    engine = create_engine(database_url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # Must precede the first table so the purge can give pages back to the OS.
            dbapi_connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
            dbapi_connection.execute("PRAGMA journal_mode = WAL")

    return engine


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision`` (creating it if new)."""
    path = database_url.removeprefix("sqlite:///")
    if database_url.startswith("sqlite:///") and path != ":memory:":
        if not Path(path).parent.exists():
            raise SettingsError(f"REFLOW_DATABASE_URL: folder of {path!r} does not exist")
        try:
            create_private(path)  # before SQLite makes it (and its -wal, -shm) world-readable
        except OSError as exc:
            raise SettingsError(f"REFLOW_DATABASE_URL: cannot create {path!r}: "
                                f"{exc.strerror}") from None
    engine = _engine(database_url)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
