"""The manager layer the API, CLI and dashboard all call (the store is below it)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from reflow.clock import Clock, SystemClock
from reflow.dispatch import Dispatch, LocalDispatch, QueuedDispatch, Waiters
from reflow.domain.executions import ExecutionRecord
from reflow.engine import Engine
from reflow.executor import Executor, InProcessExecutor, Job, JobBook
from reflow.executor.engine import build_engine, close_engine
from reflow.executor.process import ProcessExecutor
from reflow.periodic import Periodic
from reflow.scheduler import Scheduler
from reflow.services.apps import AppService
from reflow.services.credentials import CredentialService
from reflow.services.error_stream import ErrorStreamService
from reflow.services.headless import HeadlessService
from reflow.services.integrations import IntegrationService
from reflow.services.keys import KeyService
from reflow.services.logs import LogService
from reflow.services.oauth import OAuthService
from reflow.services.reruns import PERIODIC_NAME as RERUNS_PERIODIC
from reflow.services.reruns import RerunJobService
from reflow.services.retention import RetentionService
from reflow.services.runs import RunService
from reflow.services.teams import TeamService
from reflow.services.tokens import TokenService
from reflow.services.users import UserService
from reflow.services.webhooks import WebhookService
from reflow.services.workflows import WorkflowService
from reflow.settings import Environment, Settings
from reflow.store.backends import open_store, start_runner
from reflow.store.base import Store
from reflow.worker import Worker, new_owner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """What ``serve`` tells the user about access at start."""

    team_id: str
    key: str | None  # a raw key that works, when reflow knows one
    created: bool  # True when the database was new and the first team was made now


# The retention purge's name in ``Reflow.periodic``.
PURGE_PERIODIC = "retention purge"


class Reflow:
    """One process's reflow: settings, store, engine, worker and the services over them."""

    def __init__(self, settings: Settings, store: Store, clock: Clock | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.periodic = Periodic(self.clock)
        # Finished executions past their window (services/retention.py).
        self.retention = RetentionService(store, settings.log_retention, self.clock)
        self.periodic.add(PURGE_PERIODIC, settings.purge_interval, self.retention.purge_once)
        self.keys = KeyService(store)
        self.teams = TeamService(store, self.keys, settings.expression_env)
        self.users = UserService(store)
        self.tokens = TokenService.from_settings(self.users, settings, self.clock)
        self.workflows = WorkflowService(store, self.users, self.clock)
        self.integrations = IntegrationService(store, self.users, self.workflows)
        self.apps = AppService(store, self.clock)
        # OAuth apps' client ids and secrets are {env: REFLOW_OAUTH_...} references
        # (docs/credentials.md "OAuth").
        oauth_env = {name: value.get_secret_value()
                     for name, value in settings.oauth_env.items()}
        # Failures and credential notifications go to the team's error stream, delivered
        # by its periodic job: woken at once when one is committed here.
        self.error_stream = ErrorStreamService(
            store, self.workflows, settings, self.clock, settings.secret_keyring(),
            wake=lambda: self.periodic.wake("error stream"))
        self.periodic.add("error stream", settings.error_stream_interval,
                          self.error_stream.deliver_due)
        self.oauth = OAuthService(store, self.users, self.apps, settings,
                                  settings.secret_keyring(), self.clock, oauth_env,
                                  notified=self.error_stream.failure_committed)
        self.credentials = CredentialService(store, self.users, self.apps,
                                             settings.secret_keyring(), self.clock,
                                             oauth=self.oauth)
        self.periodic.add("oauth states purge", settings.purge_interval,
                          self.oauth.purge_states)
        self.headless = HeadlessService(store, self.workflows, self.integrations,
                                        settings.secret_keyring(), self.clock,
                                        public_url=settings.public_base_url)
        # A target's 401 to an OAuth token: renewed here, where the database is.
        book = JobBook(store, new_owner(), settings.lease_seconds, self.clock,
                       on_failed=self.error_stream.failure_committed,
                       renew=self.credentials.renew)
        # The engine runs in supervised executor processes, or here when there are none.
        self.engine: Engine | None = None
        executor: Executor
        if settings.executor_processes:
            executor = ProcessExecutor(settings, book, processes=settings.executor_processes,
                                       capacity=settings.worker_concurrency)
        else:
            self.engine = build_engine(settings)
            executor = InProcessExecutor(self.engine, book)
        self.worker = Worker(
            book, executor, self._prepare, concurrency=settings.worker_concurrency,
            poll_interval=settings.worker_poll_interval, max_resumes=settings.max_resumes,
        )
        self.waiters = Waiters()
        # Until this process runs executions (``start``), new ones are queued for a worker.
        self.queued = QueuedDispatch(store, self.waiters)
        self.runs = RunService(store, self.workflows, self.queued,
                               teams=self.teams, log_retention=settings.log_retention,
                               sealing_keys=settings.secret_keyring(), clock=self.clock,
                               credentials=self.credentials, headless=self.headless)
        self.logs = LogService(store, self.workflows, self.clock)
        self.webhooks = WebhookService(store, self.workflows, self.runs, self.teams,
                                       public_url=settings.public_base_url, clock=self.clock)
        # Schedule triggers: every process runs the scheduler; the claims make a due
        # time fire once however many do (docs/schedules.md).
        self.scheduler = Scheduler(store, self.workflows, self.clock,
                                   interval=settings.scheduler_interval,
                                   claim_retention=settings.log_retention,
                                   on_fired=self._scheduled, headless=self.headless)
        self.periodic.add("schedules", settings.scheduler_interval, self.scheduler.tick)
        # Bulk rerun jobs: every process runs them, one job each at a time under a lease
        # (docs/api.md "Bulk rerun"); an idle runner looks for jobs at the poll interval.
        self.reruns = RerunJobService(
            store, self.workflows, self.users, self.runs, self.clock, owner=book.owner,
            rate=settings.rerun_rate, lease_seconds=settings.lease_seconds,
            retention=settings.log_retention, busy=self._busy)
        self.periodic.add(RERUNS_PERIODIC, settings.worker_poll_interval, self.reruns.tick)
        self.reruns.wake = lambda: self.periodic.wake(RERUNS_PERIODIC)
        self.running = False  # this process runs executions (its worker is started)
        # Executions a `delay` suspended are queued again when due, by whichever process
        # looks first (docs/workflows.md "Loops and delays").
        self.periodic.add("wake waiting", settings.worker_poll_interval, self.wake_waiting)

    def _scheduled(self) -> None:
        """Schedules fired queued executions: run them now if this process runs any."""
        if self.running:
            self.worker.wake()

    async def wake_waiting(self) -> int:
        """Queue the waiting executions whose time has come, and run them here if this
        process runs executions; how many."""
        woken, most = 0, 1000  # queued again per statement (a short write transaction)
        while batch := await self.store.wake_waiting(self.clock.now_ms(), most):
            woken += batch
            if batch < most:
                break
        if woken:
            self._scheduled()
        return woken

    def _busy(self) -> bool:
        """This process runs executions and an eighth of its slots are taken: bulk reruns
        wait. A new run then queues behind a few reruns at most in the executor processes
        (with half the slots, new runs' p99 during a job was 3.6x idle; with an eighth,
        2-2.9x: bench.reruns, docs/benchmarks.md)."""
        return self.running and 8 * len(self.worker.running) >= self.worker.concurrency

    async def _prepare(self, record: ExecutionRecord) -> Job:
        # The worker is built before the run service it needs; resolve it late.
        return await self.runs.prepare(record)

    @classmethod
    def open(cls, settings: Settings, clock: Clock | None = None) -> Reflow:
        """Open the database (which must be migrated: ``reflow db upgrade``)."""
        return cls(settings, open_store(settings), clock)

    @property
    def dispatch(self) -> Dispatch:
        """Where new executions go: this process's worker once it runs one, else the queue."""
        return self.runs.dispatch

    async def start(self, *, worker: bool = True, api: bool = True) -> None:
        """Start background work: hear other processes' hints, purge old logs, and with
        ``worker`` run executions here (resuming abandoned ones).

        Without ``worker`` (``serve --no-worker``) new executions are queued for worker
        processes. SQLite allows one process that runs executions per file; a second one
        gets SettingsError. Without ``api`` (``reflow worker``) this process authenticates
        no one and waits for no run, so it hears only the ``queued`` hint.
        """
        if worker:
            released = await start_runner(self.store)
            if released:
                log.info("resuming %d unfinished executions", released)
            await self.worker.start()
            self.worker.wake()
            self.runs.dispatch = LocalDispatch(self.worker, self.waiters)
            self.running = True
        # Each hint heard costs work per execution here and in the database: only those
        # acted on (bench --postgres: every worker hearing every finished execution).
        hints = [*(["queued"] if worker else []), *(["finished", "revoked"] if api else [])]
        await self.store.listen(self._hint, hints)
        self.periodic.start()

    def _hint(self, channel: str, payload: str) -> None:
        """A hint from another process (PostgreSQL NOTIFY): act on it now, not at a poll."""
        if channel == "queued":
            if self.running:
                self.worker.wake()
        elif channel == "finished":
            self.waiters.hint(channel, payload)
        elif channel == "revoked":
            self.keys.forget(payload)

    async def close(self) -> None:
        """Stop background work, finish or release running executions, close everything."""
        await self.periodic.stop()
        await self.reruns.release()
        if self.running:
            await self.worker.stop(self.settings.shutdown_grace)
        if self.engine is not None:
            await close_engine(self.engine)
        await self.error_stream.aclose()
        await self.oauth.aclose()
        await self.store.close()

    async def purge_once(self) -> int:
        """Delete finished executions past their retention (services/retention.py), after
        the periodic purge in progress if any; how many."""
        return await self.periodic.run_once(PURGE_PERIODIC)

    async def bootstrap(self) -> Bootstrap:
        """Make the first team and key on a new database; find a key to show otherwise."""
        settings = self.settings
        key_file = settings.dev_key_file
        secret = settings.bootstrap_key
        bootstrap_key = secret.get_secret_value() if secret else None
        team = await self.keys.first_team()
        if team is None:
            new_team = await self.keys.create_first_team("default")
            if new_team is not None:
                created = await self.keys.create_key(new_team, "bootstrap", bootstrap_key)
                if settings.env is Environment.DEV:
                    _write_private(key_file, created.raw)
                return Bootstrap(new_team.id, created.raw, True)
            # Another process bootstrapping this new database made it first.
            team = await self.keys.team(None)
        saved = _read(key_file) if settings.env is Environment.DEV else None
        for candidate in (bootstrap_key, saved):
            if candidate and await self.keys.is_valid(candidate):
                return Bootstrap(team.id, candidate, False)
        if settings.env is Environment.DEV:
            # The saved key is gone (file deleted or key revoked): make one the user can use.
            created = await self.keys.create_key(team, "dev")
            _write_private(key_file, created.raw)
            return Bootstrap(team.id, created.raw, False)
        return Bootstrap(team.id, None, False)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _write_private(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
