"""The PostgreSQL store's base: the asyncpg pool, query helpers, group commit and the
health check; one mixin per resource builds on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from reflow.errors import Conflict, InvalidRequest, LeaseLost, SettingsError, StoreError
from reflow.store.queries import load_queries, statement_runs
from reflow.store.revisions import schema_problem

log = logging.getLogger("reflow.store.postgres")  # the package's name, as before the split
Q = load_queries(Path(__file__).parent)

# Group commits in flight at once: one commits while the next gathers (and may start).
_MAX_GROUPS_IN_FLIGHT = 2
# Statements of a group commit in the order they run: executions before their steps.
_ORDER = {"insert_execution": 0, "insert_step": 1, "insert_idempotency_key": 2,
          "error_outbox_insert": 3}

Statement = tuple[str, Sequence[Any]]
# A pooled connection that died under a query (the server restarted, the backend was
# terminated): the pool replaces it, so a read may be tried again.
# (InternalClientError: the termination message reached a connection between queries.)
_LOST_CONNECTION = (asyncpg.PostgresConnectionError, asyncpg.exceptions.AdminShutdownError,
                    asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
# Errors a lost or refused connection raises (asyncpg's own, or the socket's).
_CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.InterfaceError,
                      asyncpg.PostgresConnectionError)


def _where(url: str) -> str:
    """``host:port/dbname`` of a URL: what an error may show (never the password)."""
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    return f"{parts.hostname or 'localhost'}:{port}{parts.path or '/'}"


def connect_error(url: str, exc: BaseException) -> SettingsError:
    """The SettingsError for a database that cannot be reached (also used by migrations)."""
    reason = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    text = str(reason).strip() or type(reason).__name__
    return SettingsError(f"REFLOW_DATABASE_URL: cannot connect to PostgreSQL at "
                         f"{_where(url)}: {text}")


def driver_url(url: str) -> str:
    """The URL as asyncpg takes it (``postgresql://``, whatever SQLAlchemy dialect it names)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def _clean(text: str) -> str:
    """Text PostgreSQL can store (its text type refuses NUL)."""
    return text.replace("\x00", "")


def _has_nul(args: Sequence[Any]) -> bool:
    """Whether a text parameter holds NUL, which PostgreSQL's text type refuses."""
    return any(isinstance(a, str) and "\x00" in a for a in args)


def _count(status: str) -> int:
    """The row count of a command status such as ``UPDATE 1``."""
    return int(status.rsplit(" ", 1)[-1])


def _write_error(exc: Exception) -> Exception:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict(f"already stored: {exc}")
    return StoreError(f"database write failed: {exc}")


@contextlib.contextmanager
def _translated(name: str, conflict: str | None = None) -> Iterator[None]:
    """Driver errors as reflow's: a unique violation is Conflict, anything else StoreError."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(conflict or f"already stored: {exc}") from exc
    except asyncpg.UndefinedTableError as exc:
        raise StoreError(f"database query {name} failed: {exc} "
                         "(is the database migrated? run `reflow db upgrade`)") from exc
    except (asyncpg.PostgresError, asyncpg.InternalClientError, *_CONNECTION_ERRORS) as exc:
        raise StoreError(f"database query {name} failed: {exc}") from exc


@dataclass(slots=True)
class _Writer:
    """One execution write waiting for its group commit."""

    # update_execution's parameters when the write is fenced by a lease (it runs first).
    fence: tuple[Any, ...] | None
    statements: list[Statement]
    queued: bool = False  # inserts a queued execution: hint "queued"
    finished: str | None = None  # finishes this execution: hint "finished"
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop()
                                       .create_future())

    @property
    def execution_id(self) -> str:
        """The execution a fenced write is for."""
        assert self.fence is not None
        return str(self.fence[9])


async def _run_statements(conn: asyncpg.Connection, statements: Sequence[Statement]) -> None:
    """Run named statements in order; a run of the same statement is one executemany."""
    for name, params in statement_runs(statements):
        if len(params) == 1:
            await conn.execute(Q[name], *params[0])
        else:
            await conn.executemany(Q[name], params)


async def _notify(conn: asyncpg.Connection, writers: Sequence[_Writer]) -> None:
    """The hints of these writes, sent in their transaction (so they arrive on commit)."""
    if any(w.queued for w in writers):
        await conn.execute(Q["notify_queued"])
    finished = [w.finished for w in writers if w.finished is not None]
    if finished:
        await conn.execute(Q["notify_finished"], finished)


async def _run_writer(conn: asyncpg.Connection, writer: _Writer) -> None:
    """One writer alone; LeaseLost (before anything of it is written) when fenced out."""
    if writer.fence is not None and _count(
            await conn.execute(Q["update_execution"], *writer.fence)) == 0:
        raise LeaseLost(f"execution {writer.execution_id}: its lease is held by another "
                        "worker now")
    await _run_statements(conn, writer.statements)
    await _notify(conn, [writer])


async def _run_group(conn: asyncpg.Connection,
                     writers: list[_Writer]) -> list[BaseException | None]:
    """Every writer's statements in the caller's transaction, in as few round trips as it
    takes: one fenced UPDATE for all the saves, one executemany per kind of insert."""
    fenced = [w for w in writers if w.fence is not None]
    ids = [w.execution_id for w in fenced]
    if len(set(ids)) < len(ids):
        # Two saves of one execution in a turn: they must apply in order, one by one.
        outcomes: list[BaseException | None] = []
        for writer in writers:
            try:
                await _run_writer(conn, writer)
                outcomes.append(None)
            except LeaseLost as exc:
                outcomes.append(exc)
        return outcomes
    kept: set[str] = set()
    if fenced:
        columns = list(zip(*(w.fence for w in fenced if w.fence is not None), strict=True))
        kept = {r[0] for r in await conn.fetch(Q["update_executions_fenced"], *columns)}
    lost = {w.execution_id for w in fenced} - kept
    live = [w for w in writers if w.fence is None or w.execution_id not in lost]
    statements = sorted((s for w in live for s in w.statements), key=lambda s: _ORDER[s[0]])
    await _run_statements(conn, statements)
    await _notify(conn, live)
    return [
        LeaseLost(f"execution {w.execution_id}: its lease is held by another worker now")
        if w.fence is not None and w.execution_id in lost else None
        for w in writers
    ]


async def _run_each(conn: asyncpg.Connection,
                    writers: list[_Writer]) -> list[BaseException | None]:
    """The group again, a savepoint per writer: one writer's error is its own."""
    outcomes: list[BaseException | None] = []
    async with conn.transaction():
        for writer in writers:
            try:
                async with conn.transaction():  # a savepoint
                    await _run_writer(conn, writer)
                outcomes.append(None)
            except LeaseLost as exc:
                outcomes.append(exc)
            except asyncpg.PostgresError as exc:
                outcomes.append(_write_error(exc))
    return outcomes


class _PostgresBase:
    """The connection and helpers every resource mixin of PostgresStore uses."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = driver_url(url)
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._pending: list[_Writer] = []
        self._flush_scheduled = False
        self._groups: set[asyncio.Task[None]] = set()
        self._hints: list[tuple[Callable[[str, str], None], frozenset[str]]] = []
        self._channels: set[str] = set()  # the channels the listener listens to
        self._listener: asyncpg.Connection | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False
        # The installation the last claim took from last: the next claim starts after it.
        self._claim_cursor = ""

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await self._create_pool()
        return self._pool

    async def _create_pool(self) -> asyncpg.Pool:
        async def keep_session(_conn: asyncpg.Connection) -> None:
            # The store sets no session state, so the RESET ALL asyncpg sends on every
            # release by default is a round trip for nothing (bench/pg_drivers.py).
            return None

        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size, reset=keep_session)
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            raise connect_error(self.url, exc) from exc
        return pool

    @contextlib.asynccontextmanager
    async def _connection(self, name: str) -> AsyncIterator[asyncpg.Connection]:
        pool = await self._get_pool()
        with _translated(name):
            async with pool.acquire() as conn:
                yield conn

    async def _fetch(self, name: str, *args: Any) -> list[Any]:
        if _has_nul(args):
            return []  # PostgreSQL text cannot hold NUL: no stored value can match
        found: list[Any] = await self._read(name, "fetch", args)
        return found

    async def _fetchrow(self, name: str, *args: Any) -> Any:
        if _has_nul(args):
            return None  # PostgreSQL text cannot hold NUL: no stored value can match
        return await self._read(name, "fetchrow", args)

    async def _read(self, name: str, method: str, args: Sequence[Any]) -> Any:
        """A read on a pooled connection, tried once more on a fresh one when the first
        was dead (a restarted server or a terminated backend leaves every pooled
        connection dead; a read is safe to repeat, a write is not)."""
        pool = await self._get_pool()
        try:
            with _translated(name):
                return await getattr(pool, method)(Q[name], *args)
        except StoreError as exc:
            if not isinstance(exc.__cause__, _LOST_CONNECTION):
                raise
            log.info("query %s: the connection was lost; trying once more", name)
            # What killed one killed the others (a restart): replace them all.
            await pool.expire_connections()
        with _translated(name):
            return await getattr(pool, method)(Q[name], *args)

    async def _execute(self, name: str, *args: Any, conflict: str | None = None) -> int:
        if _has_nul(args):
            raise InvalidRequest("text values may not contain the NUL character (\\u0000)")
        pool = await self._get_pool()
        with _translated(name, conflict):
            return _count(await pool.execute(Q[name], *args))

    async def close(self) -> None:
        """Finish the group commits under way, then close the listener and the pool."""
        self._closed = True
        while self._groups or self._pending:
            if not self._groups:
                self._flush()
            await asyncio.gather(*self._groups, return_exceptions=True)
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
            self._reconnecting = None
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await listener.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _write_grouped(self, writer: _Writer) -> None:
        """Write in the next group commit: execution writes that become ready in the same
        event-loop turn share one transaction on one connection (a commit's round trips and
        WAL flush are paid once per group, not per execution)."""
        self._pending.append(writer)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        await writer.done

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending or len(self._groups) >= _MAX_GROUPS_IN_FLIGHT:
            return  # a group in flight starts this one when it is done
        writers, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._commit(writers))
        self._groups.add(task)
        task.add_done_callback(self._committed)

    def _committed(self, task: asyncio.Task[None]) -> None:
        self._groups.discard(task)
        if self._pending and not self._flush_scheduled:
            self._flush()  # what gathered while this group committed

    async def _commit(self, writers: list[_Writer]) -> None:
        outcomes: list[BaseException | None]
        try:
            pool = await self._get_pool()
            async with pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        outcomes = await _run_group(conn, writers)
                except asyncpg.PostgresError as exc:
                    outcomes = (await _run_each(conn, writers) if len(writers) > 1
                                else [_write_error(exc)])
        except (SettingsError, *_CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            error = exc if isinstance(exc, SettingsError) else StoreError(
                f"database write failed: {exc}")
            outcomes = [error] * len(writers)
        except Exception as exc:  # a bug here must not leave writers waiting for ever
            log.exception("a group commit failed")
            outcomes = [StoreError(f"database write failed: {exc!r}")] * len(writers)
        for writer, outcome in zip(writers, outcomes, strict=True):
            if writer.done.cancelled():
                continue
            if outcome is None:
                writer.done.set_result(None)
            else:
                writer.done.set_exception(outcome)

    def pool_usage(self) -> tuple[int, int, int]:
        """Connections (in use, idle, maximum) of the pool, for /metrics."""
        pool = self._pool
        if pool is None:
            return 0, 0, self.pool_size
        idle = pool.get_idle_size()
        return pool.get_size() - idle, idle, pool.get_max_size()

    async def ping(self) -> None:
        """Raise StoreError unless the database answers at the migrations' head."""
        try:
            row = await self._fetchrow("schema_version")
        except SettingsError as exc:
            raise StoreError(exc.message) from exc
        problem = schema_problem(None if row is None else row["version_num"])
        if problem is not None:
            raise StoreError(problem)

    async def _purge_ids(self, batch: str, *args: Any) -> int:
        """Delete the executions query ``batch`` selects (ids only, locked SKIP LOCKED),
        their steps and keys, in one transaction."""
        if _has_nul(args):
            return 0
        async with self._connection(batch) as conn, conn.transaction():
            ids = [r["id"] for r in await conn.fetch(Q[batch], *args)]
            if ids:
                for name in ("delete_steps_of_many", "delete_idempotency_keys_of_many",
                             "delete_executions_many"):
                    await conn.execute(Q[name], ids)
        return len(ids)
