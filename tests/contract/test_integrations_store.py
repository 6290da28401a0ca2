"""The Store contract for integrations and for installations deleted (W6) and revived."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_store import T0, Catalogue, add_catalogue, add_second_installation

from reflow.domain.executions import ExecutionStatus
from reflow.domain.records import Installation, Integration, Team, User
from reflow.errors import Conflict
from reflow.ids import new_object_id
from reflow.store.base import Store

pytestmark = pytest.mark.anyio


def make_integration(team: Team, name: str = "Shopify", at: int = T0, **changes: object
                     ) -> Integration:
    integration = Integration(new_object_id(), team.id, name, name, "", None, at, at)
    return replace(integration, **changes)


@pytest.fixture
async def cat(store: Store) -> Catalogue:
    """A team with one user who installed one workflow."""
    return await add_catalogue(store)


# -- integrations ------------------------------------------------------------------------


async def test_save_integration_inserts_then_updates_by_name_keeping_id_and_creation(
    store: Store, cat: Catalogue
) -> None:
    first = make_integration(cat.team, icon="https://x.example/i.png")
    assert await store.save_integration(first) == first
    update = make_integration(cat.team, at=T0 + 5, app="Shopify Plus", description="Orders")

    stored = await store.save_integration(update)

    assert stored == replace(update, id=first.id, created_at=T0)
    assert stored.icon is None  # a declaration is the whole truth: a missing icon is none
    assert await store.get_integration(cat.team.id, first.id) == stored
    assert await store.get_integration(cat.team.id, "Shopify") == stored


async def test_ensure_integration_inserts_only_a_new_name(store: Store, cat: Catalogue) -> None:
    declared = await store.save_integration(make_integration(cat.team, description="Declared"))
    await store.ensure_integration(make_integration(cat.team, at=T0 + 9))
    await store.ensure_integration(make_integration(cat.team, "Stripe"))
    assert [i.name for i in await store.list_integrations(cat.team.id)] == ["Shopify", "Stripe"]
    assert await store.get_integration(cat.team.id, "Shopify") == declared


async def test_integrations_are_per_team_and_listed_by_name(store: Store, cat: Catalogue) -> None:
    other = await add_catalogue(store, "other")
    for team, name in ((cat.team, "b"), (cat.team, "a"), (other.team, "a")):
        await store.save_integration(make_integration(team, name))
    mine = await store.list_integrations(cat.team.id)
    theirs = await store.list_integrations(other.team.id)
    assert [i.name for i in mine] == ["a", "b"]
    assert {i.id for i in mine}.isdisjoint(i.id for i in theirs)
    assert await store.get_integration(other.team.id, mine[0].id) is None
    assert await store.get_integration(cat.team.id, "nope") is None


# -- installations deleted and revived ---------------------------------------------------


async def test_a_deleted_installation_is_hidden_from_every_live_lookup(
    store: Store, cat: Catalogue
) -> None:
    team_id, installation = cat.team.id, cat.installation
    assert await store.delete_installation(team_id, installation.id, T0 + 7)

    assert await store.get_installation(team_id, cat.workflow.id, cat.user.id) is None
    assert await store.get_installation_by_id(team_id, installation.id) is None
    assert await store.list_installations(team_id) == []
    assert await store.list_users(team_id, cat.workflow.id) == []
    expected = replace(installation, active=False, updated_at=T0 + 7)
    assert await store.get_deleted_installation(
        team_id, installation_id=installation.id) == expected
    assert await store.get_deleted_installation(
        team_id, workflow_id=cat.workflow.id, user_id=cat.user.id) == expected
    assert not await store.delete_installation(team_id, installation.id, T0 + 8)


async def test_a_deleted_installation_of_another_team_is_neither_deleted_nor_found(
    store: Store, cat: Catalogue
) -> None:
    other = await add_catalogue(store, "other")
    assert not await store.delete_installation(other.team.id, cat.installation.id, T0 + 1)
    assert await store.get_installation_by_id(cat.team.id, cat.installation.id) is not None
    await store.delete_installation(cat.team.id, cat.installation.id, T0 + 1)
    assert await store.get_deleted_installation(
        other.team.id, installation_id=cat.installation.id) is None


async def test_delete_installation_is_refused_while_one_of_its_executions_is_unfinished(
    store: Store, cat: Catalogue
) -> None:
    await store.insert_execution(cat.finished(ExecutionStatus.SUCCEEDED, T0 + 2))
    user, other = await add_second_installation(store, cat)
    await store.insert_execution(cat.execution(installation_id=other.id, user_id=user.id))

    with pytest.raises(Conflict, match="1 execution"):
        await store.delete_installation(cat.team.id, other.id, T0 + 3)
    assert await store.get_installation_by_id(cat.team.id, other.id) == other
    assert await store.delete_installation(cat.team.id, cat.installation.id, T0 + 3)


async def test_install_revives_a_deleted_installation_under_its_id(
    store: Store, cat: Catalogue
) -> None:
    await store.delete_installation(cat.team.id, cat.installation.id, T0 + 1)
    fresh = Installation(new_object_id(), cat.team.id, cat.workflow.id, cat.user.id, 3, True,
                         T0 + 2, T0 + 2)

    revived = await store.install(fresh)

    assert revived == replace(fresh, id=cat.installation.id)
    assert await store.get_installation_by_id(cat.team.id, cat.installation.id) == revived
    assert await store.get_deleted_installation(
        cat.team.id, installation_id=cat.installation.id) is None


async def test_install_inserts_a_new_pair_and_answers_the_live_one_of_a_live_pair(
    store: Store, cat: Catalogue
) -> None:
    user = await add_second_user(store, cat)
    new = Installation(new_object_id(), cat.team.id, cat.workflow.id, user.id, 1, True,
                       T0 + 1, T0 + 1)
    concurrent = replace(new, id=new_object_id(), installed_version=9, active=False)

    assert await store.install(new) == new
    assert await store.install(concurrent) == new
    assert len(await store.list_installations(cat.team.id, workflow_id=cat.workflow.id)) == 2


async def add_second_user(store: Store, cat: Catalogue) -> User:
    user = User(new_object_id(), cat.team.id, "bob@example.com", None, T0)
    await store.create_user(user)
    return user
