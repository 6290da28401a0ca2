"""The SQLite store's base: the connection, its runner lock and WAL checkpointer,
query and transaction helpers, and group commit; one mixin per resource builds on it."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from reflow.errors import Conflict, LeaseLost, SettingsError, StoreError
from reflow.store.queries import load_queries, statement_runs
from reflow.store.revisions import schema_problem

log = logging.getLogger("reflow.store.sqlite")  # the package's name, as before the split
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
            busy, restarted, _ = db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        finally:
            self._restarting.clear()
        if not busy:
            self._restarted_at, self._backoff = restarted, 0
            self._reset_pending = True
            return wait
        if not self._backoff:
            # The size the passive look saw: the busy RESTART's own count may be of a WAL
            # the writer has just begun again from its start.
            log.warning("the WAL holds %d MiB and cannot start over: a reader keeps an old "
                        "snapshot open (a long query, or another process)", size >> 20)
        self._backoff = min(2 * self._backoff or 1, _MAX_RESTART_BACKOFF)
        self._skip = self._backoff
        return self._interval

    def stop(self) -> None:
        """Checkpoint once more and end the thread."""
        self._stopping = True
        self._wake.set()
        self.join(10)


class _SqliteBase:
    """The connection and helpers every resource mixin of SqliteStore uses."""

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

    async def ping(self) -> None:
        """Raise StoreError unless the database answers at the migrations' head."""
        row = self._one("schema_version", ())
        problem = schema_problem(None if row is None else row[0])
        if problem is not None:
            raise StoreError(problem)

    def _expire_leases(self) -> int:
        """Every lease's expiry to now, executions' and bulk rerun jobs': their owners died
        (the runner lock says so). How many executions."""
        self._execute("expire_rerun_job_leases")
        return self._execute("expire_leases").rowcount

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
