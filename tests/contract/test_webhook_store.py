"""The Store's webhook tokens, on every backend; and delivery ids deduplicated across
processes sharing one PostgreSQL database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest
from test_scale_out_services import two as two  # the fixture: Reflows as processes
from test_store import T0, Catalogue, add_catalogue, add_second_installation
from test_store import cat as cat  # the fixture

from reflow.errors import Conflict, NotFound
from reflow.services import Reflow
from reflow.services.webhooks import WebhookCall, delivery_key
from reflow.services.workflows import definition_from_document
from reflow.store.base import Store

pytestmark = pytest.mark.anyio


async def test_ensure_webhook_token_stores_the_first_token_and_keeps_it(
    store: Store, cat: Catalogue
) -> None:
    assert await store.find_webhook("wh_first") is None
    assert await store.ensure_webhook_token(cat.team.id, cat.installation.id, "wh_first",
                                            T0) == "wh_first"
    assert await store.ensure_webhook_token(cat.team.id, cat.installation.id, "wh_second",
                                            T0 + 1) == "wh_first"
    found = await store.find_webhook("wh_first")
    assert found is not None
    assert found.installation == cat.installation
    assert not found.user_deleted
    assert await store.find_webhook("wh_second") is None


async def test_concurrent_ensures_agree_on_one_token(store: Store, cat: Catalogue) -> None:
    tokens = await asyncio.gather(*(
        store.ensure_webhook_token(cat.team.id, cat.installation.id, f"wh_{i}", T0)
        for i in range(5)))
    assert len(set(tokens)) == 1


async def test_rotate_replaces_the_token_and_the_old_one_names_nothing(
    store: Store, cat: Catalogue
) -> None:
    await store.ensure_webhook_token(cat.team.id, cat.installation.id, "wh_old", T0)
    await store.rotate_webhook_token(cat.team.id, cat.installation.id, "wh_new", T0 + 1)
    assert await store.find_webhook("wh_old") is None
    found = await store.find_webhook("wh_new")
    assert found is not None and found.installation.id == cat.installation.id
    # A rotation of an installation that had no token yet sets one.
    _, second = await add_second_installation(store, cat)
    await store.rotate_webhook_token(cat.team.id, second.id, "wh_fresh", T0 + 2)
    assert await store.ensure_webhook_token(cat.team.id, second.id, "x", T0) == "wh_fresh"


async def test_tokens_are_unique_across_installations(store: Store, cat: Catalogue) -> None:
    _, second = await add_second_installation(store, cat)
    await store.ensure_webhook_token(cat.team.id, cat.installation.id, "wh_taken", T0)
    with pytest.raises(Conflict):
        await store.rotate_webhook_token(cat.team.id, second.id, "wh_taken", T0)


async def test_another_teams_installation_gets_no_token(store: Store, cat: Catalogue) -> None:
    other = await add_catalogue(store, "globex")
    with pytest.raises(NotFound):
        await store.ensure_webhook_token(other.team.id, cat.installation.id, "wh_x", T0)
    with pytest.raises(NotFound):
        await store.rotate_webhook_token(other.team.id, cat.installation.id, "wh_x", T0)
    assert await store.find_webhook("wh_x") is None


async def test_find_webhook_tells_an_inactive_or_deleted_installation_and_user(
    store: Store, cat: Catalogue
) -> None:
    await store.ensure_webhook_token(cat.team.id, cat.installation.id, "wh_t", T0)
    await store.save_installation(replace(cat.installation, active=False))
    found = await store.find_webhook("wh_t")
    assert found is not None and not found.installation.active and not found.user_deleted
    assert not found.installation_deleted
    await store.save_installation(cat.installation)
    assert await store.delete_installation(cat.team.id, cat.installation.id, T0 + 4)
    found = await store.find_webhook("wh_t")
    assert found is not None and found.installation_deleted
    await store.delete_user(cat.team.id, cat.user.id, T0 + 5)
    found = await store.find_webhook("wh_t")
    assert found is not None and found.user_deleted


async def test_a_delivery_key_is_inserted_with_its_execution_once(
    store: Store, cat: Catalogue
) -> None:
    key = delivery_key(cat.installation.id, "d-1")
    first = cat.execution()
    await store.insert_execution(first, key)
    with pytest.raises(Conflict):
        await store.insert_execution(cat.execution(), key)
    assert await store.find_idempotency_key(cat.team.id, key) == first.id


# -- several processes on PostgreSQL -------------------------------------------------------

HOOK: dict[str, Any] = {
    "name": "Hook", "trigger": {"type": "webhook", "dedupe": {"header": "X-Delivery"}},
    "blocks": [{"id": "done", "type": "respond", "with": {"body": "{{ trigger.data }}"}}],
}


@pytest.mark.postgres
async def test_one_delivery_sent_to_several_processes_at_once_starts_one_execution(
    two: Callable[..., Any],
) -> None:
    first: Reflow = await two(worker=True)
    others: list[Reflow] = [await two(worker=True) for _ in range(2)]
    team = await first.keys.create_team("acme")
    user = await first.users.create(team, "ann@example.com", None)
    await first.workflows.apply(team, definition_from_document(HOOK))
    await first.workflows.activate(team, user.id, "Hook")
    url = await first.webhooks.url(team, "Hook", user.id)
    call = WebhookCall(url.rsplit("/", 1)[1], orjson.dumps({"n": 1}), "application/json",
                       [("X-Delivery", "same")], [])
    received = await asyncio.gather(*(
        reflow.webhooks.receive(call) for reflow in (first, *others) for _ in range(4)))
    assert len({r.started.execution_id for r in received}) == 1
    assert sum(not r.duplicate for r in received) == 1
