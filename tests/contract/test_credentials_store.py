"""The Store contract for apps and credentials: upserts by name, tenancy and user scoping,
the pins a run reads, and the compare-and-set of a key rotation."""

from __future__ import annotations

import pytest
from test_store import T0, Catalogue, add_catalogue, add_second_installation

from reflow.domain.apps import AppRecord, CredentialRecord, Health
from reflow.ids import new_object_id
from reflow.store.base import Store

pytestmark = pytest.mark.anyio


def make_app(cat: Catalogue, name: str = "shop", at: int = T0, digest: str = "d1") -> AppRecord:
    return AppRecord(new_object_id(), cat.team.id, name, name.title(), "api_key", None,
                     b'{"name": "%s"}' % name.encode(), digest, at, at)


def make_credential(cat: Catalogue, user_id: str, app: str = "shop", at: int = T0,
                    sealed: str = "token-1") -> CredentialRecord:
    return CredentialRecord(new_object_id(), cat.team.id, user_id, app, sealed, at, at)


@pytest.fixture
async def cat(store: Store) -> Catalogue:
    """A team with one user who installed one workflow."""
    return await add_catalogue(store)


async def test_save_app_updates_by_name_keeping_id_and_creation(store: Store, cat: Catalogue
                                                                ) -> None:
    first = await store.save_app(make_app(cat))
    second = await store.save_app(make_app(cat, at=T0 + 5, digest="d2"))
    assert (second.id, second.created_at, second.updated_at, second.digest) == (
        first.id, T0, T0 + 5, "d2")
    assert await store.get_app(cat.team.id, "shop") == second
    other = await add_catalogue(store, "other")
    assert await store.get_app(other.team.id, "shop") is None
    assert await store.list_apps(other.team.id) == []


async def test_credentials_list_oldest_first_with_the_apps_display_name(
    store: Store, cat: Catalogue
) -> None:
    await store.save_app(make_app(cat))
    older = make_credential(cat, cat.user.id)
    newer = make_credential(cat, cat.user.id, app="gone", at=T0 + 1)
    for credential in (newer, older):
        await store.create_credential(credential)
    listed = await store.list_credentials(cat.team.id, cat.user.id)
    assert [(c.id, c.app_display_name, c.health) for c in listed] == [
        (older.id, "Shop", Health.OK), (newer.id, None, Health.OK)]
    other = await add_catalogue(store, "other")
    assert await store.list_credentials(other.team.id, cat.user.id) == []


async def test_delete_credential_only_through_its_user_and_team(store: Store, cat: Catalogue
                                                                ) -> None:
    credential = make_credential(cat, cat.user.id)
    await store.create_credential(credential)
    bob, _ = await add_second_installation(store, cat)
    other = await add_catalogue(store, "other")
    assert not await store.delete_credential(cat.team.id, bob.id, credential.id)
    assert not await store.delete_credential(other.team.id, cat.user.id, credential.id)
    assert await store.delete_credential(cat.team.id, cat.user.id, credential.id)
    assert not await store.delete_credential(cat.team.id, cat.user.id, credential.id)


async def test_run_credentials_give_the_pins_in_order_and_the_users_newest_first(
    store: Store, cat: Catalogue
) -> None:
    old = make_credential(cat, cat.user.id)
    new = make_credential(cat, cat.user.id, at=T0 + 1)
    bob, _ = await add_second_installation(store, cat)
    for credential in (old, new, make_credential(cat, bob.id)):
        await store.create_credential(credential)
    installation = cat.installation.id
    assert await store.run_credentials(cat.team.id, cat.user.id, installation) == (
        [], [new, old])
    assert await store.pin_credentials(cat.team.id, installation, [old.id, "x"])
    pinned, _ = await store.run_credentials(cat.team.id, cat.user.id, installation)
    assert pinned == [old.id, "x"]
    other = await add_catalogue(store, "other")
    assert not await store.pin_credentials(other.team.id, installation, [])
    assert await store.pin_credentials(cat.team.id, installation, [])
    assert (await store.run_credentials(cat.team.id, cat.user.id, installation))[0] == []


async def test_sealed_batches_page_by_key_and_reseal_only_an_unchanged_value(
    store: Store, cat: Catalogue
) -> None:
    made = sorted((make_credential(cat, cat.user.id, sealed=f"t{i}") for i in range(3)),
                  key=lambda c: c.id)
    for credential in made:
        await store.create_credential(credential)
    first = await store.sealed_batch("credentials", "", 2)
    rest = await store.sealed_batch("credentials", first[-1][0], 2)
    assert [k for k, _ in first + rest] == [c.id for c in made]
    key, value = first[0]
    assert await store.reseal("credentials", key, value, b"new")
    assert not await store.reseal("credentials", key, value, b"newer")
    assert (await store.sealed_batch("credentials", "", 1))[0] == (key, b"new")
    with pytest.raises(ValueError, match="no sealed values"):
        await store.sealed_batch("users", "", 1)
