"""The PostgreSQL store (scale-out mode): an asyncpg pool shared by any number of workers.

Workers are fenced by their leases (``save_execution`` writes only under its owner's
lease) and claim fairly with ``FOR UPDATE SKIP LOCKED``. Execution writes are group
committed as in SqliteStore: those ready in the same event-loop turn share a transaction.
Hints (LISTEN/NOTIFY) are sent in the transactions that make them true; a dedicated
connection hears them for ``listen``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from reflow.domain.apps import AppRecord, CredentialRecord
from reflow.domain.executions import ExecutionRecord, ExecutionStatus, StepRecord
from reflow.domain.records import (
    ApiKey,
    ConfigChange,
    HeadlessInstallation,
    Installation,
    InstallationSettings,
    Integration,
    Team,
    User,
    Workflow,
    WorkflowVersion,
)
from reflow.domain.reruns import (
    ItemResult,
    PendingItem,
    RerunFilter,
    RerunItem,
    RerunJob,
    RerunSource,
)
from reflow.domain.retention import Retention, TeamWindow, WorkflowRetention
from reflow.domain.schedules import (
    Advance,
    DueSchedule,
    Fire,
    InstallationChange,
    ScheduleListing,
    ScheduleState,
)
from reflow.errors import (
    Conflict,
    InvalidRequest,
    LeaseLost,
    NotFound,
    SettingsError,
    StoreError,
)
from reflow.store import rows
from reflow.store.base import (
    HINTS,
    Activity,
    CredentialEvent,
    ErrorNotification,
    ErrorStreamSetting,
    ErrorStreamStats,
    ExecutionQuery,
    WebhookTarget,
    unfinished_conflict,
)
from reflow.store.log_search import (
    LogPage,
    LogSearch,
    LogSearchSql,
    entry_of,
    numbered,
)
from reflow.store.queries import load_queries, statement_runs
from reflow.store.revisions import schema_problem

log = logging.getLogger(__name__)
Q = load_queries(Path(__file__).parent)

# LISTEN channels and the hint names ``listen`` reports them as.
CHANNELS = {"reflow_queued": "queued", "reflow_finished": "finished",
            "reflow_revoked": "revoked"}
# Group commits in flight at once: one commits while the next gathers (and may start).
_MAX_GROUPS_IN_FLIGHT = 2
# The listener's reconnect backoff, doubling from the first to the last (seconds).
_RECONNECT_FIRST = 0.1
_RECONNECT_LAST = 5.0
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


class PostgresStore:
    """The Store protocol on PostgreSQL through an asyncpg pool (opened on first use)."""

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

    # -- connections -----------------------------------------------------------------------

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

    # -- group commit ----------------------------------------------------------------------

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

    # -- teams and keys --------------------------------------------------------------------

    async def count_teams(self) -> int:
        """How many teams exist."""
        row = await self._fetchrow("count_teams")
        return int(row[0])

    async def create_team(self, team: Team) -> None:
        """Insert a team."""
        retention = None if team.log_retention is None else int(team.log_retention)
        await self._execute("insert_team", team.id, team.name, team.created_at, retention)

    async def create_first_team(self, team: Team) -> bool:
        """Insert the team if there is none, under an advisory lock (concurrent bootstraps)."""
        retention = None if team.log_retention is None else int(team.log_retention)
        async with self._connection("insert_first_team") as conn, conn.transaction():
            await conn.execute(Q["lock_bootstrap"])
            status = await conn.execute(Q["insert_first_team"], team.id, team.name,
                                        team.created_at, retention)
        return _count(status) > 0

    async def get_team(self, team_id: str) -> Team | None:
        """A team by id."""
        row = await self._fetchrow("get_team", team_id)
        return rows.team_of(row) if row else None

    async def list_teams(self) -> list[Team]:
        """Every team."""
        return [rows.team_of(r) for r in await self._fetch("list_teams")]

    async def get_team_env(self, team_id: str) -> bytes | None:
        """The team's stored env."""
        row = await self._fetchrow("get_team_env", team_id)
        return None if row is None else row["env"]

    async def set_team_env(self, team_id: str, env: bytes | None) -> bool:
        """Replace the team's env."""
        return await self._execute("set_team_env", env, team_id) > 0

    async def create_api_key(self, key: ApiKey, key_hash: str) -> None:
        """Insert a key."""
        await self._execute("insert_api_key", key.id, key.team_id, key.name, key.prefix,
                            key_hash, key.created_at)

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        """The live key with this hash."""
        row = await self._fetchrow("find_api_key", key_hash)
        return rows.key_of(row) if row else None

    async def list_api_keys(self, team_id: str) -> list[ApiKey]:
        """A team's keys."""
        return [rows.key_of(r) for r in await self._fetch("list_api_keys", team_id)]

    async def revoke_api_key(self, team_id: str, id_or_prefix: str, now: int) -> bool:
        """Revoke a live key (and hint ``revoked`` with its hash to every node)."""
        return bool(await self._fetch("revoke_api_key", now, team_id, id_or_prefix))

    # -- users -----------------------------------------------------------------------------

    async def create_user(self, user: User) -> None:
        """Insert a user; a taken username is a Conflict."""
        await self._execute("insert_user", user.id, user.team_id, user.username,
                            user.full_name, user.created_at,
                            conflict=f"username {user.username!r} is already taken")

    async def get_user(self, team_id: str, id_or_username: str) -> User | None:
        """A user by id or username (the id wins)."""
        row = await self._fetchrow("get_user", team_id, id_or_username)
        return rows.user_of(row) if row else None

    async def get_user_any(self, team_id: str, user_id: str) -> User | None:
        """A user by id, live or deleted."""
        row = await self._fetchrow("get_user_any", team_id, user_id)
        return rows.user_of(row) if row else None

    async def list_users(self, team_id: str, workflow_id: str | None = None) -> list[User]:
        """A team's live users, oldest first (only a workflow's, given one)."""
        if workflow_id is None:
            found = await self._fetch("list_users", team_id)
        else:
            found = await self._fetch("list_users_of_workflow", team_id, workflow_id)
        return [rows.user_of(r) for r in found]

    async def taken_usernames(self, team_id: str, usernames: Sequence[str]) -> set[str]:
        """Which of these usernames live users hold."""
        # PostgreSQL text cannot hold NUL, so no stored username has one.
        clean = [u for u in usernames if "\x00" not in u]
        return {r["username"] for r in await self._fetch("taken_usernames", team_id, clean)}

    async def create_users(self, users: Sequence[User]) -> None:
        """Insert all the users in one transaction; a taken username is a Conflict."""
        params = [(u.id, u.team_id, u.username, u.full_name, u.created_at) for u in users]
        if any(_has_nul(p) for p in params):
            raise InvalidRequest("text values may not contain the NUL character (\\u0000)")
        async with self._connection("insert_user") as conn, conn.transaction():
            with _translated("insert_user", "a username of the batch is already taken"):
                await conn.executemany(Q["insert_user"], params)

    async def update_user(self, user: User) -> bool:
        """Store a live user's username and full name."""
        changed = await self._execute("update_user", user.username, user.full_name,
                                      user.team_id, user.id,
                                      conflict=f"username {user.username!r} is already taken")
        return changed > 0

    async def delete_user(self, team_id: str, user_id: str, now: int) -> bool:
        """Mark a live user deleted and deactivate its installations."""
        async with self._connection("delete_user") as conn, conn.transaction():
            if _count(await conn.execute(Q["delete_user"], now, team_id, user_id)) == 0:
                return False
            await conn.execute(Q["deactivate_user_installations"], now, team_id, user_id)
            await conn.execute(Q["credentials_delete_of_user"], team_id, user_id)
            await conn.execute(Q["oauth_states_delete_of_user"], team_id, user_id)
        return True

    async def deactivate_user_installations(self, team_id: str, user_id: str, now: int) -> int:
        """Deactivate a user's active installations."""
        return await self._execute("deactivate_user_installations", now, team_id, user_id)

    async def delete_user_executions(self, team_id: str, user_id: str) -> int:
        """Delete a user's finished executions, steps and keys; Conflict while any runs."""
        if _has_nul((team_id, user_id)):
            return 0
        async with self._connection("delete_user_executions") as conn, conn.transaction():
            unfinished = await conn.fetchval(Q["unfinished_of_user"], team_id, user_id)
            if unfinished:
                raise unfinished_conflict(unfinished)
            found = await conn.fetch(Q["finished_of_user"], team_id, user_id)
            ids = [r["id"] for r in found]
            if ids:
                for name in ("delete_steps_of_many", "delete_idempotency_keys_of_many",
                             "delete_executions_many"):
                    await conn.execute(Q[name], ids)
        return len(ids)

    # -- workflows -------------------------------------------------------------------------

    async def create_workflow(self, workflow: Workflow, version: WorkflowVersion) -> None:
        """Insert a workflow and its first version."""
        w, v = workflow, version
        async with self._connection("insert_workflow") as conn, conn.transaction():
            with _translated("insert_workflow", f"a workflow named {w.name!r} already exists"):
                await conn.execute(Q["insert_workflow"], w.id, w.team_id, w.name, w.integration,
                                   w.latest_version, w.created_at, w.updated_at)
                await conn.execute(Q["insert_version"], v.workflow_id, v.version, v.definition,
                                   v.digest, v.created_at)

    async def add_version(
        self, workflow: Workflow, definition: bytes, digest: str, now: int
    ) -> WorkflowVersion:
        """Append the next version."""
        w = workflow
        async with self._connection("add_version") as conn, conn.transaction():
            with _translated("add_version", f"a workflow named {w.name!r} already exists"):
                number = await conn.fetchval(Q["bump_workflow_version"], now, w.name,
                                             w.integration, w.team_id, w.id)
                version = WorkflowVersion(w.id, int(number), definition, digest, now)
                await conn.execute(Q["insert_version"], w.id, version.version, definition,
                                   digest, now)
        return version

    async def get_workflow(self, team_id: str, id_or_name: str) -> Workflow | None:
        """A workflow by id or name (the id wins)."""
        row = await self._fetchrow("get_workflow", team_id, id_or_name)
        return rows.workflow_of(row) if row else None

    async def list_workflows(self, team_id: str) -> list[Workflow]:
        """A team's workflows."""
        return [rows.workflow_of(r) for r in await self._fetch("list_workflows", team_id)]

    async def get_version(
        self, team_id: str, workflow_id: str, version: int
    ) -> WorkflowVersion | None:
        """One version."""
        row = await self._fetchrow("get_version", team_id, workflow_id, version)
        return rows.version_of(row) if row else None

    async def list_versions(self, team_id: str, workflow_id: str) -> list[WorkflowVersion]:
        """Every version."""
        found = await self._fetch("list_versions", team_id, workflow_id)
        return [rows.version_of(r) for r in found]

    # -- installations ---------------------------------------------------------------------

    async def get_installation(
        self, team_id: str, workflow_id: str, user_id: str
    ) -> Installation | None:
        """A user's installation of a workflow."""
        row = await self._fetchrow("get_installation", team_id, workflow_id, user_id)
        return rows.installation_of(row) if row else None

    async def get_installation_by_id(
        self, team_id: str, installation_id: str
    ) -> Installation | None:
        """An installation by id."""
        row = await self._fetchrow("get_installation_by_id", team_id, installation_id)
        return rows.installation_of(row) if row else None

    async def get_installations(
        self, team_id: str, installation_ids: Sequence[str]
    ) -> list[Installation]:
        """Live installations by id."""
        found = await self._fetch("get_installations", team_id, list(installation_ids))
        return [rows.installation_of(r) for r in found]

    async def list_installations(
        self, team_id: str, *, user_id: str | None = None, workflow_id: str | None = None
    ) -> list[Installation]:
        """A team's installations (a user's, a workflow's)."""
        found = await self._fetch("list_installations", team_id, user_id, workflow_id)
        return [rows.installation_of(r) for r in found]

    async def save_installation(self, installation: Installation) -> None:
        """Insert or update an installation."""
        i = installation
        await self._execute("upsert_installation", i.id, i.team_id, i.workflow_id, i.user_id,
                            i.installed_version, i.active, i.installed_at, i.updated_at)

    # -- executions ------------------------------------------------------------------------

    async def insert_execution(
        self, execution: ExecutionRecord, idempotency_key: str | None = None
    ) -> None:
        """Insert an execution and its steps (and the key that must find it again)."""
        statements: list[Statement] = [("insert_execution", rows.execution_params(execution))]
        statements.extend(("insert_step", rows.step_params(execution.id, s))
                          for s in execution.steps)
        if idempotency_key is not None:
            statements.append(("insert_idempotency_key", (
                execution.team_id, idempotency_key, execution.id, execution.created_at)))
        if execution.status is ExecutionStatus.FAILED:  # failed before its first commit
            statements.append(("error_outbox_insert", rows.error_outbox_params(execution)))
        await self._write_grouped(_Writer(
            None, statements, queued=execution.status is ExecutionStatus.QUEUED))

    async def find_idempotency_key(self, team_id: str, key: str) -> str | None:
        """The execution an idempotency key was first used for."""
        row = await self._fetchrow("find_idempotency_key", team_id, key)
        return None if row is None else str(row[0])

    async def save_execution(
        self, execution: ExecutionRecord, new_steps: Sequence[StepRecord], *, owner: str
    ) -> None:
        """Update an execution and append steps, if ``owner`` holds its lease."""
        e = execution
        fence = (e.status.value, e.started_at, e.stopped_at, e.output, e.response_status,
                 e.error, e.lease_owner, e.lease_expires, e.resumes, e.id, owner)
        statements: list[Statement] = [("insert_step", rows.step_params(e.id, s))
                                       for s in new_steps]
        if e.status is ExecutionStatus.FAILED:
            statements.append(("error_outbox_insert", rows.error_outbox_params(e)))
        await self._write_grouped(_Writer(fence, statements,
                                          finished=e.id if e.finished else None))

    async def request_cancel(
        self, team_id: str, execution_id: str, now: int, error: bytes,
        waiting_error: bytes | None = None,
    ) -> ExecutionRecord | None:
        """Cancel a queued or waiting execution, or flag a running one; the execution as it
        is now."""
        if _has_nul((team_id, execution_id)):
            return None  # no id holds NUL (PostgreSQL text cannot)
        async with self._connection("request_cancel") as conn, conn.transaction():
            await conn.execute(Q["cancel_queued"], now, error, team_id, execution_id)
            await conn.execute(Q["cancel_waiting"], now, waiting_error or error, team_id,
                               execution_id)
            await conn.execute(Q["request_cancel"], team_id, execution_id)
        return await self.get_execution(team_id, execution_id)

    async def cancel_requests(self, ids: Sequence[str]) -> list[str]:
        """Which of these executions a cancel was requested for."""
        return [r["id"] for r in await self._fetch("cancel_requests", list(ids))]

    async def claim_executions(
        self, owner: str, now: int, lease_until: int, limit: int
    ) -> list[ExecutionRecord]:
        """Lease queued or abandoned executions, installation by installation from the
        one after the last claim's last (round robin)."""
        async with self._connection("claim_executions") as conn, conn.transaction():
            await conn.execute(Q["claim_generic_plan"])
            found = await conn.fetch(Q["claim_executions"], owner, lease_until, now, limit,
                                     self._claim_cursor)
            if found:
                self._claim_cursor = found[-1]["installation_id"]
            return await self._with_steps(conn, [rows.execution_of(r) for r in found])

    async def release_leases(self, owner: str, ids: Sequence[str]) -> int:
        """Give back this owner's leases (a graceful stop): claimable, no resume counted."""
        return await self._execute("release_leases", list(ids), owner)

    def pool_usage(self) -> tuple[int, int, int]:
        """Connections (in use, idle, maximum) of the pool, for /metrics."""
        pool = self._pool
        if pool is None:
            return 0, 0, self.pool_size
        idle = pool.get_idle_size()
        return pool.get_size() - idle, idle, pool.get_max_size()

    async def renew_leases(self, owner: str, ids: Sequence[str], lease_until: int) -> list[str]:
        """Extend leases; the ids whose lease is no longer this owner's."""
        kept = {r["id"] for r in await self._fetch("renew_leases", lease_until, list(ids),
                                                    owner)}
        return [i for i in ids if i not in kept]

    async def listen(
        self, on_hint: Callable[[str, str], None], hints: Collection[str] = HINTS
    ) -> None:
        """Call ``on_hint`` for these hints; one dedicated connection (not the pool's)
        listens, only to their channels, and is reconnected in the background when it
        drops."""
        self._hints.append((on_hint, frozenset(hints)))
        new = [c for c, hint in CHANNELS.items() if hint in hints and c not in self._channels]
        self._channels.update(new)
        try:
            if self._listener is None and self._reconnecting is None:
                self._listener = await self._open_listener()
            elif self._listener is not None:
                for channel in new:
                    await self._listener.add_listener(channel, self._on_notification)
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            raise connect_error(self.url, exc) from exc

    async def _open_listener(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(self.url)
        try:
            for channel in self._channels:
                await conn.add_listener(channel, self._on_notification)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._on_listener_lost)
        return conn

    def _on_notification(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        hint = CHANNELS[channel]
        for on_hint, wanted in self._hints:
            if hint not in wanted:
                continue
            try:
                on_hint(hint, payload)
            except Exception:
                log.exception("a %s hint handler failed", hint)

    def _on_listener_lost(self, _conn: Any) -> None:
        self._listener = None
        if not self._closed and self._reconnecting is None:
            log.warning("the PostgreSQL hint listener lost its connection; reconnecting")
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Reopen the listener, waiting longer after each failure (hints meanwhile are
        lost, which is fine: whoever acts on them also polls)."""
        delay = _RECONNECT_FIRST
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                self._listener = await self._open_listener()
            except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("the hint listener cannot reconnect (%s); next try in %.1fs",
                            exc, delay)
                delay = min(2 * delay, _RECONNECT_LAST)
                continue
            log.info("the PostgreSQL hint listener reconnected")
            break
        self._reconnecting = None

    async def ping(self) -> None:
        """Raise StoreError unless the database answers at the migrations' head."""
        try:
            row = await self._fetchrow("schema_version")
        except SettingsError as exc:
            raise StoreError(exc.message) from exc
        problem = schema_problem(None if row is None else row["version_num"])
        if problem is not None:
            raise StoreError(problem)

    async def queue_depth(self) -> int:
        """Queued executions (on the unfinished-executions partial index)."""
        row = await self._fetchrow("queue_depth")
        return int(row[0])

    async def wake_waiting(self, now: int, limit: int) -> int:
        """Queue again up to ``limit`` waiting executions whose wake time has come."""
        async with self._connection("wake_waiting") as conn:
            row = await conn.fetchrow(Q["wake_waiting"], now, limit)
        return int(row["woken"])

    async def waiting(self) -> tuple[int, int | None]:
        """How many executions wait, and the soonest wake time (ms) among them."""
        count, soonest = await self._fetchrow("waiting_count"), await self._fetchrow("next_wake")
        return int(count[0]), soonest[0]

    async def get_execution(self, team_id: str, execution_id: str) -> ExecutionRecord | None:
        """One execution with steps and reruns."""
        if _has_nul((team_id, execution_id)):
            return None  # no id holds NUL (PostgreSQL text cannot)
        async with self._connection("get_execution") as conn:
            row = await conn.fetchrow(Q["get_execution"], team_id, execution_id)
            if row is None:
                return None
            return (await self._with_steps(conn, [rows.execution_of(row)]))[0]

    async def get_executions(
        self, team_id: str, execution_ids: Sequence[str], *, steps: bool
    ) -> list[ExecutionRecord]:
        """Executions by id (with steps and reruns when ``steps``)."""
        async with self._connection("get_executions") as conn:
            found = [rows.execution_of(r) for r in await conn.fetch(
                Q["get_executions"], team_id, list(execution_ids))]
            return await self._with_steps(conn, found) if steps else found

    async def execution_status(self, team_id: str, execution_id: str) -> str | None:
        """Just the status."""
        row = await self._fetchrow("execution_status", team_id, execution_id)
        return None if row is None else str(row["status"])

    async def list_executions(self, query: ExecutionQuery) -> list[ExecutionRecord]:
        """A page of executions."""
        order = "desc" if query.descending else "asc"
        if query.installation_id is not None:
            name, key = f"list_by_installation_{order}", query.installation_id
        else:
            name, key = f"list_by_workflow_{order}", query.workflow_id
        async with self._connection(name) as conn:
            found = await conn.fetch(Q[name], key, query.team_id, query.failed_only,
                                     query.limit, query.offset)
            return await self._with_steps(conn, [rows.execution_of(r) for r in found])

    @staticmethod
    async def _with_steps(
        conn: asyncpg.Connection, executions: list[ExecutionRecord]
    ) -> list[ExecutionRecord]:
        if not executions:
            return executions
        by_id = {e.id: e for e in executions}
        ids = list(by_id)
        for row in await conn.fetch(Q["steps_of_many"], ids):
            by_id[row["execution_id"]].steps.append(rows.step_of(row))
        for row in await conn.fetch(Q["reruns_of_many"], ids):
            by_id[row["rerun_of"]].reruns.append(row["id"])
        return executions

    async def workflow_activity(
        self, team_id: str, workflow_id: str, installation_id: str | None,
        action_blocks: Sequence[str],
    ) -> Activity:
        """Runs, failed runs and action steps, in one query."""
        row = await self._fetchrow("workflow_activity", list(action_blocks), team_id,
                                   workflow_id, installation_id)
        assert row is not None  # an aggregate always answers one row
        return Activity(int(row["runs"]), int(row["errors"]), int(row["actions"]))

    async def purge_executions(self, stopped_before: int, limit: int) -> int:
        """Delete a batch of old finished executions with their steps and keys.

        The batch is locked with SKIP LOCKED, so nodes purging at once take different ones.
        """
        return await self._purge_ids("purge_batch", stopped_before, limit)

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

    # -- retention (services/retention.py, retention.sql) ----------------------------------

    async def set_team_retention(self, team_id: str, window_s: int | None) -> bool:
        """Set the team's window."""
        return await self._execute("retention_set_team", window_s, team_id) > 0

    async def set_workflow_retention(
        self, team_id: str, workflow_id: str, retention: Retention
    ) -> None:
        """Store the workflow's retention."""
        await self._execute("retention_set_workflow", *rows.retention_params(retention),
                            team_id, workflow_id)

    async def retention_policies(self) -> tuple[list[TeamWindow], list[WorkflowRetention]]:
        """Teams' windows and workflows' own retentions."""
        teams = [TeamWindow(r[0], r[1]) for r in await self._fetch("retention_teams")]
        return teams, [rows.workflow_retention_of(r) for r in
                       await self._fetch("retention_workflows")]

    async def purge_team_executions(
        self, team_id: str, stopped_before: int, skip_workflows: Sequence[str], limit: int
    ) -> int:
        """A batch of the team's old finished executions."""
        return await self._purge_ids("retention_team_batch", team_id, stopped_before,
                                     list(skip_workflows), limit)

    async def count_team_executions(
        self, team_id: str, stopped_before: int, skip_workflows: Sequence[str]
    ) -> int:
        """How many the team's purge would delete."""
        row = await self._fetchrow("retention_team_count", team_id, stopped_before,
                                   list(skip_workflows))
        return int(row[0]) if row else 0

    async def purge_workflow_executions(
        self, team_id: str, workflow_id: str, stopped_before: int, limit: int
    ) -> int:
        """A batch of the workflow's old finished executions."""
        return await self._purge_ids("retention_workflow_batch", team_id, workflow_id,
                                     stopped_before, stopped_before, limit)

    async def count_workflow_executions(
        self, team_id: str, workflow_id: str, stopped_before: int
    ) -> int:
        """How many the workflow's purge would delete."""
        row = await self._fetchrow("retention_workflow_count", team_id, workflow_id,
                                   stopped_before, stopped_before)
        return int(row[0]) if row else 0

    async def purge_workflow_excess(
        self, team_id: str, workflow_id: str, keep: int, limit: int
    ) -> int:
        """A batch of the workflow's finished executions beyond its newest ``keep``."""
        boundary = await self._fetchrow("retention_keep_boundary", team_id, workflow_id,
                                        keep - 1)
        if boundary is None:
            return 0
        return await self._purge_ids("retention_excess_batch", team_id, workflow_id,
                                     boundary[0], boundary[1], limit)

    async def count_workflow_excess(self, team_id: str, workflow_id: str, keep: int) -> int:
        """How many the workflow's count would delete."""
        boundary = await self._fetchrow("retention_keep_boundary", team_id, workflow_id,
                                        keep - 1)
        if boundary is None:
            return 0
        row = await self._fetchrow("retention_excess_count", team_id, workflow_id,
                                   boundary[0], boundary[1])
        return int(row[0]) if row else 0

    async def drop_succeeded_steps(
        self, team_id: str, workflow_id: str, since: int, until: int, limit: int
    ) -> tuple[int, int | None]:
        """Delete a batch of succeeded executions' steps."""
        if _has_nul((team_id, workflow_id)):
            return 0, None
        async with self._connection("retention_steps_batch") as conn, conn.transaction():
            found = await conn.fetch(Q["retention_steps_batch"], team_id, since, until,
                                     workflow_id, limit)
            if found:
                await conn.execute(Q["delete_steps_of_many"], [r[0] for r in found])
        return len(found), (found[-1][1] if found else None)

    async def count_succeeded_steps(
        self, team_id: str, workflow_id: str, since: int, until: int
    ) -> int:
        """How many the step pass would strip."""
        row = await self._fetchrow("retention_steps_count", team_id, since, until, workflow_id)
        return int(row[0]) if row else 0

    async def set_steps_cursor(self, team_id: str, workflow_id: str, until: int) -> None:
        """Record how far the step pass went."""
        await self._execute("retention_steps_cursor", until, team_id, workflow_id)

    async def give_back_space(self, pages: int) -> int:
        """Nothing: (auto)vacuum makes deleted rows' space reusable in place."""
        return 0

    # -- error stream (services/error_stream.py) -------------------------------------------

    async def get_error_stream(self, team_id: str) -> ErrorStreamSetting | None:
        """The team's error stream."""
        row = await self._fetchrow("error_stream_get", team_id)
        return None if row is None else ErrorStreamSetting(row[0], row[1])

    async def set_error_stream(self, team_id: str, url: str, sealed_secret: str) -> bool:
        """Set the team's error stream."""
        return await self._execute("error_stream_set", url, sealed_secret, team_id) > 0

    async def clear_error_stream(self, team_id: str) -> bool:
        """Stop the team's error stream and delete its notifications."""
        if _has_nul((team_id,)):
            return False
        async with self._connection("error_stream_clear") as conn, conn.transaction():
            if _count(await conn.execute(Q["error_stream_clear"], team_id)) == 0:
                return False
            await conn.execute(Q["error_outbox_delete_team"], team_id)
        return True

    async def claim_error_notifications(
        self, now: int, claimed_until: int, limit: int, per_team: int
    ) -> list[ErrorNotification]:
        """Claim due notifications; rows another process holds are skipped."""
        async with self._connection("error_outbox_claim") as conn:
            found = await conn.fetch(Q["error_outbox_claim"], now, claimed_until, limit,
                                     per_team)
        return [rows.error_notification_of(r) for r in found]

    async def error_notification_delivered(self, execution_id: str, now: int) -> None:
        """Mark a notification delivered."""
        await self._execute("error_outbox_delivered", now, execution_id)

    async def error_notification_retry(
        self, execution_id: str, next_attempt_at: int, error: str
    ) -> None:
        """Record a failed attempt."""
        await self._execute("error_outbox_retry", next_attempt_at, _clean(error), execution_id)

    async def error_notification_dead(self, execution_id: str, now: int, error: str) -> None:
        """Give a notification up."""
        await self._execute("error_outbox_dead", now, _clean(error), execution_id)

    async def pause_error_stream(self, team_id: str, until: int) -> None:
        """Claim none of the team's notifications before ``until``."""
        await self._execute("error_stream_pause", until, team_id)

    async def drop_error_notification(self, execution_id: str) -> None:
        """Delete a notification."""
        await self._execute("error_outbox_drop", execution_id)

    async def purge_error_notifications(self, finished_before: int, limit: int) -> int:
        """Delete a batch of old delivered or dead notifications (SKIP LOCKED across nodes)."""
        return await self._execute("error_outbox_purge", finished_before, limit)

    async def error_stream_stats(self, team_id: str) -> ErrorStreamStats:
        """Counts of the team's notifications by state, and its latest failure."""
        row = await self._fetchrow("error_outbox_stats", team_id)
        failure = await self._fetchrow("error_outbox_last_failure", team_id)
        return ErrorStreamStats(
            int(row["pending"]), int(row["delivered"]), int(row["dead"]),
            row["last_delivered_at"],
            None if failure is None else (failure[0], failure[1], failure[2]))


    # -- webhooks (webhooks.sql) -------------------------------------------------------------

    async def ensure_webhook_token(
        self, team_id: str, installation_id: str, token: str, now: int
    ) -> str:
        """The installation's token, ``token`` stored now when it had none."""
        async with self._connection("webhook_token_insert") as conn, conn.transaction():
            await conn.execute(Q["webhook_token_insert"], token, now, team_id, installation_id)
            stored = await conn.fetchval(Q["webhook_token_of"], team_id, installation_id)
        if stored is None:
            raise NotFound(f"installation {installation_id!r} not found")
        return str(stored)

    async def rotate_webhook_token(
        self, team_id: str, installation_id: str, token: str, now: int
    ) -> None:
        """Replace the installation's token."""
        changed = await self._execute(
            "webhook_token_rotate", token, now, team_id, installation_id,
            conflict="a new webhook token collided with another; try again")
        if changed == 0:
            raise NotFound(f"installation {installation_id!r} not found")

    async def find_webhook(self, token: str) -> WebhookTarget | None:
        """The installation a token names."""
        row = await self._fetchrow("webhook_find", token)
        return None if row is None else rows.webhook_target_of(row)


    # -- integrations, and installations deleted and revived (services/integrations.py) ---

    async def save_integration(self, integration: Integration) -> Integration:
        """Insert or update (by name) an integration; as stored."""
        i = integration
        async with self._connection("integrations_upsert") as conn, conn.transaction():
            row = await conn.fetchrow(Q["integrations_upsert"], i.id, i.team_id, i.name, i.app,
                                      i.description, i.icon, i.created_at, i.updated_at)
        return rows.integration_of(row)

    async def ensure_integration(self, integration: Integration) -> None:
        """Insert an integration unless its name is taken."""
        i = integration
        await self._execute("integrations_insert_default", i.id, i.team_id, i.name, i.app,
                            i.description, i.icon, i.created_at, i.updated_at)

    async def get_integration(self, team_id: str, id_or_name: str) -> Integration | None:
        """An integration by id or name (the id wins)."""
        row = await self._fetchrow("integrations_get", team_id, id_or_name)
        return rows.integration_of(row) if row else None

    async def list_integrations(self, team_id: str) -> list[Integration]:
        """A team's integrations."""
        return [rows.integration_of(r) for r in await self._fetch("integrations_list", team_id)]

    async def install(self, installation: Installation) -> Installation:
        """Insert or revive an installation; the live one when there is one already."""
        i = installation
        async with self._connection("integrations_install") as conn, conn.transaction():
            row = await conn.fetchrow(Q["integrations_install"], i.id, i.team_id, i.workflow_id,
                                      i.user_id, i.installed_version, i.active, i.installed_at,
                                      i.updated_at)
        if row is not None:
            return rows.installation_of(row)
        live = await self.get_installation(i.team_id, i.workflow_id, i.user_id)
        assert live is not None  # the conflict was with a live row, never deleted here
        return live

    async def delete_installation(self, team_id: str, installation_id: str, now: int) -> bool:
        """Mark a live installation deleted; Conflict while any of its runs is unfinished."""
        if _has_nul((team_id, installation_id)):
            return False
        async with self._connection("delete_installation") as conn, conn.transaction():
            unfinished = await conn.fetchval(Q["integrations_unfinished_of_installation"],
                                             team_id, installation_id)
            if unfinished:
                raise unfinished_conflict(unfinished, "this installation")
            status = await conn.execute(Q["integrations_delete_installation"], now, team_id,
                                        installation_id)
        return _count(status) > 0

    async def get_deleted_installation(
        self, team_id: str, *, installation_id: str | None = None,
        workflow_id: str | None = None, user_id: str | None = None,
    ) -> Installation | None:
        """A deleted installation by id, or by workflow and user."""
        row = await self._fetchrow("integrations_get_deleted_installation", team_id,
                                   installation_id, workflow_id, user_id)
        return rows.installation_of(row) if row else None

    # -- schedules (schedules.sql) -----------------------------------------------------------

    async def installations_updated_max(self) -> int | None:
        """The latest installation update."""
        row = await self._fetchrow("schedule_installations_updated_max")
        return None if row is None or row[0] is None else int(row[0])

    async def changed_installations(self, since: int, limit: int) -> list[InstallationChange]:
        """Installations changed since ``since`` whose state is missing or stale."""
        found = await self._fetch("schedule_changed_installations", since, limit)
        return [rows.installation_change_of(r) for r in found]

    async def save_schedule_states(self, states: Sequence[ScheduleState]) -> None:
        """Insert or replace states (one from the same installation update is kept)."""
        if not states:
            return
        async with self._connection("schedule_state_save") as conn, conn.transaction():
            await conn.executemany(Q["schedule_state_save"],
                                   [rows.schedule_state_params(s) for s in states])

    async def due_schedules(self, now: int, limit: int) -> list[DueSchedule]:
        """States due by ``now``, earliest first."""
        return [rows.due_schedule_of(r) for r in await self._fetch("schedule_due", now, limit)]

    async def advance_schedule(
        self, seen: ScheduleState, next_due_at: int | None, fire: Fire | None = None
    ) -> Advance:
        """Move a state, and claim and insert a fire with it, in one transaction (the
        ``queued`` hint is sent in it, so workers hear of the execution on commit)."""
        name = "schedule_move" if fire is None else "schedule_move_active"
        async with self._connection(name) as conn, conn.transaction():
            moved = await conn.execute(Q[name], next_due_at, seen.installation_id,
                                       seen.next_due_at, seen.installation_updated_at)
            if _count(moved) == 0:
                return Advance.LOST
            if fire is None:
                return Advance.MOVED
            execution = fire.execution
            claimed = await conn.execute(Q["schedule_claim"], seen.installation_id,
                                         fire.due_at, execution.id, execution.created_at)
            if _count(claimed) == 0:
                return Advance.MOVED
            await conn.execute(Q["insert_execution"], *rows.execution_params(execution))
            await conn.execute(Q["notify_queued"])
        return Advance.FIRED

    async def list_schedules(self, team_id: str) -> list[ScheduleListing]:
        """A team's active schedules."""
        found = await self._fetch("schedule_list", team_id)
        return [rows.schedule_listing_of(r) for r in found]

    async def prune_schedule_claims(self, before: int, limit: int) -> int:
        """Delete a batch of old claims."""
        return await self._execute("schedule_claims_prune", before, limit)


    # -- log search (GET /logs; store/log_search.py composes the SQL) ----------------------

    _log_search = LogSearchSql(Q, list)

    async def search_logs(self, search: LogSearch) -> LogPage:
        """A page of matching executions and their count (up to the cap), read on one
        connection."""
        page, count = self._log_search.page(search), self._log_search.count(search)
        async with self._connection("log search") as conn:
            found = await conn.fetch(numbered(page.sql), *page.params)
            total = await conn.fetchval(numbered(count.sql), *count.params)
        return LogPage([entry_of(r) for r in found], int(total))

    async def match_user_ids(self, team_id: str, text: str, limit: int) -> list[str]:
        """Users whose id, username or full name contains the text."""
        found = await self._fetch("log_search_match_users", team_id, text, limit)
        return [r["id"] for r in found]

    async def explain_log_search(self, search: LogSearch) -> list[str]:
        """EXPLAIN of the page and the count."""
        plans = []
        async with self._connection("explain log search") as conn:
            for statement in self._log_search.plan(search):
                found = await conn.fetch(f"EXPLAIN {numbered(statement.sql)}",
                                         *statement.params)
                plans.append("\n".join(r[0] for r in found))
        return plans

    # -- apps and credentials (apps.sql, credentials.sql; services/credentials.py) --------

    async def save_app(self, app: AppRecord) -> AppRecord:
        """Insert or update (by name) an app; as stored."""
        async with self._connection("apps_upsert") as conn, conn.transaction():
            row = await conn.fetchrow(Q["apps_upsert"], *rows.app_params(app))
        return rows.app_of(row)

    async def get_app(self, team_id: str, name: str) -> AppRecord | None:
        """The team's app of this name."""
        row = await self._fetchrow("apps_get", team_id, name)
        return rows.app_of(row) if row else None

    async def list_apps(self, team_id: str) -> list[AppRecord]:
        """The team's apps, by name."""
        return [rows.app_of(r) for r in await self._fetch("apps_list", team_id)]

    async def create_credential(self, credential: CredentialRecord) -> None:
        """Insert a credential."""
        await self._execute("credentials_insert", *rows.credential_params(credential))

    async def list_credentials(self, team_id: str, user_id: str) -> list[CredentialRecord]:
        """The user's credentials, oldest first."""
        return [rows.credential_of(r)
                for r in await self._fetch("credentials_list", team_id, user_id)]

    async def credential_apps(self, team_id: str, ids: Sequence[str]
                              ) -> dict[str, tuple[str, str]]:
        """Of these credential ids, the team's: id -> (user id, app)."""
        return {r["id"]: (r["user_id"], r["app"])
                for r in await self._fetch("credential_apps", team_id, list(ids))}

    async def delete_credential(self, team_id: str, user_id: str, credential_id: str) -> bool:
        """Delete one of the user's credentials."""
        if _has_nul((team_id, user_id, credential_id)):
            return False
        return await self._execute("credentials_delete", team_id, user_id, credential_id) > 0

    async def run_credentials(
        self, team_id: str, user_id: str, installation_id: str
    ) -> tuple[list[str], list[CredentialRecord]]:
        """The installation's pinned ids and the user's credentials, newest first."""
        pinned = await self._fetchrow("credentials_pinned", team_id, installation_id)
        found = await self._fetch("credentials_of_user_newest_first", team_id, user_id)
        ids = orjson.loads(pinned[0]) if pinned is not None and pinned[0] else []
        return ids, [rows.credential_of(r) for r in found]

    async def pin_credentials(
        self, team_id: str, installation_id: str, credential_ids: Sequence[str]
    ) -> bool:
        """Pin the installation to these credentials."""
        value = orjson.dumps(list(credential_ids)).decode() if credential_ids else None
        return await self._execute("credentials_pin", value, team_id, installation_id) > 0

    async def sealed_batch(self, kind: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        """A batch of sealed values of ``kind``, by key."""
        found = await self._fetch(f"rotate_{_sealed_kind(kind)}_batch", after, limit)
        return [(r[0], r[1].encode() if isinstance(r[1], str) else bytes(r[1])) for r in found]

    async def reseal(self, kind: str, key: str, old: bytes, new: bytes) -> bool:
        """Replace a sealed value if it is still ``old``."""
        text = _sealed_kind(kind) != "triggers"
        return await self._execute(f"rotate_{kind}_set", new.decode() if text else new, key,
                                   old.decode() if text else old) > 0

    # -- OAuth connections (oauth.sql; services/oauth.py) ----------------------------------

    async def insert_oauth_state(self, team_id: str, state_hash: str, user_id: str, app: str,
                                 created_at: int, expires_at: int) -> None:
        """Remember a connect flow's state."""
        await self._execute("oauth_state_insert", state_hash, team_id, user_id, app,
                            created_at, expires_at)

    async def take_oauth_state(self, state_hash: str) -> tuple[str, str, str, int] | None:
        """Delete the state; what it was for."""
        if _has_nul((state_hash,)):
            return None
        async with self._connection("oauth_state_take") as conn:
            row = await conn.fetchrow(Q["oauth_state_take"], state_hash)
        return None if row is None else (row[0], row[1], row[2], row[3])

    async def purge_oauth_states(self, before: int, limit: int) -> int:
        """Delete expired states."""
        return await self._execute("oauth_state_purge", before, limit)

    async def get_oauth_redirect(self, team_id: str) -> str | None:
        """The team's OAuth redirect URL."""
        row = await self._fetchrow("oauth_redirect_get", team_id)
        return None if row is None else row[0]

    async def set_oauth_redirect(self, team_id: str, url: str | None) -> bool:
        """Set the team's OAuth redirect URL."""
        return await self._execute("oauth_redirect_set", url, team_id) > 0

    async def get_credential(self, team_id: str, credential_id: str) -> CredentialRecord | None:
        """One of the team's credentials."""
        row = await self._fetchrow("oauth_credential_get", team_id, credential_id)
        return None if row is None else rows.credential_of(row)

    async def save_connected_credential(
        self, credential: CredentialRecord, replace_id: str | None, event: CredentialEvent
    ) -> bool:
        """Store a connect flow's tokens (replacing ``replace_id``'s) and the event."""
        c = credential
        async with self._connection("oauth_credential_reconnect") as conn, conn.transaction():
            if replace_id is None:
                await conn.execute(Q["credentials_insert"], *rows.credential_params(c))
            elif _count(await conn.execute(Q["oauth_credential_reconnect"], c.sealed,
                                           c.expires_at, c.updated_at, c.team_id,
                                           replace_id)) == 0:
                return False
            await conn.execute(Q["credential_event_insert"],
                               *rows.credential_event_params(event))
        return True

    async def claim_credential_refresh(self, credential_id: str, version: int, owner: str,
                                       until: int, now: int) -> bool:
        """Take the refresh lease."""
        return await self._execute("oauth_refresh_claim", owner, until, credential_id,
                                   version, now) > 0

    async def credential_refreshed(self, credential_id: str, version: int, owner: str,
                                   sealed: str, expires_at: int | None, now: int,
                                   event: CredentialEvent | None = None) -> bool:
        """Write refreshed values under the lease and version."""
        async with self._connection("oauth_refreshed") as conn, conn.transaction():
            done = _count(await conn.execute(Q["oauth_refreshed"], sealed, expires_at, now,
                                             credential_id, version, owner)) > 0
            if done and event is not None:
                await conn.execute(Q["credential_event_insert"],
                                   *rows.credential_event_params(event))
        return done

    async def credential_refresh_refused(
        self, credential_id: str, version: int, owner: str, reason: str, blocked_until: int,
        now: int, event: CredentialEvent | None, notification: bytes | None,
    ) -> bool:
        """Mark needs_reconnect, with the event and notification."""
        async with self._connection("oauth_refresh_refused") as conn, conn.transaction():
            done = _count(await conn.execute(Q["oauth_refresh_refused"], _clean(reason), now,
                                             blocked_until, credential_id, version,
                                             owner)) > 0
            if done and event is not None:
                await conn.execute(Q["credential_event_insert"],
                                   *rows.credential_event_params(event))
                if notification is not None:
                    await conn.execute(Q["credential_outbox_insert"], event.id,
                                       event.user_id, now, event.kind, notification,
                                       event.team_id)
        return done

    async def release_credential_refresh(self, credential_id: str, owner: str,
                                         blocked_until: int) -> None:
        """Free the refresh lease after a passing failure."""
        await self._execute("oauth_refresh_release", blocked_until, credential_id, owner)

    async def add_credential_event(self, event: CredentialEvent) -> None:
        """Record a credential event."""
        await self._execute("credential_event_insert", *rows.credential_event_params(event))

    async def list_credential_events(self, team_id: str, user_id: str | None,
                                     limit: int) -> list[CredentialEvent]:
        """Credential events, newest first."""
        return [rows.credential_event_of(r)
                for r in await self._fetch("credential_events_list", team_id, user_id, limit)]


    # -- headless installation (installation_config.sql; services/headless.py) -------------

    async def save_headless_installation(self, started: HeadlessInstallation) -> None:
        """Insert or replace (by id) a headless installation, keeping its creation time."""
        await self._execute("headless_installation_upsert",
                            *rows.headless_installation_params(started))

    async def get_headless_installation(
        self, team_id: str, installation_id: str
    ) -> HeadlessInstallation | None:
        """The team's headless installation of this id."""
        row = await self._fetchrow("headless_installation_get", team_id, installation_id)
        return rows.headless_installation_of(row) if row else None

    async def installation_settings(
        self, team_id: str, installation_ids: Sequence[str]
    ) -> dict[str, InstallationSettings]:
        """Configured values and pinned credentials of live installations, by id."""
        if not installation_ids:
            return {}
        found = await self._fetch("installation_settings", team_id, list(installation_ids))
        return {r["id"]: rows.installation_settings_of(r) for r in found}

    async def configure_installations(
        self, team_id: str, changes: Sequence[ConfigChange], now: int
    ) -> int:
        """Write every change in one transaction; how many installations were written."""
        # JSON text from orjson holds no raw NUL (it is escaped), so none is refused.
        params = [rows.config_change_params(team_id, c, now) for c in changes]
        written = 0
        async with (self._connection("installation_configure") as conn,
                    conn.transaction()):
            for args in params:
                written += _count(await conn.execute(Q["installation_configure"], *args))
        return written


    # -- bulk rerun jobs (reruns.sql; services/reruns.py) ----------------------------------

    @staticmethod
    def _selection(team_id: str, f: RerunFilter, limit: int) -> tuple[Any, ...]:
        return (team_id, f.status.value, f.since, f.until, f.workflow_id, f.user_id,
                None if f.error is None else _clean(f.error), f.block_id, limit)

    async def rerun_sources(
        self, team_id: str, selection: RerunFilter, limit: int
    ) -> list[RerunSource]:
        """The executions the filter selects, oldest first."""
        found = await self._fetch("reruns_sources", *self._selection(team_id, selection, limit))
        return [rows.rerun_source_of(r) for r in found]

    async def count_rerun_sources(self, team_id: str, selection: RerunFilter, cap: int) -> int:
        """How many executions the filter selects, up to ``cap``."""
        row = await self._fetchrow("reruns_sources_count",
                                   *self._selection(team_id, selection, cap))
        return 0 if row is None else int(row[0])

    async def create_rerun_job(self, job: RerunJob, execution_ids: Sequence[str]) -> None:
        """Insert the job and its items in one transaction."""
        async with self._connection("reruns_job_insert") as conn, conn.transaction():
            await conn.execute(Q["reruns_job_insert"], *rows.rerun_job_params(job))
            await conn.execute(Q["reruns_item_insert"], job.id, list(execution_ids))

    async def get_rerun_job(self, team_id: str, job_id: str) -> RerunJob | None:
        """One of the team's jobs."""
        row = await self._fetchrow("reruns_job_get", team_id, job_id)
        return rows.rerun_job_of(row) if row else None

    async def list_rerun_jobs(
        self, team_id: str, before: str | None, limit: int
    ) -> list[RerunJob]:
        """The team's jobs, newest first."""
        return [rows.rerun_job_of(r)
                for r in await self._fetch("reruns_job_list", team_id, before, limit)]

    async def rerun_job_results(
        self, team_id: str, job_id: str, offset: int, limit: int
    ) -> list[RerunItem]:
        """A page of the job's items."""
        return [rows.rerun_item_of(r)
                for r in await self._fetch("reruns_results", team_id, job_id, offset, limit)]

    async def claim_rerun_job(self, owner: str, now: int, lease_until: int) -> RerunJob | None:
        """Lease a job (SKIP LOCKED: concurrent runners take different jobs)."""
        async with self._connection("reruns_job_claim") as conn:
            row = await conn.fetchrow(Q["reruns_job_claim"], owner, lease_until, now)
        return rows.rerun_job_of(row) if row else None

    async def pending_rerun_items(
        self, job: RerunJob, key_prefix: str, limit: int
    ) -> list[PendingItem]:
        """The job's next pending items."""
        found = await self._fetch("reruns_items_pending", job.id, job.team_id,
                                  f"{key_prefix}{job.id}:", limit)
        return [PendingItem(r[0], r[1]) for r in found]

    async def finish_rerun_items(
        self, job_id: str, results: Sequence[ItemResult], now: int
    ) -> RerunJob | None:
        """Record results, recount, end the job when nothing is pending."""
        async with self._connection("reruns_item_finish") as conn, conn.transaction():
            await conn.execute(Q["reruns_job_lock"], job_id)
            await conn.execute(
                Q["reruns_item_finish"], job_id, [r.execution_id for r in results],
                [r.state.value for r in results], [r.new_execution_id for r in results],
                [None if r.error is None else _clean(r.error) for r in results])
            await conn.execute(Q["reruns_job_recount"], job_id)
            await conn.fetch(Q["reruns_job_complete"], job_id, now)
            row = await conn.fetchrow(Q["reruns_job_get_any"], job_id)
        return rows.rerun_job_of(row) if row else None

    async def cancel_rerun_job(self, team_id: str, job_id: str, now: int) -> RerunJob | None:
        """Cancel the job's pending items and the job."""
        if _has_nul((job_id,)):
            return None
        async with self._connection("reruns_job_cancel") as conn, conn.transaction():
            if _count(await conn.execute(Q["reruns_job_cancel"], now, team_id, job_id)):
                await conn.execute(Q["reruns_items_cancel"], job_id)
                await conn.execute(Q["reruns_job_recount"], job_id)
            row = await conn.fetchrow(Q["reruns_job_get"], team_id, job_id)
        return rows.rerun_job_of(row) if row else None

    async def release_rerun_jobs(self, owner: str) -> int:
        """Give back the owner's job leases."""
        return await self._execute("reruns_release", owner)

    async def purge_rerun_jobs(self, finished_before: int, limit: int) -> int:
        """Delete a batch of ended jobs with their items."""
        return await self._execute("reruns_purge", finished_before, limit)

def _sealed_kind(kind: str) -> str:
    """A kind of sealed value ``Store.sealed_batch`` knows (checked: it names a query)."""
    if kind not in ("credentials", "error_stream", "triggers", "installations"):
        raise ValueError(f"no sealed values of kind {kind!r}")
    return kind


def _clean(text: str) -> str:
    """Text PostgreSQL can store (its text type refuses NUL)."""
    return text.replace("\x00", "")
