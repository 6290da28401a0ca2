"""The Store contract: what every backend must do, tested through the protocol alone."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest

from reflow.domain.executions import (
    ExecutionRecord,
    ExecutionStatus,
    StepRecord,
    StepStatus,
    TriggerMode,
)
from reflow.domain.records import ApiKey, Installation, Team, User, Workflow, WorkflowVersion
from reflow.errors import Conflict, LeaseLost
from reflow.ids import new_execution_id, new_object_id
from reflow.store.base import ExecutionQuery, Store
from reflow.store.revisions import head_revision, schema_problem

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms: every timestamp here is T0 + offset
_ticks = itertools.count(1)


def _execution_id() -> str:
    # Strictly increasing creation times, so id order is insertion order in every test.
    return new_execution_id(T0 + next(_ticks))


# -- factories ---------------------------------------------------------------------------


def make_team(name: str = "acme", retention: float | None = None, at: int = T0) -> Team:
    return Team(new_object_id(), name, at, retention)


def make_key(team: Team, prefix: str, at: int = T0) -> ApiKey:
    return ApiKey(new_object_id(), team.id, f"key {prefix}", prefix, at)


def make_user(team: Team, username: str = "ann@example.com") -> User:
    return User(new_object_id(), team.id, username, "Ann Example", T0)


def make_workflow(team: Team, name: str = "Order sync") -> tuple[Workflow, WorkflowVersion]:
    workflow = Workflow(new_object_id(), team.id, name, "shopify", 1, T0, T0)
    return workflow, WorkflowVersion(workflow.id, 1, b'{"v":1}', "digest-1", T0)


def make_step(seq: int, block_id: str | None = None, **changes: Any) -> StepRecord:
    step = StepRecord(
        seq=seq,
        block_id=block_id or f"block{seq}",
        status=StepStatus.SUCCEEDED,
        attempts=1,
        started_at=T0 + seq,
        stopped_at=T0 + seq + 1,
        input=orjson.dumps({"in": seq}),
        output=orjson.dumps({"out": seq}),
    )
    return replace(step, **changes)


@dataclass(frozen=True)
class Catalogue:
    """A team with one user who installed one workflow: what executions belong to."""

    team: Team
    user: User
    workflow: Workflow
    installation: Installation

    def execution(self, **changes: Any) -> ExecutionRecord:
        record = ExecutionRecord(
            id=_execution_id(),
            team_id=self.team.id,
            workflow_id=self.workflow.id,
            installation_id=self.installation.id,
            user_id=self.user.id,
            version=1,
            mode=TriggerMode.API,
            trigger=orjson.dumps({"data": {"orderId": 7}}),
            status=ExecutionStatus.QUEUED,
            created_at=T0,
        )
        return replace(record, **changes)

    def finished(
        self, status: ExecutionStatus, stopped_at: int, **changes: Any
    ) -> ExecutionRecord:
        return self.execution(status=status, started_at=stopped_at - 5, stopped_at=stopped_at,
                              **changes)


async def add_catalogue(store: Store, name: str = "acme") -> Catalogue:
    team = make_team(name)
    await store.create_team(team)
    user = make_user(team)
    await store.create_user(user)
    workflow, version = make_workflow(team)
    await store.create_workflow(workflow, version)
    installation = Installation(new_object_id(), team.id, workflow.id, user.id, 1, True, T0, T0)
    await store.save_installation(installation)
    return Catalogue(team, user, workflow, installation)


async def add_second_installation(store: Store, cat: Catalogue) -> tuple[User, Installation]:
    """A second user of the catalogue's team, with the same workflow installed."""
    user = make_user(cat.team, "bob@example.com")
    await store.create_user(user)
    installation = Installation(new_object_id(), cat.team.id, cat.workflow.id, user.id, 1,
                                True, T0, T0)
    await store.save_installation(installation)
    return user, installation


@pytest.fixture
async def cat(store: Store) -> Catalogue:
    """The first team's catalogue in the store under test."""
    return await add_catalogue(store)


# -- teams -------------------------------------------------------------------------------


async def test_new_database_has_no_teams_and_count_follows_creation(store: Store) -> None:
    assert await store.count_teams() == 0
    assert await store.list_teams() == []
    await store.create_team(make_team("a"))
    await store.create_team(make_team("b"))
    assert await store.count_teams() == 2


async def test_get_team_returns_the_stored_team_with_its_retention(store: Store) -> None:
    default, custom = make_team("default"), make_team("custom", retention=86_400)
    await store.create_team(default)
    await store.create_team(custom)
    assert await store.get_team(default.id) == default
    assert await store.get_team(custom.id) == custom
    assert await store.get_team(new_object_id()) is None


async def test_list_teams_is_oldest_first(store: Store) -> None:
    newer, older = make_team("newer", at=T0 + 10), make_team("older", at=T0)
    await store.create_team(newer)
    await store.create_team(older)
    assert await store.list_teams() == [older, newer]


async def test_team_env_is_stored_per_team_replaced_and_cleared(store: Store) -> None:
    acme, other = make_team("acme"), make_team("other")
    await store.create_team(acme)
    await store.create_team(other)
    assert await store.get_team_env(acme.id) is None

    assert await store.set_team_env(acme.id, b'{"shopUrl":"https://a.example"}') is True
    assert await store.set_team_env(other.id, b'{"shopUrl":"https://b.example"}') is True
    assert await store.set_team_env(acme.id, b'{"n":1}') is True

    assert await store.get_team_env(acme.id) == b'{"n":1}'
    assert await store.get_team_env(other.id) == b'{"shopUrl":"https://b.example"}'
    assert await store.get_team(acme.id) == acme  # the env is not part of the team record
    assert await store.set_team_env(acme.id, None) is True
    assert await store.get_team_env(acme.id) is None


async def test_set_team_env_of_an_unknown_team_stores_nothing(store: Store) -> None:
    missing = new_object_id()
    assert await store.set_team_env(missing, b"{}") is False
    assert await store.get_team_env(missing) is None


# -- api keys ----------------------------------------------------------------------------


async def test_find_api_key_by_hash_returns_the_live_key(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    key = make_key(team, "rf_aaaa")
    await store.create_api_key(key, "hash-a")
    assert await store.find_api_key("hash-a") == key
    assert await store.find_api_key("hash-unknown") is None


async def test_revoked_key_is_not_found_by_hash_but_stays_listed(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    key = make_key(team, "rf_aaaa")
    await store.create_api_key(key, "hash-a")
    assert await store.revoke_api_key(team.id, key.id, T0 + 50) is True
    assert await store.find_api_key("hash-a") is None
    assert await store.list_api_keys(team.id) == [replace(key, revoked_at=T0 + 50)]


async def test_revoke_api_key_by_prefix_revokes_only_that_key(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    kept, revoked = make_key(team, "rf_keep"), make_key(team, "rf_drop", at=T0 + 1)
    await store.create_api_key(kept, "hash-keep")
    await store.create_api_key(revoked, "hash-drop")
    assert await store.revoke_api_key(team.id, "rf_drop", T0 + 9) is True
    assert await store.find_api_key("hash-drop") is None
    assert await store.find_api_key("hash-keep") == kept


async def test_revoke_api_key_answers_false_when_no_live_key_matches(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    key = make_key(team, "rf_aaaa")
    await store.create_api_key(key, "hash-a")
    assert await store.revoke_api_key(team.id, "rf_unknown", T0) is False
    assert await store.revoke_api_key(team.id, key.id, T0 + 1) is True
    assert await store.revoke_api_key(team.id, key.id, T0 + 2) is False
    # The second attempt did not move the revocation time.
    assert (await store.list_api_keys(team.id))[0].revoked_at == T0 + 1


async def test_keys_are_listed_and_revoked_only_within_their_team(store: Store) -> None:
    ours, theirs = make_team("ours"), make_team("theirs")
    await store.create_team(ours)
    await store.create_team(theirs)
    key = make_key(theirs, "rf_them")
    await store.create_api_key(key, "hash-them")
    assert await store.list_api_keys(ours.id) == []
    assert await store.revoke_api_key(ours.id, key.id, T0) is False
    assert await store.revoke_api_key(ours.id, "rf_them", T0) is False
    assert await store.find_api_key("hash-them") == key


# -- users -------------------------------------------------------------------------------


async def test_get_user_finds_a_user_by_id_or_username(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    user = make_user(team, "ann@example.com")
    await store.create_user(user)
    assert await store.get_user(team.id, user.id) == user
    assert await store.get_user(team.id, "ann@example.com") == user
    assert await store.get_user(team.id, "bob@example.com") is None


async def test_get_user_prefers_the_id_when_another_username_equals_it(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    first = make_user(team, "first")
    await store.create_user(first)
    impostor = make_user(team, first.id)
    await store.create_user(impostor)
    assert await store.get_user(team.id, first.id) == first


async def test_taken_username_raises_conflict(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    await store.create_user(make_user(team, "ann@example.com"))
    with pytest.raises(Conflict):
        await store.create_user(make_user(team, "ann@example.com"))


async def test_another_teams_user_is_not_found(store: Store) -> None:
    ours, theirs = make_team("ours"), make_team("theirs")
    await store.create_team(ours)
    await store.create_team(theirs)
    user = make_user(theirs, "ann@example.com")
    await store.create_user(user)
    assert await store.get_user(ours.id, user.id) is None
    assert await store.get_user(ours.id, "ann@example.com") is None


async def test_the_same_username_may_exist_in_two_teams(store: Store) -> None:
    ours, theirs = make_team("ours"), make_team("theirs")
    await store.create_team(ours)
    await store.create_team(theirs)
    mine, other = make_user(ours, "ann"), make_user(theirs, "ann")
    await store.create_user(mine)
    await store.create_user(other)
    assert await store.get_user(ours.id, "ann") == mine
    assert await store.get_user(theirs.id, "ann") == other


# -- workflows and versions --------------------------------------------------------------


async def test_created_workflow_has_version_1(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    workflow, version = make_workflow(team)
    await store.create_workflow(workflow, version)
    assert await store.get_workflow(team.id, workflow.id) == workflow
    assert await store.get_version(team.id, workflow.id, 1) == version
    assert await store.list_versions(team.id, workflow.id) == [version]
    assert await store.get_version(team.id, workflow.id, 2) is None


async def test_add_version_increments_and_stores_the_definition(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    workflow, first = make_workflow(team, "Order sync")
    await store.create_workflow(workflow, first)
    renamed = replace(workflow, name="Order sync v2", integration="stripe")
    second = await store.add_version(renamed, b'{"v":2}', "digest-2", T0 + 100)
    third = await store.add_version(renamed, b'{"v":3}', "digest-3", T0 + 200)
    assert second == WorkflowVersion(workflow.id, 2, b'{"v":2}', "digest-2", T0 + 100)
    assert third.version == 3
    assert await store.get_version(team.id, workflow.id, 2) == second
    assert await store.list_versions(team.id, workflow.id) == [first, second, third]
    stored = await store.get_workflow(team.id, workflow.id)
    assert stored == replace(workflow, name="Order sync v2", integration="stripe",
                             latest_version=3, updated_at=T0 + 200)


async def test_get_workflow_by_id_or_name(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    workflow, version = make_workflow(team, "Order sync")
    await store.create_workflow(workflow, version)
    assert await store.get_workflow(team.id, "Order sync") == workflow
    assert await store.get_workflow(team.id, workflow.id) == workflow
    assert await store.get_workflow(team.id, "Unknown") is None


async def test_taken_workflow_name_raises_conflict_and_stores_nothing(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    workflow, version = make_workflow(team, "Order sync")
    await store.create_workflow(workflow, version)
    duplicate, duplicate_version = make_workflow(team, "Order sync")
    with pytest.raises(Conflict):
        await store.create_workflow(duplicate, duplicate_version)
    assert await store.list_workflows(team.id) == [workflow]
    assert await store.list_versions(team.id, duplicate.id) == []


async def test_add_version_renaming_to_a_taken_name_raises_conflict(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    taken, taken_version = make_workflow(team, "Taken")
    other, other_version = make_workflow(team, "Other")
    await store.create_workflow(taken, taken_version)
    await store.create_workflow(other, other_version)
    with pytest.raises(Conflict):
        await store.add_version(replace(other, name="Taken"), b"{}", "d", T0 + 1)
    assert await store.get_workflow(team.id, other.id) == other
    assert await store.list_versions(team.id, other.id) == [other_version]


async def test_list_workflows_orders_by_name(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    created = [make_workflow(team, name) for name in ("b", "c", "a")]
    for workflow, version in created:
        await store.create_workflow(workflow, version)
    names = [w.name for w in await store.list_workflows(team.id)]
    assert names == ["a", "b", "c"]


async def test_another_teams_workflow_and_versions_are_not_found(store: Store) -> None:
    ours, theirs = make_team("ours"), make_team("theirs")
    await store.create_team(ours)
    await store.create_team(theirs)
    workflow, version = make_workflow(theirs, "Theirs")
    await store.create_workflow(workflow, version)
    assert await store.get_workflow(ours.id, workflow.id) is None
    assert await store.get_workflow(ours.id, "Theirs") is None
    assert await store.list_workflows(ours.id) == []
    assert await store.get_version(ours.id, workflow.id, 1) is None
    assert await store.list_versions(ours.id, workflow.id) == []


async def test_two_teams_may_use_the_same_workflow_name(store: Store) -> None:
    ours, theirs = make_team("ours"), make_team("theirs")
    await store.create_team(ours)
    await store.create_team(theirs)
    for team in (ours, theirs):
        workflow, version = make_workflow(team, "Order sync")
        await store.create_workflow(workflow, version)
        assert await store.get_workflow(team.id, "Order sync") == workflow


# -- installations -----------------------------------------------------------------------


async def test_saved_installation_is_found_by_workflow_and_user_or_by_id(
    store: Store, cat: Catalogue
) -> None:
    installation = cat.installation
    found = await store.get_installation(cat.team.id, cat.workflow.id, cat.user.id)
    assert found == installation
    assert await store.get_installation_by_id(cat.team.id, installation.id) == installation
    assert await store.get_installation_by_id(cat.team.id, new_object_id()) is None


async def test_saving_an_installation_again_updates_it(store: Store, cat: Catalogue) -> None:
    changed = replace(cat.installation, installed_version=2, active=False, updated_at=T0 + 99)
    await store.save_installation(changed)
    assert await store.get_installation_by_id(cat.team.id, changed.id) == changed
    found = await store.get_installation(cat.team.id, cat.workflow.id, cat.user.id)
    assert found == changed


async def test_another_teams_installation_is_not_found(store: Store, cat: Catalogue) -> None:
    other = await add_catalogue(store, "other")
    assert await store.get_installation_by_id(other.team.id, cat.installation.id) is None
    assert await store.get_installation(other.team.id, cat.workflow.id, cat.user.id) is None


# -- executions: writing and reading -----------------------------------------------------


async def test_inserted_execution_reads_back_with_its_steps(store: Store, cat: Catalogue) -> None:
    record = cat.execution(
        status=ExecutionStatus.RUNNING, started_at=T0 + 1, lease_owner="w1",
        lease_expires=T0 + 30_000, steps=[make_step(0), make_step(1)],
    )
    await store.insert_execution(record)
    assert await store.get_execution(cat.team.id, record.id) == record


async def test_writes_made_together_keep_their_own_outcome_when_one_of_them_fails(
    store: Store, cat: Catalogue
) -> None:
    # Written in the same moment (a backend may commit them together): the duplicate is
    # refused, and the others are stored with all their steps.
    first = cat.execution(steps=[make_step(0), make_step(1)])
    await store.insert_execution(first)
    again = replace(first, steps=[make_step(0)])
    others = [cat.execution(steps=[make_step(0), make_step(1), make_step(2)]) for _ in range(3)]
    results = await asyncio.gather(
        store.insert_execution(others[0]), store.insert_execution(again),
        store.insert_execution(others[1]), store.insert_execution(others[2]),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [type(None), Conflict, type(None), type(None)]
    for record in others:
        assert await store.get_execution(cat.team.id, record.id) == record
    assert await store.get_execution(cat.team.id, first.id) == first


async def test_save_execution_appends_steps_and_updates_status(
    store: Store, cat: Catalogue
) -> None:
    record = cat.execution(status=ExecutionStatus.RUNNING, started_at=T0 + 1,
                           lease_owner="w1", lease_expires=T0 + 30_000, steps=[make_step(0)])
    await store.insert_execution(record)
    failed = make_step(2, "notify", status=StepStatus.FAILED, output=None, error="HTTP 500",
                       attempts=3)
    record.status = ExecutionStatus.FAILED
    record.stopped_at = T0 + 500
    record.output = b'{"ok":false}'
    record.response_status = 502
    record.error = orjson.dumps({"message": "HTTP 500", "blockId": "notify"})
    record.lease_owner = record.lease_expires = None
    await store.save_execution(record, [make_step(1), failed], owner="w1")
    stored = await store.get_execution(cat.team.id, record.id)
    assert stored is not None
    assert stored == replace(record, steps=[make_step(0), make_step(1), failed])


async def test_steps_come_back_in_seq_order(store: Store, cat: Catalogue) -> None:
    record = cat.execution(status=ExecutionStatus.RUNNING, lease_owner="w1",
                           lease_expires=T0 + 30_000, steps=[make_step(1), make_step(0)])
    await store.insert_execution(record)
    await store.save_execution(record, [make_step(3), make_step(2)], owner="w1")
    stored = await store.get_execution(cat.team.id, record.id)
    assert stored is not None
    assert [s.seq for s in stored.steps] == [0, 1, 2, 3]


async def test_step_fields_round_trip(store: Store, cat: Catalogue) -> None:
    step = make_step(0, "big", reused=True, truncated=True, error=None, attempts=4)
    record = cat.execution(steps=[step])
    await store.insert_execution(record)
    stored = await store.get_execution(cat.team.id, record.id)
    assert stored is not None
    assert stored.steps == [step]


async def test_get_execution_lists_its_reruns_oldest_first(store: Store, cat: Catalogue) -> None:
    source = cat.finished(ExecutionStatus.FAILED, T0 + 10)
    await store.insert_execution(source)
    reruns = [cat.execution(mode=TriggerMode.RERUN, rerun_of=source.id) for _ in range(2)]
    for each in reruns:
        await store.insert_execution(each)
    stored = await store.get_execution(cat.team.id, source.id)
    assert stored is not None
    assert stored.reruns == [r.id for r in reruns]
    rerun = await store.get_execution(cat.team.id, reruns[0].id)
    assert rerun is not None
    assert rerun.rerun_of == source.id
    assert rerun.reruns == []


async def test_another_teams_execution_is_not_found(store: Store, cat: Catalogue) -> None:
    other = await add_catalogue(store, "other")
    record = cat.execution()
    await store.insert_execution(record)
    assert await store.get_execution(other.team.id, record.id) is None
    assert await store.get_execution(cat.team.id, _execution_id()) is None


async def test_execution_status_reads_just_the_status(store: Store, cat: Catalogue) -> None:
    record = cat.finished(ExecutionStatus.SUCCEEDED, T0 + 5)
    await store.insert_execution(record)
    assert await store.execution_status(cat.team.id, record.id) == "succeeded"
    assert await store.execution_status(cat.team.id, _execution_id()) is None
    assert await store.execution_status(new_object_id(), record.id) is None  # another team's


# -- executions: listing -----------------------------------------------------------------


async def _five(store: Store, cat: Catalogue) -> list[ExecutionRecord]:
    """Five executions, oldest first; the second and fourth failed."""
    statuses = [ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.SUCCEEDED,
                ExecutionStatus.FAILED, ExecutionStatus.RUNNING]
    records = [
        cat.execution(status=s, steps=[make_step(0)]) if s is ExecutionStatus.RUNNING
        else cat.finished(s, T0 + i, steps=[make_step(0)])
        for i, s in enumerate(statuses)
    ]
    for record in records:
        await store.insert_execution(record)
    return records


def _ids(records: list[ExecutionRecord]) -> list[str]:
    return [r.id for r in records]


async def test_list_executions_of_a_workflow_newest_first_by_default(
    store: Store, cat: Catalogue
) -> None:
    records = await _five(store, cat)
    page = await store.list_executions(ExecutionQuery(cat.team.id, cat.workflow.id))
    assert _ids(page) == _ids(records)[::-1]
    assert page[0].steps == [make_step(0)]


async def test_list_executions_oldest_first_with_offset_and_limit(
    store: Store, cat: Catalogue
) -> None:
    records = await _five(store, cat)
    query = ExecutionQuery(cat.team.id, cat.workflow.id, descending=False, offset=1, limit=2)
    assert _ids(await store.list_executions(query)) == _ids(records[1:3])
    newest = ExecutionQuery(cat.team.id, cat.workflow.id, offset=1, limit=2)
    assert _ids(await store.list_executions(newest)) == [records[3].id, records[2].id]


async def test_list_executions_failed_only(store: Store, cat: Catalogue) -> None:
    records = await _five(store, cat)
    query = ExecutionQuery(cat.team.id, cat.workflow.id, failed_only=True, descending=False)
    assert _ids(await store.list_executions(query)) == [records[1].id, records[3].id]


async def test_list_executions_of_one_installation(store: Store, cat: Catalogue) -> None:
    mine = await _five(store, cat)
    second_user = make_user(cat.team, "bob@example.com")
    await store.create_user(second_user)
    theirs = Installation(new_object_id(), cat.team.id, cat.workflow.id, second_user.id,
                          1, True, T0, T0)
    await store.save_installation(theirs)
    bobs = cat.execution(installation_id=theirs.id, user_id=second_user.id)
    await store.insert_execution(bobs)
    by_installation = ExecutionQuery(cat.team.id, cat.workflow.id,
                                     installation_id=cat.installation.id, descending=False)
    assert _ids(await store.list_executions(by_installation)) == _ids(mine)
    everyone = ExecutionQuery(cat.team.id, cat.workflow.id, limit=100)
    assert bobs.id in _ids(await store.list_executions(everyone))


async def test_list_executions_is_scoped_to_the_team(store: Store, cat: Catalogue) -> None:
    await _five(store, cat)
    other = await add_catalogue(store, "other")
    by_workflow = ExecutionQuery(other.team.id, cat.workflow.id)
    assert await store.list_executions(by_workflow) == []
    by_installation = ExecutionQuery(other.team.id, cat.workflow.id,
                                     installation_id=cat.installation.id)
    assert await store.list_executions(by_installation) == []


async def test_listed_executions_carry_their_reruns(store: Store, cat: Catalogue) -> None:
    source = cat.finished(ExecutionStatus.FAILED, T0 + 1)
    await store.insert_execution(source)
    rerun = cat.execution(mode=TriggerMode.RERUN, rerun_of=source.id)
    await store.insert_execution(rerun)
    page = await store.list_executions(ExecutionQuery(cat.team.id, cat.workflow.id,
                                                      descending=False))
    assert [(r.id, r.reruns) for r in page] == [(source.id, [rerun.id]), (rerun.id, [])]


# -- executions: claiming and leases -----------------------------------------------------


async def test_a_queued_execution_is_claimed_once(store: Store, cat: Catalogue) -> None:
    record = cat.execution()
    await store.insert_execution(record)
    claimed = await store.claim_executions("w1", T0 + 100, T0 + 30_100, 10)
    assert [c.id for c in claimed] == [record.id]
    first = claimed[0]
    assert first.status is ExecutionStatus.RUNNING
    assert (first.lease_owner, first.lease_expires) == ("w1", T0 + 30_100)
    assert first.started_at == T0 + 100
    assert await store.claim_executions("w2", T0 + 200, T0 + 30_200, 10) == []
    assert await store.execution_status(cat.team.id, record.id) == "running"


async def test_claim_takes_at_most_limit_oldest_first(store: Store, cat: Catalogue) -> None:
    records = [cat.execution() for _ in range(3)]
    for record in records:
        await store.insert_execution(record)
    first = await store.claim_executions("w1", T0 + 100, T0 + 30_100, 2)
    rest = await store.claim_executions("w2", T0 + 100, T0 + 30_100, 2)
    assert [c.id for c in first] == _ids(records[:2])
    assert [c.id for c in rest] == [records[2].id]


async def test_running_execution_with_expired_lease_is_claimable_again(
    store: Store, cat: Catalogue
) -> None:
    record = cat.execution(status=ExecutionStatus.RUNNING, started_at=T0 + 1,
                           lease_owner="dead", lease_expires=T0 + 1_000)
    await store.insert_execution(record)
    claimed = await store.claim_executions("w2", T0 + 1_001, T0 + 31_001, 10)
    assert [c.id for c in claimed] == [record.id]
    # A resumed execution keeps the time it first started.
    assert claimed[0].started_at == T0 + 1
    assert (claimed[0].lease_owner, claimed[0].lease_expires) == ("w2", T0 + 31_001)


async def test_running_execution_with_unexpired_lease_is_not_claimable(
    store: Store, cat: Catalogue
) -> None:
    record = cat.execution(status=ExecutionStatus.RUNNING, started_at=T0 + 1,
                           lease_owner="alive", lease_expires=T0 + 1_000)
    await store.insert_execution(record)
    assert await store.claim_executions("w2", T0 + 999, T0 + 30_999, 10) == []
    stored = await store.get_execution(cat.team.id, record.id)
    assert stored is not None
    assert stored.lease_owner == "alive"


async def test_finished_executions_are_never_claimed(store: Store, cat: Catalogue) -> None:
    for status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED):
        await store.insert_execution(cat.finished(status, T0 + 1))
    assert await store.claim_executions("w1", T0 + 10**9, T0 + 10**9 + 1, 10) == []


async def test_claimed_records_come_with_their_steps(store: Store, cat: Catalogue) -> None:
    record = cat.execution(status=ExecutionStatus.RUNNING, started_at=T0 + 1,
                           lease_owner="dead", lease_expires=T0 + 10,
                           steps=[make_step(0), make_step(1)])
    await store.insert_execution(record)
    claimed = await store.claim_executions("w2", T0 + 11, T0 + 30_011, 10)
    assert [c.steps for c in claimed] == [[make_step(0), make_step(1)]]


async def test_renew_leases_extends_only_the_owners_leases(store: Store, cat: Catalogue) -> None:
    mine = cat.execution()
    theirs = cat.execution()
    await store.insert_execution(mine)
    await store.insert_execution(theirs)
    await store.claim_executions("w1", T0, T0 + 1_000, 1)
    await store.claim_executions("w2", T0, T0 + 1_000, 1)
    await store.renew_leases("w1", [mine.id, theirs.id], T0 + 5_000)
    # At T0 + 2000 only the lease w1 did not renew (w2's) has run out.
    claimed = await store.claim_executions("w3", T0 + 2_000, T0 + 32_000, 10)
    assert [c.id for c in claimed] == [theirs.id]
    stored = await store.get_execution(cat.team.id, mine.id)
    assert stored is not None
    assert (stored.lease_owner, stored.lease_expires) == ("w1", T0 + 5_000)


async def test_renew_leases_reports_the_leases_it_no_longer_holds(
    store: Store, cat: Catalogue
) -> None:
    mine, taken = cat.execution(), cat.execution()
    for record in (mine, taken):
        await store.insert_execution(record)
    await store.claim_executions("w1", T0, T0 + 1_000, 2)
    # w1 stalled past its lease; w2 took one of the two over.
    [took] = await store.claim_executions("w2", T0 + 2_000, T0 + 32_000, 1)
    lost = await store.renew_leases("w1", [mine.id, taken.id], T0 + 5_000)
    assert lost == [took.id]
    stored = await store.get_execution(cat.team.id, took.id)
    assert stored is not None
    assert (stored.lease_owner, stored.lease_expires) == ("w2", T0 + 32_000)


async def test_a_write_by_a_worker_that_lost_the_lease_changes_nothing(
    store: Store, cat: Catalogue
) -> None:
    record = cat.execution(steps=[make_step(0)])
    await store.insert_execution(record)
    [stale] = await store.claim_executions("w1", T0, T0 + 1_000, 1)
    [fresh] = await store.claim_executions("w2", T0 + 2_000, T0 + 32_000, 1)
    stale.status = ExecutionStatus.SUCCEEDED
    stale.stopped_at = T0 + 3_000
    stale.lease_owner = stale.lease_expires = None
    with pytest.raises(LeaseLost):
        await store.save_execution(stale, [make_step(1)], owner="w1")
    stored = await store.get_execution(cat.team.id, record.id)
    assert stored is not None
    assert stored == fresh  # still w2's: no status, lease or step of w1's was written
    # The owner's own write still goes through.
    fresh.status, fresh.stopped_at = ExecutionStatus.SUCCEEDED, T0 + 4_000
    fresh.lease_owner = fresh.lease_expires = None
    await store.save_execution(fresh, [make_step(1)], owner="w2")
    stored = await store.get_execution(cat.team.id, record.id)
    assert stored is not None
    assert (stored.status, [s.seq for s in stored.steps]) == (ExecutionStatus.SUCCEEDED, [0, 1])


async def test_lost_lease_of_one_writer_does_not_fail_writes_committed_with_it(
    store: Store, cat: Catalogue
) -> None:
    records = [cat.execution() for _ in range(3)]
    for record in records:
        await store.insert_execution(record)
    claimed = await store.claim_executions("w1", T0, T0 + 30_000, 3)
    by_id = {c.id: c for c in claimed}
    owners = ["w1", "intruder", "w1"]
    results = await asyncio.gather(*(
        store.save_execution(by_id[r.id], [make_step(0)], owner=o)
        for r, o in zip(records, owners, strict=True)
    ), return_exceptions=True)
    assert [type(r) for r in results] == [type(None), LeaseLost, type(None)]
    steps = [len((await store.get_execution(cat.team.id, r.id)).steps)  # type: ignore[union-attr]
             for r in records]
    assert steps == [1, 0, 1]


async def test_a_burst_of_10000_runs_does_not_starve_another_users_single_run(
    store: Store, cat: Catalogue
) -> None:
    other_user, other = await add_second_installation(store, cat)
    await asyncio.gather(*(store.insert_execution(cat.execution()) for _ in range(10_000)))
    single = cat.execution(installation_id=other.id, user_id=other_user.id)
    await store.insert_execution(single)
    # Claimed in the first batch of 32, ahead of 9,999 older runs of the burst.
    claimed = await store.claim_executions("w1", T0, T0 + 30_000, 32)
    assert len(claimed) == 32 and single.id in {c.id for c in claimed}


async def test_claims_interleave_installations_so_a_burst_does_not_starve_one_run(
    store: Store, cat: Catalogue
) -> None:
    other_user, other = await add_second_installation(store, cat)
    burst = [cat.execution() for _ in range(50)]
    for record in burst:
        await store.insert_execution(record)
    single = cat.execution(installation_id=other.id, user_id=other_user.id)
    await store.insert_execution(single)
    claimed = await store.claim_executions("w1", T0, T0 + 30_000, 4)
    assert len(claimed) == 4
    assert single.id in {c.id for c in claimed}
    # Within an installation, oldest first.
    assert [c.id for c in claimed if c.id != single.id] == [r.id for r in burst[:3]]


# -- retention purge ---------------------------------------------------------------------


async def test_purge_deletes_only_finished_executions_stopped_before_the_cutoff(
    store: Store, cat: Catalogue
) -> None:
    old = [cat.finished(s, T0 + 10, steps=[make_step(0)]) for s in
           (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)]
    recent = cat.finished(ExecutionStatus.SUCCEEDED, T0 + 1_000)
    # A running execution with a stale stopped_at (e.g. one being resumed) is still running.
    running = cat.execution(status=ExecutionStatus.RUNNING, started_at=T0, stopped_at=T0 + 1)
    queued = cat.execution(created_at=T0)
    for record in [*old, recent, running, queued]:
        await store.insert_execution(record)
    assert await store.purge_executions(T0 + 1_000, 100) == 3
    for record in old:
        assert await store.get_execution(cat.team.id, record.id) is None
    for record in (recent, running, queued):
        assert await store.get_execution(cat.team.id, record.id) is not None
    assert await store.purge_executions(T0 + 1_000, 100) == 0


async def test_purge_works_in_batches_of_at_most_limit(store: Store, cat: Catalogue) -> None:
    old = [cat.finished(ExecutionStatus.SUCCEEDED, T0 + i) for i in range(5)]
    for record in old:
        await store.insert_execution(record)
    assert await store.purge_executions(T0 + 100, 2) == 2
    # Oldest stopped first, so the window shrinks from its old end.
    assert await store.get_execution(cat.team.id, old[0].id) is None
    assert await store.get_execution(cat.team.id, old[1].id) is None
    assert await store.get_execution(cat.team.id, old[2].id) is not None
    assert await store.purge_executions(T0 + 100, 2) == 2
    assert await store.purge_executions(T0 + 100, 2) == 1
    assert await store.purge_executions(T0 + 100, 2) == 0


async def test_purge_deletes_the_steps_too(store: Store, cat: Catalogue) -> None:
    record = cat.finished(ExecutionStatus.SUCCEEDED, T0 + 1, steps=[make_step(0), make_step(1)])
    await store.insert_execution(record)
    assert await store.purge_executions(T0 + 100, 10) == 1
    # Reusing the id shows no orphaned steps are left to attach to it.
    again = replace(record, steps=[])
    await store.insert_execution(again)
    stored = await store.get_execution(cat.team.id, record.id)
    assert stored is not None
    assert stored.steps == []


async def test_purging_a_source_keeps_its_newer_rerun_and_its_lineage(
    store: Store, cat: Catalogue
) -> None:
    source = cat.finished(ExecutionStatus.FAILED, T0 + 1)
    await store.insert_execution(source)
    rerun = cat.finished(ExecutionStatus.SUCCEEDED, T0 + 1_000, mode=TriggerMode.RERUN,
                         rerun_of=source.id)
    await store.insert_execution(rerun)
    assert await store.purge_executions(T0 + 500, 10) == 1
    stored = await store.get_execution(cat.team.id, rerun.id)
    # The rerun still says where it came from, so logs can explain the purged source.
    assert stored is not None
    assert stored.rerun_of == source.id


# -- concurrency: what a backend shared by many workers must keep -------------------------


async def test_concurrent_claimers_never_take_the_same_execution(
    store: Store, cat: Catalogue
) -> None:
    records = [cat.execution() for _ in range(20)]
    for record in records:
        await store.insert_execution(record)
    claims = await asyncio.gather(*(
        store.claim_executions(f"w{n}", T0, T0 + 30_000, 8) for n in range(3)
    ))
    taken = [c.id for claim in claims for c in claim]
    assert len(taken) == len(set(taken))
    # What one claimer skipped (locked by another) is left for the next claim.
    taken += [c.id for c in await store.claim_executions("w9", T0, T0 + 30_000, 20)]
    assert sorted(taken) == sorted(_ids(records))


async def test_concurrent_purgers_delete_each_execution_once(
    store: Store, cat: Catalogue
) -> None:
    old = [cat.finished(ExecutionStatus.SUCCEEDED, T0 + i, steps=[make_step(0)])
           for i in range(10)]
    for record in old:
        await store.insert_execution(record)
    purged = 0
    for _ in range(len(old)):  # bounded: each round deletes at least one while any is left
        counts = await asyncio.gather(store.purge_executions(T0 + 100, 3),
                                      store.purge_executions(T0 + 100, 3))
        if not any(counts):
            break
        purged += sum(counts)
    assert purged == len(old)
    for record in old:
        assert await store.get_execution(cat.team.id, record.id) is None


# -- shutdown, bootstrap, readiness --------------------------------------------------------


async def test_released_leases_are_claimable_at_once_without_counting_a_resume(
    store: Store, cat: Catalogue
) -> None:
    mine, theirs = cat.execution(), cat.execution()
    for record in (mine, theirs):
        await store.insert_execution(record)
    await store.claim_executions("w1", T0, T0 + 30_000, 1)
    await store.claim_executions("w2", T0, T0 + 30_000, 1)
    # A graceful stop gives w1's back; w2's lease is not w1's to release.
    assert await store.release_leases("w1", [mine.id, theirs.id]) == 1
    [claimed] = await store.claim_executions("w3", T0 + 1, T0 + 30_001, 10)
    assert (claimed.id, claimed.resumes, claimed.lease_owner) == (mine.id, 0, "w3")


async def test_a_lapsed_lease_is_claimed_as_a_resume(store: Store, cat: Catalogue) -> None:
    record = cat.execution()
    await store.insert_execution(record)
    await store.claim_executions("dies", T0, T0 + 1_000, 1)
    [claimed] = await store.claim_executions("w2", T0 + 2_000, T0 + 32_000, 1)
    assert (claimed.id, claimed.resumes) == (record.id, 1)


async def test_the_first_team_is_created_once_however_many_bootstrap_at_once(
    store: Store,
) -> None:
    teams = [make_team(f"default {i}") for i in range(4)]
    created = await asyncio.gather(*(store.create_first_team(t) for t in teams))
    assert sorted(created) == [False, False, False, True]
    assert [t.id for t in await store.list_teams()] == [teams[created.index(True)].id]


async def test_ping_accepts_the_head_and_a_newer_schema_but_not_an_older_one(
    store: Store,
) -> None:
    await store.ping()  # migrated to this code's head
    assert schema_problem(head_revision()) is None
    # Another host ran a later release's migrations: additive, so this code still works.
    assert schema_problem("9999_from_a_later_release") is None
    behind = schema_problem("0001")
    assert behind is not None and "run `reflow db upgrade`" in behind
    assert schema_problem(None) is not None


# -- users: listing, changing, deleting ----------------------------------------------------


async def test_list_users_is_the_teams_live_users_oldest_first(store: Store) -> None:
    ours, theirs = make_team("ours"), make_team("theirs")
    await store.create_team(ours)
    await store.create_team(theirs)
    late = replace(make_user(ours, "late"), created_at=T0 + 5)
    early = replace(make_user(ours, "early"), created_at=T0 + 1)
    for user in (late, early, make_user(theirs, "other")):
        await store.create_user(user)
    assert await store.list_users(ours.id) == [early, late]


async def test_list_users_of_a_workflow_is_only_its_installers(
    store: Store, cat: Catalogue
) -> None:
    await store.create_user(make_user(cat.team, "never-installed"))
    bob, _ = await add_second_installation(store, cat)
    # Both created at T0: listed by id then.
    expected = sorted([cat.user, bob], key=lambda u: u.id)
    assert await store.list_users(cat.team.id, cat.workflow.id) == expected
    other, version = make_workflow(cat.team, "Unused")
    await store.create_workflow(other, version)
    assert await store.list_users(cat.team.id, other.id) == []


async def test_create_users_inserts_all_of_them(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    # Same creation time: listed by id, so the ids are given in order (as the service does).
    ids = sorted(new_object_id() for _ in range(3))
    users = [replace(make_user(team, f"user{i}"), id=ids[i]) for i in range(3)]
    await store.create_users(users)
    assert await store.list_users(team.id) == users


async def test_create_users_with_one_taken_username_stores_none(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    await store.create_user(make_user(team, "taken"))
    with pytest.raises(Conflict):
        await store.create_users([make_user(team, "fresh"), make_user(team, "taken")])
    assert [u.username for u in await store.list_users(team.id)] == ["taken"]
    assert await store.taken_usernames(team.id, ["fresh", "taken", "x"]) == {"taken"}


async def test_update_user_changes_its_username_and_full_name(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    user = make_user(team, "ann")
    await store.create_user(user)
    changed = replace(user, username="anne", full_name=None)
    assert await store.update_user(changed)
    assert await store.get_user(team.id, "anne") == changed
    assert await store.get_user(team.id, "ann") is None


async def test_update_user_to_a_taken_username_raises_conflict(store: Store) -> None:
    team = make_team()
    await store.create_team(team)
    ann, bob = make_user(team, "ann"), make_user(team, "bob")
    await store.create_user(ann)
    await store.create_user(bob)
    with pytest.raises(Conflict):
        await store.update_user(replace(bob, username="ann"))
    assert await store.get_user(team.id, bob.id) == bob


async def test_deleted_user_is_gone_its_username_free_and_its_installations_inactive(
    store: Store, cat: Catalogue
) -> None:
    assert await store.delete_user(cat.team.id, cat.user.id, T0 + 9)
    assert await store.get_user(cat.team.id, cat.user.id) is None
    assert await store.get_user(cat.team.id, cat.user.username) is None
    assert await store.get_user_any(cat.team.id, cat.user.id) == cat.user
    assert await store.list_users(cat.team.id) == []
    assert await store.taken_usernames(cat.team.id, [cat.user.username]) == set()
    installation = await store.get_installation_by_id(cat.team.id, cat.installation.id)
    assert installation is not None
    assert (installation.active, installation.updated_at) == (False, T0 + 9)
    again = make_user(cat.team, cat.user.username)
    await store.create_user(again)
    assert await store.get_user(cat.team.id, cat.user.username) == again
    assert not await store.delete_user(cat.team.id, cat.user.id, T0 + 10)
    assert not await store.update_user(replace(cat.user, full_name="x"))


async def test_deleting_a_user_keeps_its_executions(store: Store, cat: Catalogue) -> None:
    record = cat.finished(ExecutionStatus.SUCCEEDED, T0 + 50)
    await store.insert_execution(record)
    await store.delete_user(cat.team.id, cat.user.id, T0 + 60)
    assert await store.get_execution(cat.team.id, record.id) is not None


async def test_deactivate_user_installations_counts_the_active_ones(
    store: Store, cat: Catalogue
) -> None:
    assert await store.deactivate_user_installations(cat.team.id, cat.user.id, T0 + 3) == 1
    assert await store.deactivate_user_installations(cat.team.id, cat.user.id, T0 + 4) == 0
    installation = await store.get_installation(cat.team.id, cat.workflow.id, cat.user.id)
    assert installation is not None and not installation.active


async def test_delete_user_executions_removes_only_that_users_with_steps_and_keys(
    store: Store, cat: Catalogue
) -> None:
    bob, bobs_installation = await add_second_installation(store, cat)
    mine = [cat.finished(status, T0 + 20 + i, steps=[make_step(1)])
            for i, status in enumerate((ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED,
                                        ExecutionStatus.CANCELLED))]
    for i, record in enumerate(mine):
        await store.insert_execution(record, f"key-{i}")
    theirs = replace(cat.finished(ExecutionStatus.SUCCEEDED, T0 + 30),
                     user_id=bob.id, installation_id=bobs_installation.id)
    await store.insert_execution(theirs, "their-key")
    assert await store.delete_user_executions(cat.team.id, cat.user.id) == 3
    for record in mine:
        assert await store.get_execution(cat.team.id, record.id) is None
    assert await store.find_idempotency_key(cat.team.id, "key-0") is None
    assert await store.get_execution(cat.team.id, theirs.id) is not None
    assert await store.find_idempotency_key(cat.team.id, "their-key") == theirs.id
    assert await store.delete_user_executions(cat.team.id, cat.user.id) == 0


async def test_delete_user_executions_refuses_while_one_is_unfinished(
    store: Store, cat: Catalogue
) -> None:
    done = cat.finished(ExecutionStatus.SUCCEEDED, T0 + 20)
    queued = cat.execution()
    await store.insert_execution(done)
    await store.insert_execution(queued)
    with pytest.raises(Conflict, match="1 execution"):
        await store.delete_user_executions(cat.team.id, cat.user.id)
    assert await store.get_execution(cat.team.id, done.id) is not None


async def test_installations_are_listed_by_team_user_and_workflow(
    store: Store, cat: Catalogue
) -> None:
    bob, bobs = await add_second_installation(store, cat)
    other_workflow, version = make_workflow(cat.team, "Invoice sync")
    await store.create_workflow(other_workflow, version)
    second = Installation(new_object_id(), cat.team.id, other_workflow.id, bob.id, 1, False,
                          T0 + 1, T0 + 1)
    await store.save_installation(second)
    everyone = await store.list_installations(cat.team.id)
    # Oldest first; the two installed at T0 by id.
    assert [i.id for i in everyone] == [*sorted([cat.installation.id, bobs.id]), second.id]
    assert await store.list_installations(cat.team.id, user_id=bob.id) == [bobs, second]
    assert await store.list_installations(cat.team.id, workflow_id=other_workflow.id) == [
        second]
    assert await store.list_installations(cat.team.id, user_id=cat.user.id,
                                          workflow_id=other_workflow.id) == []
    other = await add_catalogue(store, "other team")
    assert await store.list_installations(other.team.id) == [other.installation]


async def test_workflow_activity_counts_runs_failures_and_action_steps_not_reused(
    store: Store, cat: Catalogue
) -> None:
    await _five(store, cat)  # block0 ran once in each; two failed
    rerun = cat.finished(ExecutionStatus.SUCCEEDED, T0 + 9, steps=[
        make_step(0, reused=True), make_step(1, "fetch"), make_step(2, "fetch")])
    await store.insert_execution(rerun)
    whole = await store.workflow_activity(cat.team.id, cat.workflow.id, None,
                                          ["block0", "fetch"])
    assert (whole.runs, whole.errors, whole.actions) == (6, 2, 7)
    none = await store.workflow_activity(cat.team.id, cat.workflow.id, None, [])
    assert (none.runs, none.actions) == (6, 0)
    _, theirs = await add_second_installation(store, cat)
    one = await store.workflow_activity(cat.team.id, cat.workflow.id, theirs.id, ["block0"])
    assert (one.runs, one.errors, one.actions) == (0, 0, 0)
    other = await add_catalogue(store, "other")
    scoped = await store.workflow_activity(other.team.id, cat.workflow.id, None, ["block0"])
    assert (scoped.runs, scoped.errors, scoped.actions) == (0, 0, 0)
