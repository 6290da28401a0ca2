"""The SQLite store (embedded mode): one connection, WAL, used from the event loop thread.

SQLite calls are short and made directly from async methods: no thread hop per query,
which is what keeps a run's overhead low. One process owns a database file for running
executions (``start_runner``); CLI reads and writes may share it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

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
from reflow.errors import Conflict, LeaseLost, NotFound, SettingsError, StoreError
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
from reflow.store.log_search import LogPage, LogSearch, LogSearchSql, entry_of
from reflow.store.queries import load_queries, statement_runs
from reflow.store.revisions import schema_problem

log = logging.getLogger(__name__)
Q = load_queries(Path(__file__).parent)

# Database files hold API key hashes and run data: readable by their owner only.
PRIVATE_FILE_MODE = 0o600


def create_private(path: str) -> None:
    """Create the SQLite file ``path`` (if new) readable by its owner only.

    SQLite gives its -wal and -shm files the database file's mode, so those follow.
    """
    if path in ("", ":memory:"):
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))


def _write_error(exc: sqlite3.Error) -> Exception:
    if isinstance(exc, sqlite3.IntegrityError):
        return Conflict(f"already stored: {exc}")
    return StoreError(f"database write failed: {exc}")


DEFAULT_WAL_LIMIT = 64 * 1024 * 1024
# A WAL frame is a page plus its 24-byte header.
_FRAME_HEADER_BYTES = 24
# How long a RESTART checkpoint may wait for the writer and for readers to leave the WAL;
# the event loop holds its commits meanwhile.
_RESTART_WAIT_MS = 100
# After a RESTART that readers kept from finishing, skip up to this many ticks before the
# next (doubling from 1), so a reader that holds a snapshot does not hold commits each tick.
_MAX_RESTART_BACKOFF = 32
# The checkpointer's tick while the WAL holds more than an eighth of the limit (shorter
# ticks cost the event loop GIL waits and SQLite work; the WAL peaks higher, within bound).
_BUSY_INTERVAL = 0.2
# The longest the WAL's limit holds commits back (a slow disk): past it, writes go on.
_MAX_HOLD_SECONDS = 1.0
# How soon a group commit held back by the checkpointer tries again.
_HELD_COMMIT_RETRY_SECONDS = 0.001


# Statements that write a running execution only under its lease: each must change a row.
_FENCED = frozenset({"update_execution"})


def _run(db: sqlite3.Connection, statements: list[tuple[str, Sequence[Any]]]) -> None:
    """Run named statements in order; a run of the same statement is one executemany.

    A fenced statement that changed no row raises LeaseLost: writers put it first, so
    nothing of theirs was written when it does.
    """
    for name, params in statement_runs(statements):
        if len(params) == 1:
            cursor = db.execute(Q[name], params[0])
        else:
            cursor = db.executemany(Q[name], params)
        if name in _FENCED and cursor.rowcount < len(params):
            raise LeaseLost(f"execution {params[0][-2]}: its lease is held by another "
                            "worker now")


def _run_fenced(
    db: sqlite3.Connection, statements: list[tuple[str, Sequence[Any]]]
) -> BaseException | None:
    """One writer's statements in a group commit; a lost lease is that writer's alone."""
    try:
        _run(db, statements)
    except LeaseLost as exc:
        return exc
    return None


class _Checkpointer(threading.Thread):
    """Keeps the WAL file under ``wal_limit`` bytes, from a thread with its own connection.

    Every tick it runs a PASSIVE checkpoint, which copies WAL frames into the database
    without waiting for anyone. Alone, that never bounds the WAL under sustained writes:
    SQLite only reuses the WAL from its start when a checkpoint copied every frame and no
    reader still reads from the WAL as the next write transaction begins, and with commits
    every millisecond and reads in between that moment never comes (the file reached 1 GB
    in 40 s at 2,500 runs/s). So once the WAL holds half the limit, a RESTART checkpoint
    follows: it blocks writers while it copies the few frames the PASSIVE one left and
    waits (at most ``_RESTART_WAIT_MS``) for readers to leave the WAL; the next commit then
    writes from the file's start, and cuts the file back to half the limit
    (``journal_size_limit``). The event loop asks ``holds_commits`` before each group
    commit: it holds the commit, not the loop, while a RESTART runs, and while the WAL is
    within an eighth of the limit and no RESTART has reset it yet (the disk is slower than
    the writes; a reader holding an old snapshot is not waited for).
    """

    def __init__(self, path: str, wal_limit: int, interval: float = 0.5) -> None:
        super().__init__(name="sqlite checkpointer", daemon=True)
        self._path = path
        self._wal = Path(f"{path}-wal")
        self._restart_above = wal_limit // 2
        self._hold_above = wal_limit - wal_limit // 8
        self._interval = interval
        self._stopping = False
        self._wake = threading.Event()
        self._restarting = threading.Event()
        # A RESTART completed and no commit began since: the next one resets the WAL.
        self._reset_pending = False
        # WAL frames at the last complete RESTART: no write since, so nothing to restart.
        self._restarted_at = -1
        self._backoff = 0
        self._skip = 0
        self._held_since: float | None = None  # event loop side: holding since (monotonic)

    def holds_commits(self) -> bool:
        """Whether the next group commit must wait (called by the event loop, cheap)."""
        if self._restarting.is_set():
            return True
        if self._backoff or not self.is_alive():
            return False  # a reader keeps the WAL from restarting: waiting would not help
        try:
            full = self._wal.stat().st_size >= self._hold_above
        except FileNotFoundError:
            full = False
        if not full or self._reset_pending:
            self._reset_pending = False  # this commit writes from the WAL's start
            self._held_since = None
            return False
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        elif now - self._held_since > _MAX_HOLD_SECONDS:
            return False  # the checkpoints cannot catch up: let the WAL grow, keep writing
        self._wake.set()
        return True

    def run(self) -> None:
        """Checkpoint until stopped, then truncate the WAL."""
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {_RESTART_WAIT_MS}")
            frame_bytes = int(db.execute("PRAGMA page_size").fetchone()[0]) + _FRAME_HEADER_BYTES
            wait = self._interval
            while True:
                self._wake.wait(wait)
                self._wake.clear()
                if self._stopping:
                    break
                try:
                    wait = self._checkpoint(db, frame_bytes)
                except sqlite3.Error:
                    wait = self._interval
                    log.exception("WAL checkpoint failed; retrying in %ss", wait)
            db.execute("PRAGMA busy_timeout = 5000")
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            db.close()

    def _checkpoint(self, db: sqlite3.Connection, frame_bytes: int) -> float:
        """One tick; returns how long to wait before the next."""
        # Columns: busy (1 when it could not finish), frames in the WAL, frames copied.
        _, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if self._skip and copied >= frames:
            # Every frame reached the database: the reader that pinned old ones is gone,
            # so restart now rather than after the back-off (the WAL grows meanwhile).
            self._skip = 0
        size = frames * frame_bytes
        # While writes pour in, tick again soon: the WAL grows by what the writer appends
        # between two looks.
        wait = self._interval if size < self._restart_above // 4 else _BUSY_INTERVAL
        if size < self._restart_above or frames == self._restarted_at:
            return wait
        if self._skip:
            self._skip -= 1
            return self._interval
        self._restarting.set()
        try:
            busy, frames, _ = db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        finally:
            self._restarting.clear()
        if not busy:
            self._restarted_at, self._backoff = frames, 0
            self._reset_pending = True
            return wait
        if not self._backoff:
            log.warning("the WAL holds %d MiB and cannot start over: a reader keeps an old "
                        "snapshot open (a long query, or another process)",
                        frames * frame_bytes >> 20)
        self._backoff = min(2 * self._backoff or 1, _MAX_RESTART_BACKOFF)
        self._skip = self._backoff
        return self._interval

    def stop(self) -> None:
        """Checkpoint once more and end the thread."""
        self._stopping = True
        self._wake.set()
        self.join(10)


class SqliteStore:
    """The Store protocol on one SQLite file."""

    def __init__(
        self, path: str, *, synchronous: str = "NORMAL", wal_limit: int = DEFAULT_WAL_LIMIT
    ) -> None:
        self.path = path
        self.wal_limit = wal_limit
        try:
            create_private(path)
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, cached_statements=256
            )
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open SQLite database {path!r}: {exc}") from exc
        self._db.row_factory = sqlite3.Row
        for pragma in (
            "journal_mode = WAL",
            f"synchronous = {synchronous}",
            "busy_timeout = 5000",
            "foreign_keys = ON",
            "cache_size = -65536",
            "temp_store = MEMORY",
            # When the WAL starts over, cut its file back to half the limit: a file
            # larger than that then means as many frames in use (see _Checkpointer).
            f"journal_size_limit = {wal_limit // 2}",
        ):
            self._db.execute(f"PRAGMA {pragma}")
        self._lock_file: IO[str] | None = None
        self._pending: list[tuple[list[tuple[str, Sequence[Any]]], asyncio.Future[None]]] = []
        self._flush_scheduled = False
        self._checkpointer: _Checkpointer | None = None
        # The installation the last claim took from last: the next claim starts after it.
        self._claim_cursor = ""

    async def start_runner(self) -> int:
        """Take the file's runner lock, then release the leases of the runner before us."""
        if not self._acquire_runner_lock():
            raise SettingsError(
                f"another reflow process is already running executions on {self.path}; "
                "SQLite mode runs one process (use PostgreSQL to scale out)"
            )
        # This process holds the runner lock, so whoever leased these is gone.
        return self._expire_leases()

    def _acquire_runner_lock(self) -> bool:
        if self.path == ":memory:":
            return True
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
        handle = os.fdopen(fd, "r+")  # held for the process life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)  # only once it is ours: the holder's pid stays readable until then
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle
        self._start_checkpointer()
        return True

    def _start_checkpointer(self) -> None:
        # The runner writes all the time: move WAL checkpoints (and their fsync) off the
        # event loop to a thread with its own connection, instead of inside some commit.
        self._db.execute("PRAGMA wal_autocheckpoint = 0")
        self._checkpointer = _Checkpointer(self.path, self.wal_limit)
        self._checkpointer.start()

    async def close(self) -> None:
        """Close the connection and drop the runner lock."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- helpers ---------------------------------------------------------------------------

    def _execute(self, name: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(Q[name], params)
        except sqlite3.OperationalError as exc:
            hint = " (is the database migrated? run `reflow db upgrade`)" if "no such" in str(
                exc) else ""
            raise StoreError(f"database query {name} failed: {exc}{hint}") from exc

    def _one(self, name: str, params: Sequence[Any]) -> sqlite3.Row | None:
        cursor = self._execute(name, params)
        row: sqlite3.Row | None = cursor.fetchone()
        # A statement left unfinished keeps a read snapshot open, which stops checkpoints
        # from ever resetting the WAL: finish it now.
        cursor.close()
        return row

    def _all(self, name: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        return self._execute(name, params).fetchall()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; driver errors other than integrity ones are StoreError."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.IntegrityError:
            raise  # the caller knows what a duplicate means
        except sqlite3.Error as exc:
            raise StoreError(f"database write failed: {exc}") from exc

    def _write(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        with self._transaction() as db:
            for name, params in statements:
                db.execute(Q[name], params)

    async def _write_grouped(self, statements: list[tuple[str, Sequence[Any]]]) -> None:
        """Write in the next group commit: every execution write that becomes ready in the
        same event-loop turn shares one transaction, which is what keeps a commit's fixed
        cost (WAL frames for each touched page) from being paid per execution."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((statements, done))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        await done

    def _flush(self) -> None:
        if self._checkpointer is not None and self._checkpointer.holds_commits():
            # A checkpoint holds the write lock, or must reset a full WAL first: keep
            # serving requests and commit right after, rather than freeze the loop in
            # SQLite's busy handler.
            asyncio.get_running_loop().call_later(_HELD_COMMIT_RETRY_SECONDS, self._flush)
            return
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        db = self._db
        outcomes: list[BaseException | None]
        try:
            # Everyone's statements in one transaction, without a savepoint each: writes
            # almost never fail, so that cost is paid only when one did (below).
            db.execute("BEGIN IMMEDIATE")
            outcomes = [_run_fenced(db, statements) for statements, _ in pending]
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            outcomes = self._flush_each(pending) if len(pending) > 1 else [_write_error(exc)]
        for (_, done), outcome in zip(pending, outcomes, strict=True):
            if done.cancelled():
                continue
            if outcome is None:
                done.set_result(None)
            else:
                done.set_exception(outcome)

    def _flush_each(
        self, pending: list[tuple[list[tuple[str, Sequence[Any]]], asyncio.Future[None]]]
    ) -> list[BaseException | None]:
        """The group again, a savepoint per writer: one writer's error is its own."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            outcomes = [self._run_group(statements) for statements, _ in pending]
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            return [_write_error(exc)] * len(pending)
        return outcomes

    def _run_group(self, statements: list[tuple[str, Sequence[Any]]]) -> BaseException | None:
        db = self._db
        db.execute("SAVEPOINT writer")
        try:
            _run(db, statements)
        except LeaseLost as exc:
            db.execute("RELEASE writer")  # it wrote nothing (the fenced statement is first)
            return exc
        except sqlite3.Error as exc:
            db.execute("ROLLBACK TO writer")
            db.execute("RELEASE writer")
            return _write_error(exc)
        db.execute("RELEASE writer")
        return None

    # -- teams and keys --------------------------------------------------------------------

    async def count_teams(self) -> int:
        """How many teams exist."""
        row = self._one("count_teams", ())
        return int(row[0]) if row else 0

    async def create_team(self, team: Team) -> None:
        """Insert a team."""
        retention = None if team.log_retention is None else int(team.log_retention)
        self._write([("insert_team", (team.id, team.name, team.created_at, retention))])

    async def get_team(self, team_id: str) -> Team | None:
        """A team by id."""
        row = self._one("get_team", (team_id,))
        return rows.team_of(row) if row else None

    async def list_teams(self) -> list[Team]:
        """Every team."""
        return [rows.team_of(r) for r in self._all("list_teams", ())]

    async def get_team_env(self, team_id: str) -> bytes | None:
        """The team's stored env."""
        row = self._one("get_team_env", (team_id,))
        return None if row is None else row[0]

    async def set_team_env(self, team_id: str, env: bytes | None) -> bool:
        """Replace the team's env."""
        with self._transaction() as db:
            return db.execute(Q["set_team_env"], (env, team_id)).rowcount > 0

    async def create_api_key(self, key: ApiKey, key_hash: str) -> None:
        """Insert a key."""
        params = (key.id, key.team_id, key.name, key.prefix, key_hash, key.created_at)
        self._write([("insert_api_key", params)])

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        """The live key with this hash."""
        row = self._one("find_api_key", (key_hash,))
        return rows.key_of(row) if row else None

    async def list_api_keys(self, team_id: str) -> list[ApiKey]:
        """A team's keys."""
        return [rows.key_of(r) for r in self._all("list_api_keys", (team_id,))]

    async def revoke_api_key(self, team_id: str, id_or_prefix: str, now: int) -> bool:
        """Revoke a live key."""
        cursor = self._execute("revoke_api_key", (now, team_id, id_or_prefix, id_or_prefix))
        return cursor.rowcount > 0

    # -- users -----------------------------------------------------------------------------

    async def create_user(self, user: User) -> None:
        """Insert a user; a taken username is a Conflict."""
        params = (user.id, user.team_id, user.username, user.full_name, user.created_at)
        try:
            self._write([("insert_user", params)])
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"username {user.username!r} is already taken") from exc

    async def get_user(self, team_id: str, id_or_username: str) -> User | None:
        """A user by id or username."""
        key = id_or_username
        row = self._one("get_user", (team_id, key, key, key))
        return rows.user_of(row) if row else None

    async def get_user_any(self, team_id: str, user_id: str) -> User | None:
        """A user by id, live or deleted."""
        row = self._one("get_user_any", (team_id, user_id))
        return rows.user_of(row) if row else None

    async def list_users(self, team_id: str, workflow_id: str | None = None) -> list[User]:
        """A team's live users, oldest first (only a workflow's, given one)."""
        if workflow_id is None:
            found = self._all("list_users", (team_id,))
        else:
            found = self._all("list_users_of_workflow", (team_id, workflow_id))
        return [rows.user_of(r) for r in found]

    async def taken_usernames(self, team_id: str, usernames: Sequence[str]) -> set[str]:
        """Which of these usernames live users hold."""
        found = self._all("taken_usernames", (team_id, orjson.dumps(list(usernames))))
        return {r[0] for r in found}

    async def create_users(self, users: Sequence[User]) -> None:
        """Insert all the users in one transaction; a taken username is a Conflict."""
        params = [(u.id, u.team_id, u.username, u.full_name, u.created_at) for u in users]
        try:
            with self._transaction() as db:
                db.executemany(Q["insert_user"], params)
        except sqlite3.IntegrityError as exc:
            raise Conflict("a username of the batch is already taken") from exc

    async def update_user(self, user: User) -> bool:
        """Store a live user's username and full name."""
        try:
            with self._transaction() as db:
                cursor = db.execute(Q["update_user"], (user.username, user.full_name,
                                                       user.team_id, user.id))
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"username {user.username!r} is already taken") from exc
        return cursor.rowcount > 0

    async def delete_user(self, team_id: str, user_id: str, now: int) -> bool:
        """Mark a live user deleted and deactivate its installations."""
        with self._transaction() as db:
            if db.execute(Q["delete_user"], (now, team_id, user_id)).rowcount == 0:
                return False
            db.execute(Q["deactivate_user_installations"], (now, team_id, user_id))
            db.execute(Q["credentials_delete_of_user"], (team_id, user_id))
            db.execute(Q["oauth_states_delete_of_user"], (team_id, user_id))
        return True

    async def deactivate_user_installations(self, team_id: str, user_id: str, now: int) -> int:
        """Deactivate a user's active installations."""
        with self._transaction() as db:
            cursor = db.execute(Q["deactivate_user_installations"], (now, team_id, user_id))
        return cursor.rowcount

    async def delete_user_executions(self, team_id: str, user_id: str) -> int:
        """Delete a user's finished executions, steps and keys; Conflict while any runs."""
        params = (team_id, user_id)
        with self._transaction() as db:
            (unfinished,) = db.execute(Q["unfinished_of_user"], params).fetchone()
            if unfinished:
                raise unfinished_conflict(unfinished)
            db.execute(Q["delete_steps_of_user"], params)
            db.execute(Q["delete_idempotency_keys_of_user"], params)
            deleted = db.execute(Q["delete_executions_of_user"], params).rowcount
        if deleted:
            self._db.executescript("PRAGMA incremental_vacuum(256);")
        return deleted

    # -- workflows -------------------------------------------------------------------------

    async def create_workflow(self, workflow: Workflow, version: WorkflowVersion) -> None:
        """Insert a workflow and its first version."""
        w, v = workflow, version
        try:
            self._write([
                ("insert_workflow", (w.id, w.team_id, w.name, w.integration, w.latest_version,
                                     w.created_at, w.updated_at)),
                ("insert_version", (v.workflow_id, v.version, v.definition, v.digest,
                                    v.created_at)),
            ])
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"a workflow named {w.name!r} already exists") from exc

    async def add_version(
        self, workflow: Workflow, definition: bytes, digest: str, now: int
    ) -> WorkflowVersion:
        """Append the next version."""
        try:
            with self._transaction() as db:
                row = db.execute(
                    Q["bump_workflow_version"],
                    (now, workflow.name, workflow.integration, workflow.team_id, workflow.id),
                ).fetchone()
                version = WorkflowVersion(workflow.id, int(row[0]), definition, digest, now)
                db.execute(Q["insert_version"], (workflow.id, version.version, definition,
                                                 digest, now))
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"a workflow named {workflow.name!r} already exists") from exc
        return version

    async def get_workflow(self, team_id: str, id_or_name: str) -> Workflow | None:
        """A workflow by id or name."""
        key = id_or_name
        row = self._one("get_workflow", (team_id, key, key, key))
        return rows.workflow_of(row) if row else None

    async def list_workflows(self, team_id: str) -> list[Workflow]:
        """A team's workflows."""
        return [rows.workflow_of(r) for r in self._all("list_workflows", (team_id,))]

    async def get_version(
        self, team_id: str, workflow_id: str, version: int
    ) -> WorkflowVersion | None:
        """One version."""
        row = self._one("get_version", (team_id, workflow_id, version))
        return rows.version_of(row) if row else None

    async def list_versions(self, team_id: str, workflow_id: str) -> list[WorkflowVersion]:
        """Every version."""
        return [rows.version_of(r) for r in self._all("list_versions", (team_id, workflow_id))]

    # -- installations ---------------------------------------------------------------------

    async def get_installation(
        self, team_id: str, workflow_id: str, user_id: str
    ) -> Installation | None:
        """A user's installation of a workflow."""
        row = self._one("get_installation", (team_id, workflow_id, user_id))
        return rows.installation_of(row) if row else None

    async def get_installation_by_id(
        self, team_id: str, installation_id: str
    ) -> Installation | None:
        """An installation by id."""
        row = self._one("get_installation_by_id", (team_id, installation_id))
        return rows.installation_of(row) if row else None

    async def get_installations(
        self, team_id: str, installation_ids: Sequence[str]
    ) -> list[Installation]:
        """Live installations by id."""
        found = self._all("get_installations",
                          (team_id, orjson.dumps(list(installation_ids)).decode()))
        return [rows.installation_of(r) for r in found]

    async def list_installations(
        self, team_id: str, *, user_id: str | None = None, workflow_id: str | None = None
    ) -> list[Installation]:
        """A team's installations (a user's, a workflow's)."""
        found = self._all("list_installations",
                          (team_id, user_id, user_id, workflow_id, workflow_id))
        return [rows.installation_of(r) for r in found]

    async def save_installation(self, installation: Installation) -> None:
        """Insert or update an installation."""
        i = installation
        self._write([("upsert_installation", (i.id, i.team_id, i.workflow_id, i.user_id,
                                              i.installed_version, i.active, i.installed_at,
                                              i.updated_at))])

    # -- executions ------------------------------------------------------------------------

    async def insert_execution(
        self, execution: ExecutionRecord, idempotency_key: str | None = None
    ) -> None:
        """Insert an execution and its steps (and the key that must find it again)."""
        statements: list[tuple[str, Sequence[Any]]] = [
            ("insert_execution", rows.execution_params(execution))
        ]
        statements.extend(("insert_step", rows.step_params(execution.id, s))
                          for s in execution.steps)
        if idempotency_key is not None:
            statements.append(("insert_idempotency_key", (
                execution.team_id, idempotency_key, execution.id, execution.created_at)))
        if execution.status is ExecutionStatus.FAILED:  # failed before its first commit
            statements.append(("error_outbox_insert", rows.error_outbox_params(execution)))
        await self._write_grouped(statements)

    async def find_idempotency_key(self, team_id: str, key: str) -> str | None:
        """The execution an idempotency key was first used for."""
        row = self._one("find_idempotency_key", (team_id, key))
        return None if row is None else str(row[0])

    async def save_execution(
        self, execution: ExecutionRecord, new_steps: Sequence[StepRecord], *, owner: str
    ) -> None:
        """Update an execution and append steps, if ``owner`` holds its lease."""
        e = execution
        # The fenced update first: when the lease is lost, no step of it is written.
        statements: list[tuple[str, Sequence[Any]]] = [("update_execution", (
            e.status.value, e.started_at, e.stopped_at, e.output, e.response_status, e.error,
            e.lease_owner, e.lease_expires, e.resumes, e.id, owner,
        ))]
        statements.extend(("insert_step", rows.step_params(e.id, s)) for s in new_steps)
        if e.status is ExecutionStatus.FAILED:
            statements.append(("error_outbox_insert", rows.error_outbox_params(e)))
        await self._write_grouped(statements)

    async def request_cancel(
        self, team_id: str, execution_id: str, now: int, error: bytes,
        waiting_error: bytes | None = None,
    ) -> ExecutionRecord | None:
        """Cancel a queued or waiting execution, or flag a running one; the execution as it
        is now."""
        with self._transaction() as db:
            db.execute(Q["cancel_queued"], (now, error, team_id, execution_id))
            db.execute(Q["cancel_waiting"], (now, waiting_error or error, team_id,
                                              execution_id))
            db.execute(Q["request_cancel"], (team_id, execution_id))
        return await self.get_execution(team_id, execution_id)

    async def cancel_requests(self, ids: Sequence[str]) -> list[str]:
        """Which of these executions a cancel was requested for."""
        return [r[0] for r in self._all("cancel_requests", (orjson.dumps(list(ids)),))]

    async def claim_executions(
        self, owner: str, now: int, lease_until: int, limit: int
    ) -> list[ExecutionRecord]:
        """Lease queued or abandoned executions, installation by installation from the
        one after the last claim's last (round robin)."""
        found = self._all("claimable_executions", (now, limit, self._claim_cursor))
        if not found:
            return []
        claimed: list[str] = []
        with self._transaction() as db:
            for installation_id, execution_id in found:
                cursor = db.execute(Q["claim_execution"],
                                    (owner, lease_until, now, execution_id, now))
                if cursor.rowcount:
                    claimed.append(execution_id)
                    self._claim_cursor = installation_id
        return self._with_steps(
            [rows.execution_of(r) for i in claimed
             if (r := self._one("get_execution_any_team", (i,)))]
        )

    async def renew_leases(self, owner: str, ids: Sequence[str], lease_until: int) -> list[str]:
        """Extend leases; the ids whose lease is no longer this owner's."""
        with self._transaction() as db:
            kept = {r[0] for r in db.execute(Q["renew_leases"],
                                             (lease_until, orjson.dumps(list(ids)), owner))}
        return [i for i in ids if i not in kept]

    async def listen(
        self, on_hint: Callable[[str, str], None], hints: Collection[str] = HINTS
    ) -> None:
        """Nothing to hear: one process runs executions on a SQLite file, others poll."""

    async def ping(self) -> None:
        """Raise StoreError unless the database answers at the migrations' head."""
        row = self._one("schema_version", ())
        problem = schema_problem(None if row is None else row[0])
        if problem is not None:
            raise StoreError(problem)

    async def queue_depth(self) -> int:
        """Queued executions (on the unfinished-executions index)."""
        row = self._one("queue_depth", ())
        return int(row[0]) if row else 0

    async def wake_waiting(self, now: int, limit: int) -> int:
        """Queue again up to ``limit`` waiting executions whose wake time has come."""
        with self._transaction() as db:
            return db.execute(Q["wake_waiting"], (now, limit)).rowcount

    async def waiting(self) -> tuple[int, int | None]:
        """How many executions wait, and the soonest wake time (ms) among them."""
        count, soonest = self._one("waiting_count", ()), self._one("next_wake", ())
        return (int(count[0]) if count else 0), (soonest[0] if soonest else None)

    async def release_leases(self, owner: str, ids: Sequence[str]) -> int:
        """Give back this owner's leases (a graceful stop): claimable, no resume counted."""
        with self._transaction() as db:
            return db.execute(Q["release_leases"], (orjson.dumps(list(ids)), owner)).rowcount

    async def create_first_team(self, team: Team) -> bool:
        """Insert the team if there is none (BEGIN IMMEDIATE serializes bootstraps)."""
        retention = None if team.log_retention is None else int(team.log_retention)
        with self._transaction() as db:
            return db.execute(Q["insert_first_team"], (team.id, team.name, team.created_at,
                                                       retention)).rowcount > 0

    def _expire_leases(self) -> int:
        """Every lease's expiry to now: their owners died (the runner lock says so)."""
        return self._execute("expire_leases").rowcount

    async def get_execution(self, team_id: str, execution_id: str) -> ExecutionRecord | None:
        """One execution with steps and reruns."""
        row = self._one("get_execution", (team_id, execution_id))
        if row is None:
            return None
        return self._with_steps([rows.execution_of(row)])[0]

    async def get_executions(
        self, team_id: str, execution_ids: Sequence[str], *, steps: bool
    ) -> list[ExecutionRecord]:
        """Executions by id (with steps and reruns when ``steps``)."""
        found = [rows.execution_of(r) for r in self._all(
            "get_executions", (team_id, orjson.dumps(list(execution_ids)).decode()))]
        return self._with_steps(found) if steps else found

    async def execution_status(self, team_id: str, execution_id: str) -> str | None:
        """Just the status."""
        row = self._one("execution_status", (team_id, execution_id))
        return None if row is None else str(row[0])

    async def list_executions(self, query: ExecutionQuery) -> list[ExecutionRecord]:
        """A page of executions."""
        order = "desc" if query.descending else "asc"
        if query.installation_id is not None:
            name, key = f"list_by_installation_{order}", query.installation_id
        else:
            name, key = f"list_by_workflow_{order}", query.workflow_id
        found = self._all(name, (key, query.team_id, int(query.failed_only), query.limit,
                                 query.offset))
        return self._with_steps([rows.execution_of(r) for r in found])

    def _with_steps(self, executions: list[ExecutionRecord]) -> list[ExecutionRecord]:
        if not executions:
            return executions
        by_id = {e.id: e for e in executions}
        ids = orjson.dumps(list(by_id))
        for row in self._all("steps_of_many", (ids,)):
            by_id[row[0]].steps.append(rows.step_of(row))
        for rerun_of, rerun_id in self._all("reruns_of_many", (ids,)):
            by_id[rerun_of].reruns.append(rerun_id)
        return executions

    async def workflow_activity(
        self, team_id: str, workflow_id: str, installation_id: str | None,
        action_blocks: Sequence[str],
    ) -> Activity:
        """Runs, failed runs and action steps, in one query."""
        row = self._one("workflow_activity", (orjson.dumps(list(action_blocks)).decode(),
                                              team_id, workflow_id, installation_id,
                                              installation_id))
        assert row is not None  # an aggregate always answers one row
        return Activity(int(row["runs"]), int(row["errors"]), int(row["actions"]))

    async def purge_executions(self, stopped_before: int, limit: int) -> int:
        """Delete a batch of old finished executions and their steps."""
        return self._purge_ids("purge_batch", (stopped_before, limit))

    def _purge_ids(self, batch: str, params: Sequence[Any]) -> int:
        """Delete the executions query ``batch`` selects (ids only), their steps and keys,
        in one transaction. The pages they free stay on the free list for the next
        inserts (give_back_space returns a surplus)."""
        with self._transaction() as db:
            ids = [r[0] for r in db.execute(Q[batch], params)]
            if not ids:
                return 0
            encoded = orjson.dumps(ids)
            for name in ("delete_steps_of_many", "delete_idempotency_keys_of_many",
                         "delete_executions_many"):
                db.execute(Q[name], (encoded,))
        return len(ids)

    async def give_back_space(self, pages: int) -> int:
        """Give up to ``pages`` free pages back to the file system when more than a quarter
        of the file is free; how many it gave back."""
        page_count, free = (self._db.execute(f"PRAGMA {name}").fetchone()[0]
                            for name in ("page_count", "freelist_count"))
        if free * 4 <= page_count:
            return 0  # the next inserts reuse them: giving them back would be undone
        # executescript: execute() steps this pragma once, which frees a single page.
        self._db.executescript(f"PRAGMA incremental_vacuum({int(pages)});")
        return int(page_count - self._db.execute("PRAGMA page_count").fetchone()[0])

    # -- retention (services/retention.py, retention.sql) ----------------------------------

    async def set_team_retention(self, team_id: str, window_s: int | None) -> bool:
        """Set the team's window."""
        with self._transaction() as db:
            return db.execute(Q["retention_set_team"], (window_s, team_id)).rowcount > 0

    async def set_workflow_retention(
        self, team_id: str, workflow_id: str, retention: Retention
    ) -> None:
        """Store the workflow's retention."""
        params = (*rows.retention_params(retention), team_id, workflow_id)
        self._write([("retention_set_workflow", params)])

    async def retention_policies(self) -> tuple[list[TeamWindow], list[WorkflowRetention]]:
        """Teams' windows and workflows' own retentions."""
        teams = [TeamWindow(r[0], r[1]) for r in self._all("retention_teams", ())]
        return teams, [rows.workflow_retention_of(r) for r in
                       self._all("retention_workflows", ())]

    async def purge_team_executions(
        self, team_id: str, stopped_before: int, skip_workflows: Sequence[str], limit: int
    ) -> int:
        """A batch of the team's old finished executions."""
        skip = orjson.dumps(list(skip_workflows))
        return self._purge_ids("retention_team_batch", (team_id, stopped_before, skip, limit))

    async def count_team_executions(
        self, team_id: str, stopped_before: int, skip_workflows: Sequence[str]
    ) -> int:
        """How many the team's purge would delete."""
        skip = orjson.dumps(list(skip_workflows))
        row = self._one("retention_team_count", (team_id, stopped_before, skip))
        return int(row[0]) if row else 0

    async def purge_workflow_executions(
        self, team_id: str, workflow_id: str, stopped_before: int, limit: int
    ) -> int:
        """A batch of the workflow's old finished executions."""
        return self._purge_ids("retention_workflow_batch",
                               (team_id, workflow_id, stopped_before, stopped_before, limit))

    async def count_workflow_executions(
        self, team_id: str, workflow_id: str, stopped_before: int
    ) -> int:
        """How many the workflow's purge would delete."""
        row = self._one("retention_workflow_count",
                        (team_id, workflow_id, stopped_before, stopped_before))
        return int(row[0]) if row else 0

    async def purge_workflow_excess(
        self, team_id: str, workflow_id: str, keep: int, limit: int
    ) -> int:
        """A batch of the workflow's finished executions beyond its newest ``keep``."""
        boundary = self._one("retention_keep_boundary", (team_id, workflow_id, keep - 1))
        if boundary is None:
            return 0
        return self._purge_ids("retention_excess_batch",
                               (team_id, workflow_id, boundary[0], boundary[1], limit))

    async def count_workflow_excess(self, team_id: str, workflow_id: str, keep: int) -> int:
        """How many the workflow's count would delete."""
        boundary = self._one("retention_keep_boundary", (team_id, workflow_id, keep - 1))
        if boundary is None:
            return 0
        row = self._one("retention_excess_count",
                        (team_id, workflow_id, boundary[0], boundary[1]))
        return int(row[0]) if row else 0

    async def drop_succeeded_steps(
        self, team_id: str, workflow_id: str, since: int, until: int, limit: int
    ) -> tuple[int, int | None]:
        """Delete a batch of succeeded executions' steps."""
        with self._transaction() as db:
            found = db.execute(Q["retention_steps_batch"],
                               (team_id, since, until, workflow_id, limit)).fetchall()
            if found:
                db.execute(Q["delete_steps_of_many"], (orjson.dumps([r[0] for r in found]),))
        return len(found), (found[-1][1] if found else None)

    async def count_succeeded_steps(
        self, team_id: str, workflow_id: str, since: int, until: int
    ) -> int:
        """How many the step pass would strip."""
        row = self._one("retention_steps_count", (team_id, since, until, workflow_id))
        return int(row[0]) if row else 0

    async def set_steps_cursor(self, team_id: str, workflow_id: str, until: int) -> None:
        """Record how far the step pass went."""
        self._write([("retention_steps_cursor", (until, team_id, workflow_id))])

    # -- error stream (services/error_stream.py) -------------------------------------------

    async def get_error_stream(self, team_id: str) -> ErrorStreamSetting | None:
        """The team's error stream."""
        row = self._one("error_stream_get", (team_id,))
        return None if row is None else ErrorStreamSetting(row[0], row[1])

    async def set_error_stream(self, team_id: str, url: str, sealed_secret: str) -> bool:
        """Set the team's error stream."""
        with self._transaction() as db:
            return db.execute(Q["error_stream_set"], (url, sealed_secret, team_id)).rowcount > 0

    async def clear_error_stream(self, team_id: str) -> bool:
        """Stop the team's error stream and delete its notifications."""
        with self._transaction() as db:
            if db.execute(Q["error_stream_clear"], (team_id,)).rowcount == 0:
                return False
            db.execute(Q["error_outbox_delete_team"], (team_id,))
        return True

    async def claim_error_notifications(
        self, now: int, claimed_until: int, limit: int, per_team: int
    ) -> list[ErrorNotification]:
        """Claim due notifications (one process delivers on SQLite: no lock to skip)."""
        with self._transaction() as db:
            ids = [r[0] for r in db.execute(Q["error_outbox_claim"],
                                            (now, claimed_until, limit, per_team))]
        if not ids:
            return []
        found = self._all("error_outbox_claimed", (orjson.dumps(ids),))
        return [rows.error_notification_of(r) for r in found]

    async def error_notification_delivered(self, execution_id: str, now: int) -> None:
        """Mark a notification delivered."""
        self._write([("error_outbox_delivered", (now, execution_id))])

    async def error_notification_retry(
        self, execution_id: str, next_attempt_at: int, error: str
    ) -> None:
        """Record a failed attempt."""
        self._write([("error_outbox_retry", (next_attempt_at, error, execution_id))])

    async def error_notification_dead(self, execution_id: str, now: int, error: str) -> None:
        """Give a notification up."""
        self._write([("error_outbox_dead", (now, error, execution_id))])

    async def pause_error_stream(self, team_id: str, until: int) -> None:
        """Claim none of the team's notifications before ``until``."""
        self._write([("error_stream_pause", (until, team_id))])

    async def drop_error_notification(self, execution_id: str) -> None:
        """Delete a notification."""
        self._write([("error_outbox_drop", (execution_id,))])

    async def purge_error_notifications(self, finished_before: int, limit: int) -> int:
        """Delete a batch of old delivered or dead notifications."""
        with self._transaction() as db:
            return db.execute(Q["error_outbox_purge"], (finished_before, limit)).rowcount

    async def error_stream_stats(self, team_id: str) -> ErrorStreamStats:
        """Counts of the team's notifications by state, and its latest failure."""
        row = self._one("error_outbox_stats", (team_id,))
        assert row is not None  # an aggregate always answers one row
        failure = self._one("error_outbox_last_failure", (team_id,))
        return ErrorStreamStats(
            int(row["pending"]), int(row["delivered"]), int(row["dead"]),
            row["last_delivered_at"],
            None if failure is None else (failure[0], failure[1], failure[2]))

    # -- integrations, and installations deleted and revived (services/integrations.py) ---

    async def save_integration(self, integration: Integration) -> Integration:
        """Insert or update (by name) an integration; as stored."""
        i = integration
        with self._transaction() as db:
            row = db.execute(Q["integrations_upsert"], (
                i.id, i.team_id, i.name, i.app, i.description, i.icon, i.created_at,
                i.updated_at)).fetchone()
        return rows.integration_of(row)

    async def ensure_integration(self, integration: Integration) -> None:
        """Insert an integration unless its name is taken."""
        i = integration
        self._write([("integrations_insert_default", (
            i.id, i.team_id, i.name, i.app, i.description, i.icon, i.created_at,
            i.updated_at))])

    async def get_integration(self, team_id: str, id_or_name: str) -> Integration | None:
        """An integration by id or name."""
        key = id_or_name
        row = self._one("integrations_get", (team_id, key, key, key))
        return rows.integration_of(row) if row else None

    async def list_integrations(self, team_id: str) -> list[Integration]:
        """A team's integrations."""
        return [rows.integration_of(r) for r in self._all("integrations_list", (team_id,))]

    async def install(self, installation: Installation) -> Installation:
        """Insert or revive an installation; the live one when there is one already."""
        i = installation
        with self._transaction() as db:
            row = db.execute(Q["integrations_install"], (
                i.id, i.team_id, i.workflow_id, i.user_id, i.installed_version, i.active,
                i.installed_at, i.updated_at)).fetchone()
        if row is not None:
            return rows.installation_of(row)
        live = await self.get_installation(i.team_id, i.workflow_id, i.user_id)
        assert live is not None  # the conflict was with a live row, never deleted here
        return live

    async def delete_installation(self, team_id: str, installation_id: str, now: int) -> bool:
        """Mark a live installation deleted; Conflict while any of its runs is unfinished."""
        with self._transaction() as db:
            (unfinished,) = db.execute(Q["integrations_unfinished_of_installation"],
                                       (team_id, installation_id)).fetchone()
            if unfinished:
                raise unfinished_conflict(unfinished, "this installation")
            cursor = db.execute(Q["integrations_delete_installation"],
                                (now, now, team_id, installation_id))
        return cursor.rowcount > 0

    async def get_deleted_installation(
        self, team_id: str, *, installation_id: str | None = None,
        workflow_id: str | None = None, user_id: str | None = None,
    ) -> Installation | None:
        """A deleted installation by id, or by workflow and user."""
        row = self._one("integrations_get_deleted_installation",
                        (team_id, installation_id, workflow_id, user_id))
        return rows.installation_of(row) if row else None

    # -- webhooks (webhooks.sql) -------------------------------------------------------------

    async def ensure_webhook_token(
        self, team_id: str, installation_id: str, token: str, now: int
    ) -> str:
        """The installation's token, ``token`` stored now when it had none."""
        with self._transaction() as db:
            db.execute(Q["webhook_token_insert"], (token, now, team_id, installation_id))
            row = db.execute(Q["webhook_token_of"], (team_id, installation_id)).fetchone()
        if row is None:
            raise NotFound(f"installation {installation_id!r} not found")
        return str(row[0])

    async def rotate_webhook_token(
        self, team_id: str, installation_id: str, token: str, now: int
    ) -> None:
        """Replace the installation's token."""
        try:
            with self._transaction() as db:
                cursor = db.execute(Q["webhook_token_rotate"],
                                    (token, now, team_id, installation_id))
        except sqlite3.IntegrityError as exc:
            raise Conflict("a new webhook token collided with another; try again") from exc
        if cursor.rowcount == 0:
            raise NotFound(f"installation {installation_id!r} not found")

    async def find_webhook(self, token: str) -> WebhookTarget | None:
        """The installation a token names."""
        row = self._one("webhook_find", (token,))
        return None if row is None else rows.webhook_target_of(row)

    # -- schedules (schedules.sql) -----------------------------------------------------------

    async def installations_updated_max(self) -> int | None:
        """The latest installation update."""
        row = self._one("schedule_installations_updated_max", ())
        return None if row is None or row[0] is None else int(row[0])

    async def changed_installations(self, since: int, limit: int) -> list[InstallationChange]:
        """Installations changed since ``since`` whose state is missing or stale."""
        found = self._all("schedule_changed_installations", (since, limit))
        return [rows.installation_change_of(r) for r in found]

    async def save_schedule_states(self, states: Sequence[ScheduleState]) -> None:
        """Insert or replace states (one from the same installation update is kept)."""
        if states:
            with self._transaction() as db:
                db.executemany(Q["schedule_state_save"],
                               [rows.schedule_state_params(s) for s in states])

    async def due_schedules(self, now: int, limit: int) -> list[DueSchedule]:
        """States due by ``now``, earliest first."""
        return [rows.due_schedule_of(r) for r in self._all("schedule_due", (now, limit))]

    async def advance_schedule(
        self, seen: ScheduleState, next_due_at: int | None, fire: Fire | None = None
    ) -> Advance:
        """Move a state, and claim and insert a fire with it, in one transaction."""
        move = (next_due_at, seen.installation_id, seen.next_due_at,
                seen.installation_updated_at)
        with self._transaction() as db:
            if db.execute(Q["schedule_move" if fire is None else "schedule_move_active"],
                          move).rowcount == 0:
                return Advance.LOST
            if fire is None:
                return Advance.MOVED
            execution = fire.execution
            claim = (seen.installation_id, fire.due_at, execution.id, execution.created_at)
            if db.execute(Q["schedule_claim"], claim).rowcount == 0:
                return Advance.MOVED
            db.execute(Q["insert_execution"], rows.execution_params(execution))
        return Advance.FIRED

    async def list_schedules(self, team_id: str) -> list[ScheduleListing]:
        """A team's active schedules."""
        return [rows.schedule_listing_of(r) for r in self._all("schedule_list", (team_id,))]

    async def prune_schedule_claims(self, before: int, limit: int) -> int:
        """Delete a batch of old claims."""
        with self._transaction() as db:
            return db.execute(Q["schedule_claims_prune"], (before, limit)).rowcount

    # -- log search (GET /logs; store/log_search.py composes the SQL) ----------------------

    _log_search = LogSearchSql(Q, lambda values: orjson.dumps(list(values)).decode(),
                               hints=True)

    def _read_sql(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreError(f"log search failed: {exc}") from exc

    async def search_logs(self, search: LogSearch) -> LogPage:
        """A page of matching executions and their count (up to the cap)."""
        page, count = self._log_search.page(search), self._log_search.count(search)
        entries = [entry_of(r) for r in self._read_sql(page.sql, page.params)]
        (total,) = self._read_sql(count.sql, count.params)[0]
        return LogPage(entries, int(total))

    async def match_user_ids(self, team_id: str, text: str, limit: int) -> list[str]:
        """Users whose id, username or full name contains the text."""
        return [r[0] for r in self._all("log_search_match_users", (team_id, text, limit))]

    async def explain_log_search(self, search: LogSearch) -> list[str]:
        """EXPLAIN QUERY PLAN of the page and the count."""
        plans = []
        for statement in self._log_search.plan(search):
            depth: dict[int, int] = {0: -1}
            lines = []
            # Rows: (id, parent, unused, detail); a step is indented under its parent.
            for node, parent, _, detail in self._read_sql(f"EXPLAIN QUERY PLAN {statement.sql}",
                                                          statement.params):
                depth[node] = depth.get(parent, -1) + 1
                lines.append("  " * depth[node] + str(detail))
            plans.append("\n".join(lines))
        return plans

    # -- apps and credentials (apps.sql, credentials.sql; services/credentials.py) --------

    async def save_app(self, app: AppRecord) -> AppRecord:
        """Insert or update (by name) an app; as stored."""
        with self._transaction() as db:
            row = db.execute(Q["apps_upsert"], rows.app_params(app)).fetchone()
        return rows.app_of(row)

    async def get_app(self, team_id: str, name: str) -> AppRecord | None:
        """The team's app of this name."""
        row = self._one("apps_get", (team_id, name))
        return rows.app_of(row) if row else None

    async def list_apps(self, team_id: str) -> list[AppRecord]:
        """The team's apps, by name."""
        return [rows.app_of(r) for r in self._all("apps_list", (team_id,))]

    async def create_credential(self, credential: CredentialRecord) -> None:
        """Insert a credential."""
        self._write([("credentials_insert", rows.credential_params(credential))])

    async def list_credentials(self, team_id: str, user_id: str) -> list[CredentialRecord]:
        """The user's credentials, oldest first."""
        return [rows.credential_of(r)
                for r in self._all("credentials_list", (team_id, user_id))]

    async def credential_apps(self, team_id: str, ids: Sequence[str]
                              ) -> dict[str, tuple[str, str]]:
        """Of these credential ids, the team's: id -> (user id, app)."""
        return {r["id"]: (r["user_id"], r["app"])
                for r in self._all("credential_apps", (team_id, orjson.dumps(list(ids))))}

    async def delete_credential(self, team_id: str, user_id: str, credential_id: str) -> bool:
        """Delete one of the user's credentials."""
        with self._transaction() as db:
            cursor = db.execute(Q["credentials_delete"], (team_id, user_id, credential_id))
        return cursor.rowcount > 0

    async def run_credentials(
        self, team_id: str, user_id: str, installation_id: str
    ) -> tuple[list[str], list[CredentialRecord]]:
        """The installation's pinned ids and the user's credentials, newest first."""
        pinned = self._one("credentials_pinned", (team_id, installation_id))
        found = self._all("credentials_of_user_newest_first", (team_id, user_id))
        ids = orjson.loads(pinned[0]) if pinned is not None and pinned[0] else []
        return ids, [rows.credential_of(r) for r in found]

    async def pin_credentials(
        self, team_id: str, installation_id: str, credential_ids: Sequence[str]
    ) -> bool:
        """Pin the installation to these credentials."""
        value = orjson.dumps(list(credential_ids)).decode() if credential_ids else None
        with self._transaction() as db:
            cursor = db.execute(Q["credentials_pin"], (value, team_id, installation_id))
        return cursor.rowcount > 0

    async def sealed_batch(self, kind: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        """A batch of sealed values of ``kind``, by key."""
        found = self._all(f"rotate_{_sealed_kind(kind)}_batch", (after, limit))
        return [(r[0], r[1].encode() if isinstance(r[1], str) else bytes(r[1])) for r in found]

    async def reseal(self, kind: str, key: str, old: bytes, new: bytes) -> bool:
        """Replace a sealed value if it is still ``old``."""
        text = _sealed_kind(kind) != "triggers"
        with self._transaction() as db:
            cursor = db.execute(Q[f"rotate_{kind}_set"], (
                new.decode() if text else new, key, old.decode() if text else old))
        return cursor.rowcount > 0

    # -- OAuth connections (oauth.sql; services/oauth.py) ----------------------------------

    async def insert_oauth_state(self, team_id: str, state_hash: str, user_id: str, app: str,
                                 created_at: int, expires_at: int) -> None:
        """Remember a connect flow's state."""
        self._write([("oauth_state_insert",
                      (state_hash, team_id, user_id, app, created_at, expires_at))])

    async def take_oauth_state(self, state_hash: str) -> tuple[str, str, str, int] | None:
        """Delete the state; what it was for."""
        with self._transaction() as db:
            row = db.execute(Q["oauth_state_take"], (state_hash,)).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    async def purge_oauth_states(self, before: int, limit: int) -> int:
        """Delete expired states."""
        with self._transaction() as db:
            cursor = db.execute(Q["oauth_state_purge"], (before, limit))
        return cursor.rowcount

    async def get_oauth_redirect(self, team_id: str) -> str | None:
        """The team's OAuth redirect URL."""
        row = self._one("oauth_redirect_get", (team_id,))
        return None if row is None else row[0]

    async def set_oauth_redirect(self, team_id: str, url: str | None) -> bool:
        """Set the team's OAuth redirect URL."""
        with self._transaction() as db:
            cursor = db.execute(Q["oauth_redirect_set"], (url, team_id))
        return cursor.rowcount > 0

    async def get_credential(self, team_id: str, credential_id: str) -> CredentialRecord | None:
        """One of the team's credentials."""
        row = self._one("oauth_credential_get", (team_id, credential_id))
        return None if row is None else rows.credential_of(row)

    async def save_connected_credential(
        self, credential: CredentialRecord, replace_id: str | None, event: CredentialEvent
    ) -> bool:
        """Store a connect flow's tokens (replacing ``replace_id``'s) and the event."""
        c = credential
        with self._transaction() as db:
            if replace_id is None:
                db.execute(Q["credentials_insert"], rows.credential_params(c))
            elif db.execute(Q["oauth_credential_reconnect"], (
                    c.sealed, c.expires_at, c.updated_at, c.team_id, replace_id)
                    ).rowcount == 0:
                return False
            db.execute(Q["credential_event_insert"], rows.credential_event_params(event))
        return True

    async def claim_credential_refresh(self, credential_id: str, version: int, owner: str,
                                       until: int, now: int) -> bool:
        """Take the refresh lease."""
        with self._transaction() as db:
            cursor = db.execute(Q["oauth_refresh_claim"],
                                (owner, until, credential_id, version, now))
        return cursor.rowcount > 0

    async def credential_refreshed(self, credential_id: str, version: int, owner: str,
                                   sealed: str, expires_at: int | None, now: int,
                                   event: CredentialEvent | None = None) -> bool:
        """Write refreshed values under the lease and version."""
        with self._transaction() as db:
            cursor = db.execute(Q["oauth_refreshed"],
                                (sealed, expires_at, now, credential_id, version, owner))
            if cursor.rowcount and event is not None:
                db.execute(Q["credential_event_insert"], rows.credential_event_params(event))
        return cursor.rowcount > 0

    async def credential_refresh_refused(
        self, credential_id: str, version: int, owner: str, reason: str, blocked_until: int,
        now: int, event: CredentialEvent | None, notification: bytes | None,
    ) -> bool:
        """Mark needs_reconnect, with the event and notification."""
        with self._transaction() as db:
            cursor = db.execute(Q["oauth_refresh_refused"], (
                reason, now, blocked_until, credential_id, version, owner))
            if cursor.rowcount and event is not None:
                db.execute(Q["credential_event_insert"], rows.credential_event_params(event))
                if notification is not None:
                    db.execute(Q["credential_outbox_insert"], (
                        event.id, event.user_id, now, event.kind, notification, event.team_id))
        return cursor.rowcount > 0

    async def release_credential_refresh(self, credential_id: str, owner: str,
                                         blocked_until: int) -> None:
        """Free the refresh lease after a passing failure."""
        self._write([("oauth_refresh_release", (blocked_until, credential_id, owner))])

    async def add_credential_event(self, event: CredentialEvent) -> None:
        """Record a credential event."""
        self._write([("credential_event_insert", rows.credential_event_params(event))])

    async def list_credential_events(self, team_id: str, user_id: str | None,
                                     limit: int) -> list[CredentialEvent]:
        """Credential events, newest first."""
        return [rows.credential_event_of(r)
                for r in self._all("credential_events_list", (team_id, user_id, limit))]


    # -- headless installation (installation_config.sql; services/headless.py) -------------

    async def save_headless_installation(self, started: HeadlessInstallation) -> None:
        """Insert or replace (by id) a headless installation, keeping its creation time."""
        self._write([("headless_installation_upsert",
                      rows.headless_installation_params(started))])

    async def get_headless_installation(
        self, team_id: str, installation_id: str
    ) -> HeadlessInstallation | None:
        """The team's headless installation of this id."""
        row = self._one("headless_installation_get", (team_id, installation_id))
        return rows.headless_installation_of(row) if row else None

    async def installation_settings(
        self, team_id: str, installation_ids: Sequence[str]
    ) -> dict[str, InstallationSettings]:
        """Configured values and pinned credentials of live installations, by id."""
        if not installation_ids:
            return {}
        found = self._all("installation_settings",
                          (team_id, orjson.dumps(list(installation_ids)).decode()))
        return {r["id"]: rows.installation_settings_of(r) for r in found}

    async def configure_installations(
        self, team_id: str, changes: Sequence[ConfigChange], now: int
    ) -> int:
        """Write every change in one transaction; how many installations were written."""
        written = 0
        with self._transaction() as db:
            for change in changes:
                cursor = db.execute(Q["installation_configure"],
                                    rows.config_change_params(team_id, change, now))
                written += cursor.rowcount
        return written


    # -- bulk rerun jobs (reruns.sql; services/reruns.py) ----------------------------------

    @staticmethod
    def _selection(team_id: str, f: RerunFilter, limit: int) -> tuple[Any, ...]:
        return (team_id, f.status.value, f.since, f.until, f.workflow_id, f.user_id, f.error,
                f.block_id, limit)

    async def rerun_sources(
        self, team_id: str, selection: RerunFilter, limit: int
    ) -> list[RerunSource]:
        """The executions the filter selects, oldest first."""
        found = self._all("reruns_sources", self._selection(team_id, selection, limit))
        return [rows.rerun_source_of(r) for r in found]

    async def count_rerun_sources(self, team_id: str, selection: RerunFilter, cap: int) -> int:
        """How many executions the filter selects, up to ``cap``."""
        row = self._one("reruns_sources_count", self._selection(team_id, selection, cap))
        return int(row[0]) if row else 0

    async def create_rerun_job(self, job: RerunJob, execution_ids: Sequence[str]) -> None:
        """Insert the job and its items in one transaction."""
        with self._transaction() as db:
            db.execute(Q["reruns_job_insert"], rows.rerun_job_params(job))
            db.executemany(Q["reruns_item_insert"],
                           [(job.id, e, seq) for seq, e in enumerate(execution_ids)])

    async def get_rerun_job(self, team_id: str, job_id: str) -> RerunJob | None:
        """One of the team's jobs."""
        row = self._one("reruns_job_get", (team_id, job_id))
        return rows.rerun_job_of(row) if row else None

    async def list_rerun_jobs(
        self, team_id: str, before: str | None, limit: int
    ) -> list[RerunJob]:
        """The team's jobs, newest first."""
        return [rows.rerun_job_of(r)
                for r in self._all("reruns_job_list", (team_id, before, limit))]

    async def rerun_job_results(
        self, team_id: str, job_id: str, offset: int, limit: int
    ) -> list[RerunItem]:
        """A page of the job's items."""
        return [rows.rerun_item_of(r)
                for r in self._all("reruns_results", (team_id, job_id, offset, limit))]

    async def claim_rerun_job(self, owner: str, now: int, lease_until: int) -> RerunJob | None:
        """Lease a job (one process runs jobs on a SQLite file: no lock to skip)."""
        with self._transaction() as db:
            found = db.execute(Q["reruns_job_claim"], (owner, lease_until, now)).fetchall()
        return rows.rerun_job_of(found[0]) if found else None

    async def pending_rerun_items(
        self, job: RerunJob, key_prefix: str, limit: int
    ) -> list[PendingItem]:
        """The job's next pending items."""
        found = self._all("reruns_items_pending",
                          (job.id, job.team_id, f"{key_prefix}{job.id}:", limit))
        return [PendingItem(r[0], r[1]) for r in found]

    async def finish_rerun_items(
        self, job_id: str, results: Sequence[ItemResult], now: int
    ) -> RerunJob | None:
        """Record results, recount, end the job when nothing is pending."""
        with self._transaction() as db:
            db.executemany(Q["reruns_item_finish"], [
                (r.state.value, r.new_execution_id, r.error, job_id, r.execution_id)
                for r in results])
            db.execute(Q["reruns_job_recount"], (job_id,))
            db.execute(Q["reruns_job_complete"], (job_id, now)).fetchall()
            row = db.execute(Q["reruns_job_get_any"], (job_id,)).fetchone()
        return rows.rerun_job_of(row) if row else None

    async def cancel_rerun_job(self, team_id: str, job_id: str, now: int) -> RerunJob | None:
        """Cancel the job's pending items and the job."""
        with self._transaction() as db:
            row = db.execute(Q["reruns_job_get"], (team_id, job_id)).fetchone()
            if row is None:
                return None
            if db.execute(Q["reruns_job_cancel"], (now, team_id, job_id)).rowcount:
                db.execute(Q["reruns_items_cancel"], (job_id,))
                db.execute(Q["reruns_job_recount"], (job_id,))
            row = db.execute(Q["reruns_job_get"], (team_id, job_id)).fetchone()
        return rows.rerun_job_of(row)

    async def release_rerun_jobs(self, owner: str) -> int:
        """Give back the owner's job leases."""
        with self._transaction() as db:
            return db.execute(Q["reruns_release"], (owner,)).rowcount

    async def purge_rerun_jobs(self, finished_before: int, limit: int) -> int:
        """Delete a batch of ended jobs with their items."""
        ids = [r[0] for r in self._all("reruns_purge_batch", (finished_before, limit))]
        if ids:
            encoded = orjson.dumps(ids)
            self._write([("reruns_purge_items", (encoded,)), ("reruns_purge_jobs", (encoded,))])
        return len(ids)

def _sealed_kind(kind: str) -> str:
    """A kind of sealed value ``Store.sealed_batch`` knows (checked: it names a query)."""
    if kind not in ("credentials", "error_stream", "triggers", "installations"):
        raise ValueError(f"no sealed values of kind {kind!r}")
    return kind
