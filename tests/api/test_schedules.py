"""Schedule triggers through the API: one execution per due time per active installation,
on the test clock (docs/schedules.md)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.clock import ManualClock
from reflow.domain.schedules import Schedule
from reflow.services import Reflow
from reflow.services.logs import iso
from support import wait_finished

FIVE_MINUTES = 300


def every_five_minutes(name: str = "Digest", **trigger: Any) -> dict[str, Any]:
    """A schedule workflow that answers the trigger's data."""
    return {
        "name": name,
        "trigger": {"type": "schedule", "cron": "*/5 * * * *", "timezone": "Europe/Paris",
                    **trigger},
        "blocks": [{"id": "done", "type": "respond", "with": {"body": "{{ trigger.data }}"}}],
    }


def tick(client: TestClient, reflow: Reflow) -> None:
    """Run the scheduler once now (the app's own loop may also run it: claims make that
    harmless, so tests count executions, never what a tick returned)."""
    assert client.portal is not None
    client.portal.call(reflow.periodic.run_once, "schedules")


def scheduled(client: TestClient, workflow_id: str, user_id: str) -> list[dict[str, Any]]:
    """The installation's executions, oldest first."""
    response = client.get(f"/workflows/{workflow_id}/logs",
                          params={"userId": user_id, "limit": 30, "order": "asc"})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]
    assert all(item["mode"] == "schedule" for item in items)
    return items


def due_times(client: TestClient, workflow_id: str, user_id: str) -> list[str]:
    """``scheduledAt`` of each execution, oldest first."""
    return [wait_finished(client, item["executionId"])["trigger"]["data"]["scheduledAt"]
            for item in scheduled(client, workflow_id, user_id)]


def latest_due(clock: ManualClock, cron: str = "*/5 * * * *") -> str:
    """The latest due time at or before the clock's now."""
    return iso(Schedule(cron).latest_until(clock.now_ms())[0])


def advance_past_next_due(clock: ManualClock, cron: str = "*/5 * * * *") -> None:
    """Move the clock a second past the next due time (as a ticking scheduler reaches it)."""
    now = clock.now_ms()
    next_due = Schedule(cron).next_after(now)
    assert next_due is not None
    clock.advance((next_due - now) / 1000 + 1)


def test_a_schedule_fires_once_per_due_time_with_the_due_time_in_its_trigger_data(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(every_five_minutes())
    tick(client, reflow)
    assert scheduled(client, workflow_id, user_id) == []
    clock.advance(FIVE_MINUTES)
    tick(client, reflow)
    tick(client, reflow)
    [item] = scheduled(client, workflow_id, user_id)
    assert item["workflowVersion"] == 1
    log = wait_finished(client, item["executionId"])
    due = latest_due(clock)
    local = datetime.fromisoformat(due).astimezone(Schedule("* * * * *", "Europe/Paris").zone)
    expected = {"scheduledAt": due, "localTime": local.isoformat(),
                "cron": "*/5 * * * *", "timezone": "Europe/Paris"}
    assert log["trigger"] == {"data": expected}
    assert log["output"] == expected
    assert log["status"] == "succeeded"
    clock.advance(FIVE_MINUTES)
    tick(client, reflow)
    assert due_times(client, workflow_id, user_id) == [due, latest_due(clock)]


def test_an_installation_made_after_due_times_passed_fires_none_of_them(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    make_workflow: Callable[..., str], install_for_new_user: Callable[..., str],
) -> None:
    workflow_id = make_workflow(every_five_minutes())
    clock.advance(3600)
    user_id = install_for_new_user(workflow_id)
    tick(client, reflow)
    assert scheduled(client, workflow_id, user_id) == []
    clock.advance(FIVE_MINUTES)
    tick(client, reflow)
    assert due_times(client, workflow_id, user_id) == [latest_due(clock)]


def test_due_times_missed_while_no_scheduler_ran_fire_the_latest_once_by_default(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(every_five_minutes())
    tick(client, reflow)
    clock.advance(3600)  # twelve due times pass
    tick(client, reflow)
    assert due_times(client, workflow_id, user_id) == [latest_due(clock)]


def test_missed_skip_fires_none_of_the_missed_due_times_and_waits_for_the_next(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(every_five_minutes(missed="skip"))
    tick(client, reflow)
    clock.advance(3600)
    advance_past_next_due(clock)
    clock.advance(150)  # the latest due time is now 151 s old: missed, not just due
    tick(client, reflow)
    assert scheduled(client, workflow_id, user_id) == []
    advance_past_next_due(clock)
    tick(client, reflow)
    assert due_times(client, workflow_id, user_id) == [latest_due(clock)]


def test_missed_all_fires_each_missed_due_time_oldest_first(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(every_five_minutes(missed="all"))
    tick(client, reflow)
    clock.advance(4 * FIVE_MINUTES)
    tick(client, reflow)
    expected = [iso(t) for t in reversed(Schedule("*/5 * * * *").latest_until(
        clock.now_ms(), 4))]
    # Fired in one millisecond, their ids need not sort as their due times.
    assert sorted(due_times(client, workflow_id, user_id)) == expected


def test_a_deactivated_installation_fires_nothing_and_once_reactivated_starts_from_then(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(every_five_minutes())
    tick(client, reflow)
    body = {"userId": user_id, "workflowId": workflow_id}
    assert client.put("/workflows/deactivate", json=body).status_code == 200
    clock.advance(3600)
    tick(client, reflow)
    assert scheduled(client, workflow_id, user_id) == []
    assert client.put("/workflows/activate", json=body).status_code == 200
    tick(client, reflow)
    assert scheduled(client, workflow_id, user_id) == []  # nothing from the inactive hour
    clock.advance(FIVE_MINUTES)
    tick(client, reflow)
    assert due_times(client, workflow_id, user_id) == [latest_due(clock)]


def test_a_deleted_users_schedule_fires_nothing(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed(every_five_minutes())
    tick(client, reflow)
    assert client.delete(f"/users/{user_id}").status_code == 200
    clock.advance(FIVE_MINUTES)
    tick(client, reflow)
    # Every installation's executions: the deleted user cannot be named any more.
    assert client.get(f"/workflows/{workflow_id}/logs").json() == {"data": []}


def test_an_upgrade_to_a_version_with_another_cron_follows_the_new_one_from_the_upgrade(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    installed: Callable[..., tuple[str, str]],
) -> None:
    hourly = every_five_minutes(cron="0 * * * *", timezone="UTC")
    workflow_id, user_id = installed(hourly)
    tick(client, reflow)
    response = client.put(f"/workflows/{workflow_id}/definition",
                          json=every_five_minutes(cron="*/10 * * * *", timezone="UTC"))
    assert response.status_code == 200, response.text
    tick(client, reflow)
    # A new version changes nothing until the installation is upgraded to it.
    assert client.portal is not None
    team = client.portal.call(reflow.keys.team, None)
    [listed] = client.portal.call(reflow.scheduler.upcoming, team)
    assert (listed.schedule.cron, listed.user_id) == ("0 * * * *", user_id)
    response = client.put(f"/workflows/{workflow_id}/upgrade", params={"userId": user_id})
    assert response.status_code == 200, response.text
    clock.advance(600)
    tick(client, reflow)
    [item] = scheduled(client, workflow_id, user_id)
    assert item["workflowVersion"] == 2
    log = wait_finished(client, item["executionId"])
    assert log["trigger"]["data"]["cron"] == "*/10 * * * *"
    assert log["trigger"]["data"]["scheduledAt"] == latest_due(clock, "*/10 * * * *")


def test_only_the_users_own_installation_fires_for_each_user(
    client: TestClient, reflow: Reflow, clock: ManualClock,
    make_workflow: Callable[..., str], install_for_new_user: Callable[..., str],
) -> None:
    workflow_id = make_workflow(every_five_minutes())
    users = [install_for_new_user(workflow_id) for _ in range(3)]
    tick(client, reflow)
    clock.advance(FIVE_MINUTES)
    tick(client, reflow)
    for user_id in users:
        [item] = scheduled(client, workflow_id, user_id)
        assert item["userId"] == user_id


@pytest.mark.parametrize("prefix", ["", "/2025-09"])
@pytest.mark.parametrize(("trigger", "message"), [
    ({"timezone": "Europe/Pari"},
     "trigger.timezone: unknown time zone 'Europe/Pari'; did you mean 'Europe/Paris'?"),
    ({"missed": "some"}, "trigger.missed: must be one of latest, skip, all"),
    ({"cron": "*/5 * * *"},
     "trigger.cron: must have 5 fields: minute hour day-of-month month day-of-week"),
])
def test_a_schedule_definition_with_a_bad_time_zone_policy_or_cron_is_refused_by_path(
    client: TestClient, prefix: str, trigger: dict[str, Any], message: str,
) -> None:
    response = client.post(f"{prefix}/workflows", json=every_five_minutes(**trigger))
    assert response.status_code == 422
    assert message in response.json()["message"]


def test_time_zone_and_missed_are_only_allowed_on_schedule_triggers(
    client: TestClient,
) -> None:
    definition = every_five_minutes()
    definition["trigger"] = {"type": "api", "timezone": "UTC", "missed": "all"}
    response = client.post("/workflows", json=definition)
    assert response.status_code == 422
    text = response.json()["message"]
    assert "trigger.timezone: only allowed when type is 'schedule'" in text
    assert "trigger.missed: only allowed when type is 'schedule'" in text


def test_every_process_registers_the_schedules_job(reflow: Reflow) -> None:
    assert "schedules" in reflow.periodic.names
