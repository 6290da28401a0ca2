"""Open the Store a database URL names, and make this process one that runs executions.

The backends differ in how a process may run executions: a SQLite file takes one runner
(a lock beside the file; the runner releases the leases its dead predecessor left), while
PostgreSQL takes any number of workers, each fenced by its own leases. That difference
lives here, not in the Store protocol.
"""

from __future__ import annotations

from reflow.settings import Settings
from reflow.store.base import Store
from reflow.store.sqlite import SqliteStore, check_folder


def is_postgres(database_url: str) -> bool:
    """Whether the URL names a PostgreSQL database."""
    return database_url.startswith(("postgresql://", "postgres://", "postgresql+"))


def open_store(settings: Settings) -> Store:
    """The Store for ``REFLOW_DATABASE_URL`` (which must be migrated: ``reflow db upgrade``)."""
    if is_postgres(settings.database_url):
        from reflow.store.postgres import PostgresStore  # its driver only when asked for

        return PostgresStore(settings.database_url, pool_size=settings.database_pool_size)
    path = settings.sqlite_path
    if path != ":memory:":
        check_folder(path)
    return SqliteStore(path, synchronous=settings.sqlite_synchronous,
                       wal_limit=settings.sqlite_wal_limit)


async def start_runner(store: Store) -> int:
    """Make this process one that runs executions; returns how many it resumes at once.

    SQLite: takes the file's runner lock (SettingsError when another process holds it) and
    releases the leases left by the runner before. PostgreSQL: nothing to do; abandoned
    executions become claimable when their leases expire.
    """
    if isinstance(store, SqliteStore):
        return await store.start_runner()
    return 0
