"""What the API-level tests share: the test key, the order-summary workflow, and helpers.

Imported as ``from support import ...``: pytest puts ``tests/`` on ``sys.path`` when it
loads ``tests/conftest.py``, under ``pytest`` and ``python -m pytest`` alike. Constants and
helpers live here rather than in a conftest.py, because ``from conftest import`` picks
whichever of the several conftest modules pytest loaded last.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import httpx
import orjson
from fastapi.testclient import TestClient

from reflow.api import create_app
from reflow.clock import ManualClock
from reflow.services import Reflow
from reflow.settings import Settings
from reflow.store.migrate import upgrade

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# The shop app's key in the examples: `make run` starts examples/shop.py with it and gives
# the demo user a credential holding it (examples/README.md).
SHOP_API_KEY = "dev-shop-key"
API_VERSION = "2025-09"
TEST_KEY = "rf_test_key_0123456789abcdef"
# REFLOW_SECRET_KEY of the tests: a fixed Fernet key (32 bytes, URL-safe base64).
TEST_SECRET_KEY = "cmVmbG93LXRlc3Qtc2VjcmV0LWtleS0zMi1ieXRlcyE="

# A workflow equal to the benchmark's: label upper-cased and counted, values summed.
ORDER_SUMMARY: dict[str, Any] = {
    "name": "Order summary",
    "trigger": {"type": "api"},
    "blocks": [
        {"id": "label", "type": "transform", "with": {"value": {
            "label_upper": "{{ $uppercase(trigger.data.label) }}",
            "value_count": "{{ $count(trigger.data.values) }}",
        }}},
        {"id": "total", "type": "transform", "with": {"value": "{{ $sum(trigger.data.values) }}"}},
        {"id": "done", "type": "respond", "with": {"body": {
            "label_upper": "{{ label.label_upper }}",
            "value_count": "{{ label.value_count }}",
            "total": "{{ total }}",
        }}},
    ],
}
# ORDER_SUMMARY's second version: same name, an answer that shows which version ran.
ORDER_SUMMARY_V2: dict[str, Any] = {**ORDER_SUMMARY, "blocks": [
    {"id": "done", "type": "respond", "with": {"body": {"version": 2}}},
]}
ORDER_DATA = {"label": "abc", "values": [1, 2, 3]}
# A chain of 10,000 of each operator kind: compiling it once crashed the process (issue 5).
LONG_CHAINS = {
    "+": "1" + " + 1" * 10_000,
    ".": "a" + ".a" * 10_000,
    "and": "true" + " and true" * 10_000,
    "&": '"x"' + ' & "x"' * 10_000,
    "~>": "1" + " ~> $abs" * 10_000,
    "[0]": "a" + "[0]" * 10_000,
}
ORDER_OUTPUT = {"label_upper": "ABC", "value_count": 3, "total": 6}


@dataclass(frozen=True)
class SlowTarget:
    """A local HTTP endpoint whose answers wait until ``release`` is set."""

    url: str
    release: threading.Event

    def workflow(self) -> dict[str, Any]:
        """A workflow whose http block waits on this target, then responds with its body."""
        return {
            "name": "Slow fetch",
            "trigger": {"type": "api"},
            "blocks": [
                {"id": "fetch", "type": "http", "with": {"method": "GET", "url": self.url}},
                {"id": "done", "type": "respond", "with": {"body": "{{ fetch.body }}"}},
            ],
        }


def execution_log(client: TestClient, execution_id: str) -> dict[str, Any]:
    """``GET /logs/{id}``'s data (asserting a 200)."""
    response = client.get(f"/logs/{execution_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def wait_finished(client: TestClient, execution_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Poll ``GET /logs/{id}`` until the execution finished (bounded); its ``data``."""
    deadline = time.monotonic() + timeout
    for _ in range(2000):
        data = execution_log(client, execution_id)
        if data["finished"] or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert data["finished"], f"execution {execution_id} still {data['status']}"
    return data


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` on the event loop until it holds; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition still false after the deadline"
        await asyncio.sleep(0.005)


def json_handler(
    answer: Callable[[BaseHTTPRequestHandler], None], body: bytes = b'{"ok": true}',
    headers: Mapping[str, str] | None = None,
) -> type[BaseHTTPRequestHandler]:
    """A quiet request handler: ``answer`` runs for each GET and POST, then ``body`` goes
    back as JSON with status 200 (and ``headers``, e.g. a Set-Cookie)."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            answer(self)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _reply

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    return Handler


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of resumed executions calling at
    # once overflowed it, and the dropped handshakes came back as connection resets.
    request_queue_size = 128


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 (free port) for the block; yields its base URL."""
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_serve(
    args: Sequence[str], env: Mapping[str, str], port: int, log: IO[bytes], timeout: float = 30
) -> subprocess.Popen[bytes]:
    """Start a real ``reflow serve ARGS`` (``env`` over this environment) and wait, bounded,
    until ``GET /health`` answers on 127.0.0.1:``port``; its stderr goes to ``log``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "reflow", "serve", *args],
        env={**os.environ, "REFLOW_PORT": str(port), **env},
        stdout=subprocess.DEVNULL, stderr=log,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, Path(log.name).read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"reflow serve did not come up in {timeout}s")


def stop_serve(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Stop a ``start_serve`` process gracefully (SIGTERM), killing it if it hangs."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def start_worker(
    env: Mapping[str, str], out: Path, log: IO[bytes], *args: str
) -> tuple[subprocess.Popen[bytes], str]:
    """A real ``reflow worker ARGS`` (``env`` over this environment; stdout to ``out``,
    stderr to ``log``), waited for (bounded) until it says it runs; with the lease owner
    name it said."""
    with out.open("wb") as stdout:
        process = subprocess.Popen([sys.executable, "-m", "reflow", "worker", *args],
                                   env={**os.environ, **env}, stdout=stdout, stderr=log)
    deadline = time.monotonic() + 30
    while b"reflow worker running: " not in (said := out.read_bytes()) or b"\n" not in said:
        assert process.poll() is None, Path(log.name).read_text()
        assert time.monotonic() < deadline, "reflow worker did not start in 30 s"
        time.sleep(0.05)
    owner = said.decode().split("reflow worker running: ", 1)[1].split("\n", 1)[0].strip()
    return process, owner


def example_shop() -> ModuleType:
    """examples/shop.py as a module (examples/ is not a package: users run it as a script)."""
    spec = importlib.util.spec_from_file_location("reflow_example_shop", EXAMPLES / "shop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def heavy_workflow(value: str, name: str) -> dict[str, Any]:
    """A workflow whose block ``heavy`` evaluates ``value`` after a first pure block."""
    return {"name": name, "trigger": {"type": "api"}, "blocks": [
        {"id": "prepare", "type": "transform", "with": {"value": 1}},
        {"id": "heavy", "type": "transform", "with": {"value": value}},
        {"id": "done", "type": "respond", "with": {"body": "{{ heavy }}"}},
    ]}


def start_run(client: TestClient, workflow_id: str, user_id: str,
              headers: dict[str, str] | None = None) -> str:
    """Start a run with ``ORDER_DATA`` (no wait); its executionId."""
    response = client.post("/run/workflow", json={
        "workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA}, headers=headers)
    assert response.status_code == 200, response.text
    execution_id: str = response.json()["executionId"]
    return execution_id


def other_team_runs_meanwhile(client: TestClient, headers: dict[str, str]) -> None:
    """Another team defines, installs and runs the order summary to its end, with waiting."""
    created = client.post("/workflows", json=ORDER_SUMMARY, headers=headers)
    assert created.status_code == 200, created.text
    user = client.post("/users", json={"username": "bystander@example.com"}, headers=headers)
    assert user.status_code == 200, user.text
    ids = {"workflowId": created.json()["workflowId"], "userId": user.json()["userId"]}
    assert client.put("/workflows/activate", json=ids, headers=headers).status_code == 200
    response = client.post("/run/workflow", params={"wait": 30},
                           json={**ids, "data": ORDER_DATA}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    assert response.json()["output"] == ORDER_OUTPUT


class CallCounter:
    """A side-effect target's count of calls per Idempotency-Key, safe across threads.

    ``handler(delay)`` is a ``json_handler`` answer that counts, then sleeps ``delay``
    seconds (long enough that a kill lands while calls are in flight).
    """

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def handler(self, delay: float) -> Callable[[BaseHTTPRequestHandler], None]:
        """The answer function for ``json_handler``."""

        def count(request: BaseHTTPRequestHandler) -> None:
            request.rfile.read(int(request.headers.get("content-length", 0)))
            key = request.headers.get("idempotency-key", "")
            with self._lock:
                self.calls[key] = self.calls.get(key, 0) + 1
            time.sleep(delay)

        return count

    def total(self) -> int:
        """Calls counted so far."""
        with self._lock:
            return sum(self.calls.values())

    def snapshot(self) -> dict[str, int]:
        """The counts as they are now."""
        with self._lock:
            return dict(self.calls)


def side_effect_workflow(path: Path, name: str, target: str) -> None:
    """Write a workflow ``name`` whose ``call`` block POSTs to ``target``/side-effect
    between two pure blocks, answering ``{"n": trigger.data.n}``."""
    path.write_text(json.dumps({
        "name": name,
        "trigger": {"type": "api"},
        "blocks": [
            {"id": "prepare", "type": "transform", "with": {"value": "{{ trigger.data.n * 2 }}"}},
            {"id": "call", "type": "http", "with": {
                "method": "POST", "url": f"{target}/side-effect", "json": {"n": "{{ prepare }}"},
            }},
            {"id": "after", "type": "transform", "with": {"value": "{{ call.body.ok }}"}},
            {"id": "done", "type": "respond", "with": {"body": {"n": "{{ trigger.data.n }}"}}},
        ],
    }))


def wait_all_finished(
    base: str, headers: Mapping[str, str], ids: Sequence[str], timeout: float
) -> dict[str, Any]:
    """Each execution's detail (``GET /logs/{id}``) once final; fails if some never finish."""
    pending, details = set(ids), {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for execution_id in list(pending):
            data = httpx.get(f"{base}/logs/{execution_id}", headers=headers).json()["data"]
            if data["finished"]:
                details[execution_id] = data
                pending.discard(execution_id)
        time.sleep(0.1)
    assert not pending, f"{len(pending)} acknowledged executions never finished"
    return details


@dataclass
class Received:
    """One POST a Receiver got."""

    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """A local endpoint that records each POST and answers ``status`` (after ``release``
    is set, when ``hang``)."""

    url: str = ""
    status: int = 200
    hang: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    received: list[Received] = field(default_factory=list)


@contextlib.contextmanager
def receiving(port: int = 0) -> Iterator[Receiver]:
    """A local 127.0.0.1 endpoint that records every POST (error streams, webhooks out)."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()},
                                              body))
            receiver.arrived.set()
            if receiver.hang:
                receiver.release.wait(10)
            self.send_response(receiver.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    # A short poll: shutdown() waits for it (the default 0.5 s would end each test).
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/errors"
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def serving_reflow(settings: Settings, clock: ManualClock) -> Iterator[tuple[Reflow, TestClient]]:
    """A started Reflow on ``settings``' database and a client to it, closed on exit: a
    process of its own, for tests that restart one on the same database."""
    if settings.database_url.startswith("sqlite:///"):
        upgrade(settings.database_url)
    reflow = Reflow.open(settings, clock)
    headers = {"authorization": f"bearer {TEST_KEY}", "x-api-version": API_VERSION}
    with TestClient(create_app(reflow), headers=headers,
                    raise_server_exceptions=False) as client:
        portal = client.portal
        assert portal is not None
        portal.call(reflow.bootstrap)
        yield reflow, client


# The API key a test's real ``reflow serve`` is started with (REFLOW_BOOTSTRAP_KEY) and
# the headers that send it.
SERVE_KEY = "rf_e2e_key_0123456789abcdef"
SERVE_HEADERS = {"authorization": f"bearer {SERVE_KEY}", "x-api-version": "2025-09"}


def sqlite_serve_env(folder: Path, key: str) -> dict[str, str]:
    """The environment of a real ``reflow serve`` on a SQLite file in ``folder`` that
    accepts ``key`` and may call targets on 127.0.0.1."""
    return {
        "REFLOW_DATABASE_URL": f"sqlite:///{folder / 'reflow.db'}",
        "REFLOW_BOOTSTRAP_KEY": key,
        "REFLOW_HTTP_ALLOW_NETWORKS": "127.0.0.0/8",
        "REFLOW_DEV_KEY_FILE": str(folder / "dev-key"),
        "REFLOW_SECRET_KEY": base64.urlsafe_b64encode(bytes(range(32))).decode(),
    }


@dataclass
class SqliteServe:
    """A real ``reflow serve ARGS`` on a SQLite file in ``folder`` (``sqlite_serve_env``
    plus ``env``), for tests that kill it and start it again on the same file and port;
    its stderr goes to ``folder``/serve.log."""

    folder: Path
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it and wait (bounded) until it answers."""
        with (self.folder / "serve.log").open("ab") as log:
            self.process = start_serve(
                self.args, {**sqlite_serve_env(self.folder, SERVE_KEY), **self.env},
                self.port, log)

    def kill(self) -> None:
        """SIGKILL: it dies without a chance to release or finish anything."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """Stop it gracefully."""
        assert self.process is not None
        stop_serve(self.process)
