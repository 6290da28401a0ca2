"""The Store contract for OAuth: single-use states, the refresh lease and its
compare-and-swap, needs_reconnect with its event and outbox row in one transaction,
reconnecting in place, credential events and the team's redirect URL."""

from __future__ import annotations

import pytest
from test_credentials_store import make_credential
from test_store import T0, Catalogue, add_catalogue

from reflow.domain.apps import Health
from reflow.ids import new_object_id
from reflow.store.base import CredentialEvent, Store

pytestmark = pytest.mark.anyio


@pytest.fixture
async def cat(store: Store) -> Catalogue:
    """A team with one user who installed one workflow."""
    return await add_catalogue(store)


def event(cat: Catalogue, credential_id: str, kind: str, at: int = T0) -> CredentialEvent:
    return CredentialEvent(new_object_id(), cat.team.id, credential_id, cat.user.id, "crm",
                           kind, f"{kind} happened", at)


async def test_a_state_is_taken_once(store: Store, cat: Catalogue) -> None:
    await store.insert_oauth_state(cat.team.id, "h1", cat.user.id, "crm", T0, T0 + 600)
    assert await store.take_oauth_state("h1") == (cat.team.id, cat.user.id, "crm", T0 + 600)
    assert await store.take_oauth_state("h1") is None
    assert await store.take_oauth_state("never") is None
    await store.insert_oauth_state(cat.team.id, "h2", cat.user.id, "crm", T0, T0 + 600)
    assert await store.purge_oauth_states(T0 + 601, 10) == 1
    assert await store.take_oauth_state("h2") is None


async def test_one_claimer_holds_the_refresh_lease_and_writes_under_it(
    store: Store, cat: Catalogue
) -> None:
    credential = make_credential(cat, cat.user.id, app="crm")
    await store.create_credential(credential)
    assert await store.claim_credential_refresh(credential.id, 1, "a", T0 + 30, T0)
    assert not await store.claim_credential_refresh(credential.id, 1, "b", T0 + 30, T0)
    # Another's write, or a stale version, changes nothing.
    assert not await store.credential_refreshed(credential.id, 1, "b", "x", None, T0)
    assert not await store.credential_refreshed(credential.id, 2, "a", "x", None, T0)
    assert await store.credential_refreshed(credential.id, 1, "a", "new", T0 + 3600, T0 + 1)
    stored = await store.get_credential(cat.team.id, credential.id)
    assert stored is not None
    assert (stored.sealed, stored.version, stored.expires_at, stored.refresh_owner) == (
        "new", 2, T0 + 3600, None)
    # A lapsed lease may be taken over.
    assert await store.claim_credential_refresh(credential.id, 2, "c", T0 + 10, T0)
    assert await store.claim_credential_refresh(credential.id, 2, "d", T0 + 50, T0 + 11)
    other = await add_catalogue(store, "other")
    assert await store.get_credential(other.team.id, credential.id) is None


async def test_a_refused_refresh_marks_needs_reconnect_with_its_event_and_notification(
    store: Store, cat: Catalogue
) -> None:
    credential = make_credential(cat, cat.user.id, app="crm")
    await store.create_credential(credential)
    await store.set_error_stream(cat.team.id, "https://errors.example/in", "sealed")
    assert await store.claim_credential_refresh(credential.id, 1, "a", T0 + 30, T0)
    needs = event(cat, credential.id, "credential.needs_reconnect")
    assert await store.credential_refresh_refused(credential.id, 1, "a", "refused", T0 + 900,
                                                  T0, needs, b'{"event": "x"}')
    stored = await store.get_credential(cat.team.id, credential.id)
    assert stored is not None
    assert (stored.health, stored.health_reason, stored.refresh_blocked_until,
            stored.refresh_failures, stored.version) == (
        Health.NEEDS_RECONNECT, "refused", T0 + 900, 1, 2)
    # The cool-down keeps everyone from claiming until it ends.
    assert not await store.claim_credential_refresh(credential.id, 2, "b", T0 + 30, T0 + 899)
    assert await store.list_credential_events(cat.team.id, None, 10) == [needs]
    (notice,) = await store.claim_error_notifications(T0 + 1, T0 + 100, 10, 4)
    assert (notice.kind, notice.payload, notice.execution_id) == (
        "credential.needs_reconnect", b'{"event": "x"}', needs.id)
    # Reconnecting in place: healthy, same id, cool-down cleared, with its event.
    connected = event(cat, credential.id, "credential.reconnected", T0 + 5)
    fresh = make_credential(cat, cat.user.id, app="crm", at=T0 + 5, sealed="tokens-2")
    assert await store.save_connected_credential(fresh, credential.id, connected)
    stored = await store.get_credential(cat.team.id, credential.id)
    assert stored is not None
    assert (stored.health, stored.sealed, stored.refresh_blocked_until,
            stored.refresh_failures) == (Health.OK, "tokens-2", None, 0)
    assert [e.kind for e in await store.list_credential_events(cat.team.id, cat.user.id,
                                                                10)] == [
        "credential.reconnected", "credential.needs_reconnect"]
    assert not await store.save_connected_credential(fresh, "gone", connected)


async def test_the_redirect_url_is_the_teams_own(store: Store, cat: Catalogue) -> None:
    assert await store.get_oauth_redirect(cat.team.id) is None
    assert await store.set_oauth_redirect(cat.team.id, "https://app.example/back")
    assert await store.get_oauth_redirect(cat.team.id) == "https://app.example/back"
    other = await add_catalogue(store, "other")
    assert await store.get_oauth_redirect(other.team.id) is None
    assert not await store.set_oauth_redirect("no-team", "https://x.example")
