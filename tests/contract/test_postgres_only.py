"""What only the PostgreSQL store does: hints between processes, connection errors, fencing
of a group commit, the schema check, and a listener that survives a dropped connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from test_store import T0, Catalogue, add_catalogue, make_key, make_team

from pg_support import truncate_async
from reflow.domain.executions import ExecutionStatus
from reflow.errors import SettingsError, StoreError
from reflow.store.postgres import PostgresStore
from reflow.store.revisions import head_revision

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

# How long a hint may take to arrive (a bound, not a wait: the test goes on at once).
HINT_TIMEOUT_S = 5.0


class Hints:
    """Collects ``on_hint`` calls; ``next`` waits (bounded) for the next one."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    def __call__(self, channel: str, payload: str) -> None:
        self.queue.put_nowait((channel, payload))

    async def next(self) -> tuple[str, str]:
        return await asyncio.wait_for(self.queue.get(), HINT_TIMEOUT_S)


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[PostgresStore]:
    """A PostgresStore on the emptied session database."""
    await truncate_async(postgres_url)
    store = PostgresStore(postgres_url, pool_size=4)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def other(postgres_url: str) -> AsyncIterator[PostgresStore]:
    """A second store on the same database: another process, as far as hints go."""
    store = PostgresStore(postgres_url, pool_size=2)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def hints(pg: PostgresStore) -> Hints:
    """Hints heard by ``pg``'s listener."""
    heard = Hints()
    await pg.listen(heard)
    return heard


async def test_another_process_hears_queued_and_finished_executions(
    pg: PostgresStore, other: PostgresStore, hints: Hints
) -> None:
    cat = await add_catalogue(other)
    record = cat.execution()
    await other.insert_execution(record)
    assert await hints.next() == ("queued", "")
    [claimed] = await other.claim_executions("w1", T0, T0 + 30_000, 1)
    claimed.status, claimed.stopped_at = ExecutionStatus.SUCCEEDED, T0 + 5
    claimed.lease_owner = claimed.lease_expires = None
    await other.save_execution(claimed, [], owner="w1")
    assert await hints.next() == ("finished", record.id)


async def test_a_group_commit_of_queued_executions_hints_once(
    pg: PostgresStore, other: PostgresStore, hints: Hints
) -> None:
    cat = await add_catalogue(other)
    await asyncio.gather(*(other.insert_execution(cat.execution()) for _ in range(5)))
    assert await hints.next() == ("queued", "")
    # A marker sent after the group: the next hint is it, so the group sent no other.
    marker = await _revoke_a_key(other)
    assert await hints.next() == ("revoked", marker)


async def test_cancelling_a_queued_execution_hints_finished(
    pg: PostgresStore, other: PostgresStore, hints: Hints
) -> None:
    cat = await add_catalogue(other)
    queued = cat.execution()
    await other.insert_execution(queued)
    assert await hints.next() == ("queued", "")
    cancelled = await other.request_cancel(cat.team.id, queued.id, T0 + 1, b'{"m":1}')
    assert cancelled is not None and cancelled.status is ExecutionStatus.CANCELLED
    assert await hints.next() == ("finished", queued.id)


async def test_a_running_execution_asked_to_cancel_is_not_hinted_finished(
    pg: PostgresStore, other: PostgresStore, hints: Hints
) -> None:
    cat = await add_catalogue(other)
    running = cat.execution(status=ExecutionStatus.RUNNING, lease_owner="w1",
                            lease_expires=T0 + 30_000)
    await other.insert_execution(running)  # not queued: no hint
    flagged = await other.request_cancel(cat.team.id, running.id, T0, b"{}")
    assert flagged is not None and flagged.cancel_requested
    marker = await _revoke_a_key(other)
    assert await hints.next() == ("revoked", marker)


async def _revoke_a_key(store: PostgresStore) -> str:
    team = make_team("keys")
    await store.create_team(team)
    key = make_key(team, "rf_gone")
    await store.create_api_key(key, "hash-gone")
    assert await store.revoke_api_key(team.id, key.id, T0) is True
    return "hash-gone"


async def test_the_listener_reconnects_after_its_connection_drops(
    pg: PostgresStore, other: PostgresStore, hints: Hints, postgres_url: str
) -> None:
    admin = await asyncpg.connect(postgres_url)
    try:
        # The listener is the only connection that LISTENs on this database.
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query LIKE 'LISTEN%'")
        assert ended == 1
        # Hints sent while it reconnects are lost (callers poll): send until one arrives.
        for _ in range(50):
            await admin.execute("SELECT pg_notify('reflow_revoked', 'after')")
            try:
                heard = await asyncio.wait_for(hints.queue.get(), 0.2)
            except TimeoutError:
                continue
            assert heard == ("revoked", "after")
            break
        else:
            pytest.fail("no hint arrived after the listener's connection dropped")
    finally:
        await admin.close()


async def test_an_unreachable_server_is_a_settings_error_without_the_password() -> None:
    store = PostgresStore("postgresql://ann:s3cret-pw@127.0.0.1:1/reflowdb", pool_size=1)
    try:
        with pytest.raises(SettingsError) as caught:
            await store.count_teams()
    finally:
        await store.close()
    message = caught.value.message
    assert message.startswith("REFLOW_DATABASE_URL: cannot connect to PostgreSQL at "
                              "127.0.0.1:1/reflowdb: ")
    assert "s3cret-pw" not in message


async def test_ping_refuses_a_schema_behind_the_code(pg: PostgresStore, postgres_url: str) -> None:
    await pg.ping()
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute("UPDATE alembic_version SET version_num = '0001'")
        with pytest.raises(StoreError, match="run `reflow db upgrade`"):
            await pg.ping()
    finally:
        await admin.execute("UPDATE alembic_version SET version_num = $1", head_revision())
        await admin.close()


async def test_a_group_commit_takes_one_transaction(pg: PostgresStore, postgres_url: str) -> None:
    cat: Catalogue = await add_catalogue(pg)
    await asyncio.gather(*(pg.insert_execution(cat.execution()) for _ in range(10)))
    admin = await asyncpg.connect(postgres_url)
    try:
        # xmin: the transaction that wrote the row.
        writers = await admin.fetchval("SELECT count(DISTINCT xmin::text) FROM executions")
        rows = await admin.fetchval("SELECT count(*) FROM executions")
    finally:
        await admin.close()
    assert (rows, writers) == (10, 1)


async def test_a_listener_hears_only_the_hints_it_asked_for(
    pg: PostgresStore, other: PostgresStore
) -> None:
    queued_only = Hints()
    await pg.listen(queued_only, ["queued"])
    cat = await add_catalogue(other)
    record = cat.execution()
    await other.insert_execution(record)
    assert await queued_only.next() == ("queued", "")
    [claimed] = await other.claim_executions("w1", T0, T0 + 30_000, 1)
    claimed.status, claimed.stopped_at = ExecutionStatus.SUCCEEDED, T0 + 5
    claimed.lease_owner = claimed.lease_expires = None
    await other.save_execution(claimed, [], owner="w1")
    key = make_key(cat.team, "rf_gone")
    await other.create_api_key(key, "hash-of-gone")
    await other.revoke_api_key(cat.team.id, key.id, T0)
    # A later queued hint arrives, and nothing of the finished or revoked ones before it.
    await other.insert_execution(cat.execution())
    assert await queued_only.next() == ("queued", "")
    assert queued_only.queue.empty()


async def test_a_read_survives_the_pooled_connection_dying_under_it(
    pg: PostgresStore, postgres_url: str
) -> None:
    team = make_team("acme")
    await pg.create_team(team)
    admin = await asyncpg.connect(postgres_url)
    try:
        # A restarted server or a terminated backend: every pooled connection is dead.
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    finally:
        await admin.close()
    assert await pg.get_team(team.id) == team  # tried again on a fresh connection
