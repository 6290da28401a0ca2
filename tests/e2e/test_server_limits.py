"""A real `reflow serve` with small limits: slow, oversized and surplus connections are cut
while normal requests go on being served; a database it cannot write is one clear line."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support import TEST_SECRET_KEY, free_port, start_serve, stop_serve

pytestmark = pytest.mark.e2e

KEY = "rf_e2e_limits_key_0123456789abcdef"
HEADERS = {"authorization": f"bearer {KEY}", "x-api-version": "2025-09"}
HEADER_LIMIT = 16 * 1024
TIMEOUT = 1.0  # the header, body and keep-alive timeouts of the limited server
SLOW_CLIENTS = 300
BOUND = 6  # the connection bound of the bounded server
# A timed-out connection is closed at its timeout; this covers a loaded machine.
SLACK = 5.0
RUN = {"workflowName": "Limits", "userId": "limits@example.com", "data": {}}


@dataclass(frozen=True)
class Server:
    """A serving reflow: where it listens and where its stderr goes."""

    port: int
    log: Path

    @property
    def base(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"


def _serve(tmp: Path, limits: dict[str, str]) -> Iterator[Server]:
    workflow = tmp / "limits.json"
    workflow.write_text(json.dumps({
        "name": "Limits",
        "trigger": {"type": "api"},
        "blocks": [{"id": "done", "type": "respond", "with": {"body": {"ok": True}}}],
    }))
    env = {
        "REFLOW_DATABASE_URL": f"sqlite:///{tmp / 'reflow.db'}",
        "REFLOW_BOOTSTRAP_KEY": KEY,
        "REFLOW_DEV_KEY_FILE": str(tmp / "dev-key"),
        "REFLOW_SECRET_KEY": TEST_SECRET_KEY,
        **limits,
    }
    port, log_path = free_port(), tmp / "serve.log"
    with log_path.open("ab") as log:
        process = start_serve(["--apply", str(workflow), "--demo-user", RUN["userId"]],
                              env, port, log)
        try:
            yield Server(port, log_path)
        finally:
            stop_serve(process)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a 16 KiB header limit and 1 s timeouts."""
    yield from _serve(tmp_path_factory.mktemp("limited"), {
        "REFLOW_SERVER_MAX_HEADER_BYTES": str(HEADER_LIMIT),
        "REFLOW_SERVER_HEADER_TIMEOUT": str(TIMEOUT),
        "REFLOW_SERVER_BODY_TIMEOUT": str(TIMEOUT),
        "REFLOW_SERVER_KEEP_ALIVE_TIMEOUT": str(TIMEOUT),
        "REFLOW_SERVER_MAX_CONNECTIONS": str(SLOW_CLIENTS + 100),
    })


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that holds at most BOUND connections, with timeouts longer than a test."""
    yield from _serve(tmp_path_factory.mktemp("bounded"), {
        "REFLOW_SERVER_MAX_CONNECTIONS": str(BOUND),
        "REFLOW_SERVER_HEADER_TIMEOUT": "60",
        "REFLOW_SERVER_KEEP_ALIVE_TIMEOUT": "60",
    })


def _run_promptly(server: Server) -> float:
    """Run the workflow over a new connection (asserting a 200); the seconds it took."""
    started = time.monotonic()
    response = httpx.post(f"{server.base}/run/workflow", json=RUN, headers=HEADERS, timeout=5)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json()["executionId"]
    return elapsed


def _connect(server: Server, first_bytes: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (bounded in time)."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _wait_all_closed(socks: list[socket.socket], timeout: float) -> dict[socket.socket, bytes]:
    """What each socket received until the server closed it; fails if some stay open."""
    answers = dict.fromkeys(socks, b"")
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    open_count = len(socks)
    while open_count and time.monotonic() < deadline:
        for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            answers[sock] += chunk
            if not chunk:
                selector.unregister(sock)
                open_count -= 1
    selector.close()
    assert open_count == 0, f"{open_count} of {len(socks)} connections still open"
    return answers


def test_half_sent_requests_are_closed_after_the_header_timeout_while_others_are_served(
    limited: Server,
) -> None:
    partial = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: "
    opened = time.monotonic()
    # Half stall before their first byte, half in the middle of a header.
    slow = [_connect(limited, partial if n % 2 else b"") for n in range(SLOW_CLIENTS)]
    try:
        assert _run_promptly(limited) < TIMEOUT
        assert time.monotonic() - opened < TIMEOUT, "the slow clients were not held meanwhile"

        answers = _wait_all_closed(slow, TIMEOUT + SLACK)
        assert time.monotonic() - opened >= TIMEOUT * 0.9
        assert {_status(answer) for answer in answers.values()} == {408}
    finally:
        for sock in slow:
            sock.close()
    assert _run_promptly(limited) < TIMEOUT


def test_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    limited: Server,
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=5)
    connection.request("GET", "/health")
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b'{"status":"ok"}')
    assert connection.sock is not None
    answered = time.monotonic()

    assert _read_until_closed(connection.sock, TIMEOUT + SLACK) == b""
    # uvicorn's own default would be 5 s: the setting is what closed it.
    assert TIMEOUT * 0.9 <= time.monotonic() - answered < TIMEOUT * 3
    connection.close()


@pytest.mark.parametrize("size", [20 * 1024, 2 * 1024 * 1024], ids=["20KiB", "2MiB"])
def test_headers_over_the_limit_are_answered_431_at_once_and_others_are_still_served(
    limited: Server, size: int
) -> None:
    request = (b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: " + b"a" * size
               + b"\r\n\r\n")
    started = time.monotonic()
    with _connect(limited) as sock:
        sock.sendall(request)
        answer = _read_until_closed(sock, TIMEOUT + SLACK)
    # Sooner than the header timeout: refused for its size, not for its slowness.
    assert time.monotonic() - started < TIMEOUT
    assert _status(answer) == 431
    assert b'{"message":"request headers are over the limit of 16384 bytes"}' in answer
    assert _run_promptly(limited) < TIMEOUT


def test_headers_under_the_limit_are_served(limited: Server) -> None:
    response = httpx.get(f"{limited.base}/health", headers={"x-big": "a" * (HEADER_LIMIT // 2)})
    assert response.status_code == 200


def test_slow_body_is_cut_with_408_after_the_body_timeout_while_others_are_served(
    limited: Server,
) -> None:
    head = (f"POST /run/workflow HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            f"authorization: {HEADERS['authorization']}\r\nx-api-version: 2025-09\r\n"
            f"content-type: application/json\r\ncontent-length: 1000\r\n\r\n").encode()
    sent = time.monotonic()
    with _connect(limited, head + b'{"workflowName": ') as sock:
        assert _run_promptly(limited) < TIMEOUT
        answer = _read_until_closed(sock, TIMEOUT + SLACK)
    assert TIMEOUT * 0.9 <= time.monotonic() - sent < TIMEOUT + SLACK
    assert _status(answer) == 408
    assert b'{"message":"the request did not arrive in time"}' in answer
    assert _run_promptly(limited) < TIMEOUT
    assert "Traceback" not in limited.log.read_text()


def _keep_alive_request(connection: http.client.HTTPConnection) -> int:
    connection.request("GET", "/health")
    response = connection.getresponse()
    response.read()
    return response.status


def test_connections_beyond_the_bound_are_refused_while_open_ones_are_served(
    bounded: Server,
) -> None:
    clients = [http.client.HTTPConnection("127.0.0.1", bounded.port, timeout=5)
               for _ in range(2)]
    fillers: list[socket.socket] = []
    try:
        assert [_keep_alive_request(client) for client in clients] == [200, 200]
        sockets = [client.sock for client in clients]
        fillers = [_connect(bounded) for _ in range(BOUND - len(clients))]

        with _connect(bounded) as extra:
            refused = _read_until_closed(extra, SLACK)
        assert _status(refused) == 503
        for filler in fillers:  # held, not refused
            filler.setblocking(False)
            with pytest.raises(BlockingIOError):
                filler.recv(1)

        # The open keep-alive connections go on being served, on the same sockets.
        assert [_keep_alive_request(client) for client in clients] == [200, 200]
        assert [client.sock for client in clients] == sockets

        # A bound, not a ban: once a connection closes, a new one is served.
        fillers.pop().close()
        deadline = time.monotonic() + SLACK
        status = 0
        while status != 200 and time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                status = httpx.get(f"{bounded.base}/health", timeout=1).status_code
        assert status == 200
    finally:
        for client in clients:
            client.close()
        for filler in fillers:
            filler.close()


# -- a database reflow cannot write ------------------------------------------------------


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can create files in, root included (an immutable one for root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(folder)],
                                    capture_output=True, check=False).returncode != 0:
        pytest.skip("running as root without chattr +i: no read-only directory to test")
    try:
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


@pytest.mark.parametrize("command", [["serve"], ["db", "upgrade"]], ids=["serve", "db-upgrade"])
@pytest.mark.parametrize("case", ["read-only", "missing"])
def test_database_in_a_read_only_or_missing_directory_is_one_line_and_exit_3(
    tmp_path: Path, read_only_dir: Path, command: list[str], case: str
) -> None:
    folder = read_only_dir if case == "read-only" else tmp_path / "missing"
    database = folder / "reflow.db"
    result = subprocess.run(
        [sys.executable, "-m", "reflow", *command],
        env={**os.environ, "REFLOW_DATABASE_URL": f"sqlite:///{database}",
             "REFLOW_SECRET_KEY": TEST_SECRET_KEY, "REFLOW_PORT": str(free_port()),
             "REFLOW_DEV_KEY_FILE": str(tmp_path / "dev-key")},
        capture_output=True, text=True, timeout=60, check=False,
    )
    reason = "is read-only" if case == "read-only" else "does not exist"
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(
        f"error: REFLOW_DATABASE_URL: cannot create the database at {database}: "
        f"directory {folder} {reason}"
    ), result.stderr
    assert not database.exists()
