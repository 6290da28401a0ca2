"""PostgreSQL for tests: one fresh database per session, migrated once, emptied per test.

``REFLOW_TEST_POSTGRES_URL`` names a server (e.g. postgresql://postgres@127.0.0.1:5432/test).
Unset: PostgreSQL tests skip, and the session ends with one line saying so. Set but the
server does not answer: they fail (CI sets it, so a missing server is never a green run).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from reflow.store.migrate import upgrade

ENV = "REFLOW_TEST_POSTGRES_URL"
SKIP_REASON = (f"PostgreSQL tests skipped: set {ENV} "
               "(e.g. postgresql://postgres@127.0.0.1:5432/test) to run them")
CONNECT_TIMEOUT_S = 10

T = TypeVar("T")
_skipped: list[str] = []  # the skip reason once a test skipped for want of a server


def _in_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a thread of its own: fixtures may be set up while a test's
    event loop runs, where asyncio.run (ours, or the migrations') is refused."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(function(*args))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="pg_support")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def with_database(url: str, name: str) -> str:
    """The same server URL naming database ``name``."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _admin(base_url: str, sql: str) -> None:
    conn = await asyncpg.connect(base_url, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(base_url: str, name: str) -> str:
    """Create database ``name`` (dropped first if a crashed session left it); its URL."""
    _in_thread(asyncio.run, _admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    _in_thread(asyncio.run, _admin(base_url, f'CREATE DATABASE "{name}"'))
    return with_database(base_url, name)


def drop_database(base_url: str, name: str) -> None:
    """Drop database ``name``, closing whatever connections are left on it."""
    _in_thread(asyncio.run, _admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def migrate(url: str) -> None:
    """Run reflow's migrations on ``url`` (from any thread, loop running or not)."""
    _in_thread(upgrade, url)


async def truncate_async(url: str) -> None:
    """Empty every table but alembic_version, in one statement."""
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename <> 'alembic_version'")]
        if tables:
            await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables))
    finally:
        await conn.close()


def truncate(url: str) -> None:
    """``truncate_async`` for synchronous callers."""
    _in_thread(asyncio.run, truncate_async(url))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated database of its own for this test session (dropped at its end); skips
    when REFLOW_TEST_POSTGRES_URL is unset, fails when it is set and nothing answers."""
    base = os.environ.get(ENV, "")
    if not base:
        _skipped.append(SKIP_REASON)
        pytest.skip(SKIP_REASON)
    name = f"reflow_test_{os.getpid()}"
    try:
        url = create_database(base, name)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        pytest.fail(f"{ENV} is set but PostgreSQL at {urlsplit(base).hostname}:"
                    f"{urlsplit(base).port or 5432} does not answer: {exc}", pytrace=False)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(base, name)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line at the end of a session whose PostgreSQL tests skipped."""
    if _skipped:
        terminalreporter.write_line(_skipped[0], yellow=True)
