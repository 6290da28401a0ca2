"""Tenants share neither cookies nor connection capacity in outgoing HTTP.

Every target is a local server on 127.0.0.1 (allowed through the SSRF guard as
``LOOPBACK``); slow targets hang until the test releases them, and every load is a
bounded number of requests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from engine_support import StoreWriter, compile_doc, running_record, workflow

from reflow.blocks.base import BlockContext
from reflow.blocks.http import Http, HttpClients, HttpPolicy, create_http_clients
from reflow.domain.executions import ExecutionStatus
from reflow.engine import Engine, EngineConfig
from reflow.engine.recorder import Recorder
from reflow.errors import BlockFailed
from reflow.store.sqlite import SqliteStore
from support import eventually, json_handler, serving

pytestmark = pytest.mark.anyio

LOOPBACK = (ipaddress.IPv4Network("127.0.0.0/8"),)
TEAM_A, TEAM_B = "team-a", "team-b"


class Target:
    """What a local target saw: each request's Cookie header, and requests in flight."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.release = threading.Event()
        self.cookies: list[str | None] = []
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        """Record the request; a hanging target waits (bounded) until released."""
        with self._lock:
            self.cookies.append(request.headers.get("Cookie"))
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        if self.hang:
            self.release.wait(10)
        with self._lock:
            self.in_flight -= 1


@pytest.fixture
def fast() -> Iterator[tuple[str, Target]]:
    """A target that answers at once and sets a session cookie."""
    target = Target()
    cookie = {"Set-Cookie": "session=team-a-user; Path=/"}
    with serving(json_handler(target.answer, headers=cookie)) as url:
        yield url, target


@pytest.fixture
def slow() -> Iterator[tuple[str, Target]]:
    """A target whose answers hang until ``release`` is set (set again at teardown)."""
    target = Target(hang=True)
    with serving(json_handler(target.answer)) as url:
        try:
            yield url, target
        finally:
            target.release.set()


def limits(**values: Any) -> HttpPolicy:
    return HttpPolicy(allow_networks=LOOPBACK, timeout=5.0, **values)


@pytest.fixture
async def clients() -> AsyncIterator[HttpClients]:
    async with create_http_clients(limits(team_connections=2, host_connections=2)) as made:
        yield made


async def call(
    clients: HttpClients, team_id: str, url: str, timeout: float = 5.0, **params: Any
) -> Any:
    ctx = BlockContext(execution_id="ex1", block_id="call", attempt=1,
                       idempotency_key="ex1:call", http=clients, team_id=team_id,
                       timeout=timeout)
    outcome = await Http().run({"method": "GET", "url": url, **params}, ctx)
    return outcome.output


async def latency(clients: HttpClients, team_id: str, url: str) -> float:
    """The median of five calls' durations, in seconds."""
    durations = []
    for _ in range(5):
        started = time.perf_counter()
        await call(clients, team_id, url)
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def hang(clients: HttpClients, team_id: str, url: str, count: int) -> list[asyncio.Task[Any]]:
    return [asyncio.create_task(call(clients, team_id, url)) for _ in range(count)]


# --- cookies ---------------------------------------------------------------------------


async def test_a_cookie_a_target_set_is_sent_on_no_later_request_of_any_team(
    clients: HttpClients, fast: tuple[str, Target]
) -> None:
    url, target = fast
    first = await call(clients, TEAM_A, f"{url}/login")
    await call(clients, TEAM_A, f"{url}/orders")
    await call(clients, TEAM_B, f"{url}/orders")
    # The team still sees the Set-Cookie its target answered; nobody sends it back.
    assert first["headers"]["set-cookie"] == "session=team-a-user; Path=/"
    assert target.cookies == [None, None, None]


async def test_a_cookie_header_the_workflow_sets_still_goes_out(
    clients: HttpClients, fast: tuple[str, Target]
) -> None:
    url, target = fast
    await call(clients, TEAM_A, url, headers={"Cookie": "theme=dark"})
    await call(clients, TEAM_A, url)
    assert target.cookies == ["theme=dark", None]


async def test_runs_of_two_teams_through_the_engine_use_two_clients_and_send_no_cookie(
    store: SqliteStore, clients: HttpClients, fast: tuple[str, Target]
) -> None:
    url, target = fast
    engine = Engine(EngineConfig(), clients)
    compiled = compile_doc(workflow(
        {"id": "login", "type": "http", "with": {"method": "GET", "url": f"{url}/login"}},
        {"id": "again", "type": "http", "with": {"method": "GET", "url": f"{url}/orders"}},
    ))
    for team_id in (TEAM_A, TEAM_B):
        recorder = Recorder(StoreWriter(store), running_record(None, team_id=team_id),
                            persisted=False)
        finished = await engine.run(engine.new_state(recorder, compiled, {"data": None}))
        assert (finished.status, finished.error) == (ExecutionStatus.SUCCEEDED, None)
    assert target.cookies == [None] * 4
    assert TEAM_A in clients and TEAM_B in clients


# --- capacity ----------------------------------------------------------------------------


async def test_another_team_stays_within_twice_its_idle_latency_while_one_saturates_its_share(
    clients: HttpClients, fast: tuple[str, Target], slow: tuple[str, Target]
) -> None:
    (fast_url, _), (slow_url, slow_target) = fast, slow
    idle = await latency(clients, TEAM_B, fast_url)
    # Twice team A's limit of 2: two requests hang at the target, two wait for a slot.
    team_a = hang(clients, TEAM_A, slow_url, 4)
    await eventually(lambda: slow_target.in_flight == 2)
    loaded = await latency(clients, TEAM_B, fast_url)
    assert slow_target.in_flight == 2, "team A's share stayed saturated while B was measured"
    assert loaded <= 2 * idle + 0.05, f"idle {idle * 1000:.1f} ms, loaded {loaded * 1000:.1f} ms"
    slow_target.release.set()
    outputs = await asyncio.gather(*team_a)
    assert [output["status"] for output in outputs] == [200] * 4
    assert slow_target.peak == 2


async def test_a_team_past_its_limit_fails_with_a_message_naming_the_team_limit(
    clients: HttpClients, fast: tuple[str, Target], slow: tuple[str, Target]
) -> None:
    (fast_url, _), (slow_url, slow_target) = fast, slow
    team_a = hang(clients, TEAM_A, slow_url, 2)
    await eventually(lambda: slow_target.in_flight == 2)
    # The wait for a slot counts against the block's timeout and ends a tenth before it,
    # so the step says which limit held it before the engine's own timeout would fire.
    started = time.monotonic()
    with pytest.raises(BlockFailed) as failure:
        async with asyncio.timeout(1.0):  # as the engine runs a side-effecting block
            await call(clients, TEAM_A, f"{fast_url}/", timeout=1.0)
    waited = time.monotonic() - started
    assert failure.value.message == (
        f"GET {fast_url}/ not sent: this team's limit of 2 connections was reached and none"
        " freed in time; REFLOW_HTTP_TEAM_CONNECTIONS sets it"
    )
    assert failure.value.retryable is True
    assert 0.85 <= waited < 1.0
    assert (await call(clients, TEAM_B, fast_url))["status"] == 200
    slow_target.release.set()
    await asyncio.gather(*team_a)


async def test_a_team_holds_at_most_its_host_limit_to_one_host_and_still_reaches_others(
    fast: tuple[str, Target], slow: tuple[str, Target]
) -> None:
    (fast_url, _), (slow_url, slow_target) = fast, slow
    async with create_http_clients(limits(team_connections=4, host_connections=1)) as clients:
        team_a = hang(clients, TEAM_A, slow_url, 2)
        await eventually(lambda: slow_target.in_flight == 1)
        assert (await call(clients, TEAM_A, fast_url))["status"] == 200
        with pytest.raises(BlockFailed) as failure:
            await call(clients, TEAM_A, slow_url, timeout=0.2)
        host = slow_url.removeprefix("http://")
        assert failure.value.message == (
            f"GET {slow_url} not sent: this team's limit of 1 connection to {host} was"
            " reached and none freed in time; REFLOW_HTTP_HOST_CONNECTIONS sets it"
        )
        slow_target.release.set()
        outputs = await asyncio.gather(*team_a)
    assert [output["status"] for output in outputs] == [200, 200]
    assert slow_target.peak == 1


async def test_least_recently_used_idle_team_client_is_closed_past_the_bound(
    fast: tuple[str, Target], slow: tuple[str, Target]
) -> None:
    (fast_url, _), (slow_url, slow_target) = fast, slow
    async with create_http_clients(limits(team_clients=2)) as clients:
        busy = hang(clients, "busy", slow_url, 1)
        await eventually(lambda: slow_target.in_flight == 1)
        await call(clients, "first", fast_url)
        first = clients.team("first").client
        await call(clients, "second", fast_url)
        # "busy" is older but has a request in flight, so the idle "first" went.
        await eventually(lambda: first.is_closed)
        await call(clients, "third", fast_url)
        assert ("busy" in clients, "first" in clients, "second" in clients) == (
            True, False, False
        )
        assert len(clients) == 2
        slow_target.release.set()
        assert (await asyncio.gather(*busy))[0]["status"] == 200
