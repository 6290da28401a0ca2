"""What ``reflow serve`` and ``reflow worker`` run once started: the server or worker, its
signals, the garbage collector's tuning and the banner."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import orjson
import uvicorn

from reflow.cli.common import _shown_url
from reflow.cli.files import AppliedFile, apply_files
from reflow.domain.definitions import TriggerType
from reflow.domain.records import Team, User
from reflow.errors import DefinitionInvalid, NotFound, SettingsError
from reflow.services import Bootstrap, Reflow
from reflow.settings import CURRENT_API_VERSION, Environment, Settings

log = logging.getLogger("reflow.serve")


_DEMO_WORKFLOW = "order summary"


async def _work(settings: Settings) -> None:
    reflow = Reflow.open(settings)
    try:
        await reflow.store.ping()
        await reflow.start(worker=True, api=False)
        log.info("worker %s runs executions from %s (concurrency %d); SIGTERM stops it",
                 reflow.worker.owner, _shown_url(settings.database_url),
                 settings.worker_concurrency)
        click.echo(f"reflow worker running: {reflow.worker.owner}")
        if settings.worker_metrics_port is None:
            await _until_signalled()
        else:
            await _serve_operations(reflow, settings.host, settings.worker_metrics_port)
        log.info("stopping: no new claims; running executions get %gs to finish",
                 settings.shutdown_grace)
    finally:
        await reflow.close()


async def _serve_operations(reflow: Reflow, host: str, port: int) -> None:
    """Serve /healthz, /readyz and /metrics until SIGTERM or SIGINT (uvicorn takes both)."""
    from reflow.api import create_operations_app

    config = uvicorn.Config(create_operations_app(reflow), host=host, port=port,
                            loop="none", lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    try:
        with _signals_end_serving():
            await server.serve()
    except SystemExit:  # uvicorn exits when it cannot listen; it logged why
        raise SettingsError(f"cannot serve the worker's metrics on {host}:{port} "
                            "(see the log above)") from None


async def _until_signalled() -> None:
    """Return on the first SIGTERM or SIGINT (the main thread's loop handles both)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve(
    settings: Settings, apply_paths: Sequence[str], demo_user: str | None,
    demo_credentials: Mapping[str, Mapping[str, str]], *, worker: bool
) -> None:
    # Imported here: FastAPI costs every other command a noticeable start-up delay.
    from reflow.api import create_app
    from reflow.api.server import build_server

    reflow = Reflow.open(settings)
    try:
        # Started here rather than by the app's lifespan: a second server on the same
        # SQLite database then fails as a ReflowError (exit 3), before anything is written.
        await reflow.start(worker=worker)
        boot = await reflow.bootstrap()
        team = await reflow.keys.team(boot.team_id)
        applied = await apply_files(reflow, team, apply_paths)
        if applied.problems:
            raise DefinitionInvalid(applied.problems)
        done = applied.workflows
        user = (await _demo_user(reflow, team, demo_user, done, demo_credentials)
                if demo_user else None)
        server = build_server(create_app(reflow, manage=False), settings)
        _tune_garbage_collector()
        banner = asyncio.create_task(_announce(server, Banner(settings, boot, done, user)))
        try:
            with _signals_end_serving():
                await server.serve()
        except SystemExit:  # uvicorn exits when it cannot listen; it logged why
            raise SettingsError(f"cannot serve on {settings.host}:{settings.port} "
                                "(see the log above)") from None
        finally:
            banner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await banner
    finally:
        await reflow.close()


def _command() -> str:
    # How the user can type this command again: `.venv/bin/reflow` after `make run`.
    invoked = sys.argv[0] if sys.argv else ""
    if invoked.endswith("/reflow") and "/" in invoked:
        with contextlib.suppress(ValueError):
            return shlex.quote(str(Path(invoked).resolve().relative_to(Path.cwd())))
    return "reflow"


def _tune_garbage_collector() -> None:
    # Everything loaded so far lives as long as the process: keep the collector off it,
    # and collect the young generation less often (each run allocates many small objects,
    # almost none of them in cycles). Measured: GC was ~10% of the server's CPU under load.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def _demo_user(
    reflow: Reflow, team: Team, username: str, done: Sequence[AppliedFile],
    credentials: Mapping[str, Mapping[str, str]],
) -> User:
    try:
        user = await reflow.users.get(team, username)
    except NotFound:
        user = await reflow.users.create(team, username, None)
    for item in done:
        workflow_id = item.applied.workflow.id
        await reflow.workflows.activate(team, user.id, workflow_id)
        # The demo user always runs what was just applied (an edited example included).
        await reflow.workflows.upgrade(team, user.id, workflow_id)
    for app, values in credentials.items():
        credential, created = await reflow.credentials.ensure(team, user.id, app, values)
        if not created:  # a new one is logged where it is created
            log.info("demo user %s: credential %s for app %s kept (same values)",
                     user.username, credential.id, app)
    return user


@contextlib.contextmanager
def _signals_end_serving() -> Iterator[None]:
    """While serving, SIGINT/SIGTERM only stop the server (then reflow exits 0).

    uvicorn handles them during serve() and raises the signal again once it returns, so
    the previous handler runs after the graceful shutdown: that handler must do nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: None)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True, slots=True)
class Banner:
    """What ``serve`` prints once it listens."""

    settings: Settings
    boot: Bootstrap
    applied: Sequence[AppliedFile]
    user: User | None

    @property
    def base_url(self) -> str:
        """The URL a client on this machine calls (a wildcard host becomes loopback)."""
        host = self.settings.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.settings.port}"

    def demo(self) -> AppliedFile | None:
        """The applied workflow the curl runs: api or webhook, "Order summary" first."""
        runnable = [a for a in self.applied
                    if a.definition.trigger.type in (TriggerType.API, TriggerType.WEBHOOK)]
        named = [a for a in runnable if _DEMO_WORKFLOW in a.definition.name.lower()]
        candidates = named or runnable
        return candidates[0] if candidates else None

    def lines(self) -> list[str]:
        """The banner text."""
        base = self.base_url
        # stdout ends up in a production deployment's logs: a key is printed in dev only.
        dev = self.settings.env is Environment.DEV
        key = self.boot.key if dev else None
        out = [f"reflow is serving {base}", ""]
        if key is not None:
            out.append(f"  API key:  {key}")
        elif not dev:
            out += ["  API key:  not printed in production; create one with:",
                    f"            {_command()} keys create --name NAME"]
        else:
            out += ["  API key:  not shown (it was printed when this database was created);",
                    f"            make another with: {_command()} keys create --name NAME"]
        demo = self.demo()
        logs_target = shlex.quote(demo.definition.name) if demo else "WORKFLOW"
        out += [f"  docs:     {base}/docs", f"  logs:     {_command()} logs {logs_target}"
                + self._database_flag()]
        if demo is not None:
            out += ["", *self._curl(demo, key)]
        elif not self.applied:
            out += ["", "Serve with --apply FILE --demo-user NAME for a ready-to-run curl."]
        return out

    def _database_flag(self) -> str:
        url = self.settings.database_url
        if url == Settings.model_fields["database_url"].default:
            return ""
        if _shown_url(url) != url:  # it holds a password: never print it
            return ' --database-url "$REFLOW_DATABASE_URL"'
        return f" --database-url {shlex.quote(url)}"

    def _curl(self, demo: AppliedFile, key: str | None) -> list[str]:
        user = self.user.username if self.user else "USER_ID"
        body = orjson.dumps({
            "workflowName": demo.definition.name,
            "userId": user,
            "data": demo.definition.trigger.schema or {},
        }).decode()
        header = f'Run "{demo.definition.name}" for user {user} and print its output:'
        if self.user is None:
            header += " (activate it for a user first: reflow workflows activate)"
        url = f"{self.base_url}/run/workflow?wait=10"
        headers = (f"authorization: bearer {key or 'API_KEY'}",
                   f"x-api-version: {CURRENT_API_VERSION}", "content-type: application/json")
        return [
            header,
            f"  curl -sS -X POST {shlex.quote(url)} \\",
            *(f"    -H {shlex.quote(h)} \\" for h in headers),
            f"    -d {shlex.quote(body)}",
        ]


async def _announce(server: uvicorn.Server, banner: Banner) -> None:
    """Print the banner once uvicorn listens (this task is cancelled if it never does)."""
    while not server.started:
        await asyncio.sleep(0.05)
    click.echo("\n".join(banner.lines()))
    sys.stdout.flush()
