"""The Store contract for headless installation: started installations by id (a restart
keeps the creation time), installations' settings read by id and team, and a completion
written all at once."""

from __future__ import annotations

import pytest
from test_store import T0, Catalogue, add_catalogue, add_second_installation

from reflow.domain.records import ConfigChange, HeadlessInstallation, InstallationSettings
from reflow.store.base import Store

pytestmark = pytest.mark.anyio


@pytest.fixture
async def cat(store: Store) -> Catalogue:
    """A team with one user who installed one workflow."""
    return await add_catalogue(store)


async def test_a_started_installation_is_replaced_by_a_restart_keeping_its_creation(
    store: Store, cat: Catalogue
) -> None:
    first = HeadlessInstallation("a" * 24, cat.team.id, cat.user.id, "i1",
                                 (cat.workflow.id,), {"shop": "c1"}, T0, T0)
    await store.save_headless_installation(first)
    assert await store.get_headless_installation(cat.team.id, first.id) == first
    again = HeadlessInstallation(first.id, cat.team.id, cat.user.id, "i1", (), {}, T0 + 9,
                                 T0 + 9)
    await store.save_headless_installation(again)
    stored = await store.get_headless_installation(cat.team.id, first.id)
    assert stored == HeadlessInstallation(first.id, cat.team.id, cat.user.id, "i1", (), {},
                                          T0, T0 + 9)
    other = await add_catalogue(store, "other")
    assert await store.get_headless_installation(other.team.id, first.id) is None


async def test_configure_writes_every_change_at_once_and_settings_read_them_by_team(
    store: Store, cat: Catalogue
) -> None:
    bob, second = await add_second_installation(store, cat)
    ids = [cat.installation.id, second.id]
    assert await store.installation_settings(cat.team.id, ids) == {
        i: InstallationSettings(None, ()) for i in ids}
    written = await store.configure_installations(cat.team.id, [
        ConfigChange(cat.installation.id, 1, b'{"channel":"#a"}', ("c1", "c2"), True),
        ConfigChange(second.id, 1, None, (), False),
        ConfigChange("missing", 1, b"{}", (), True),
    ], T0 + 50)
    assert written == 2
    settings = await store.installation_settings(cat.team.id, ids)
    assert settings[cat.installation.id] == InstallationSettings(b'{"channel":"#a"}',
                                                                 ("c1", "c2"))
    assert settings[second.id] == InstallationSettings(None, ())
    installation = await store.get_installation_by_id(cat.team.id, cat.installation.id)
    assert installation is not None
    assert installation.active and installation.updated_at == T0 + 50
    other = await add_catalogue(store, "other")
    assert await store.installation_settings(other.team.id, ids) == {}
    assert await store.configure_installations(other.team.id, [
        ConfigChange(cat.installation.id, 1, None, (), True)], T0 + 60) == 0
    assert bob.id != cat.user.id
