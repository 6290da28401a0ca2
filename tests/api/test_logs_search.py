"""``GET /logs``: every workflow's executions, filtered, sorted and paged (the reference's L3).

One dataset (``logs``) serves most tests: two users, two workflows in two integrations,
a failed run, a run on a second version, and one execution still waiting.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

import pg_support
import reflow.services.logs as log_service
from reflow.api import create_app
from reflow.clock import ManualClock
from reflow.domain.log_filters import MAX_WINDOW
from reflow.services import Reflow
from reflow.settings import load_settings
from reflow.store.log_search import LogClause, LogOrder, LogPredicate, LogSearch
from response_models import checking_hooks
from support import (
    API_VERSION,
    ORDER_SUMMARY,
    TEST_KEY,
    TEST_SECRET_KEY,
    json_handler,
    serving,
)

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# The reference's example item's keys, all of them.
REFERENCE_KEYS = {"_id", "message", "data", "startedAt", "completedAt", "createdAt",
                  "customVersion", "workflowVersion", "teamId", "forgeWorkflowId",
                  "workflowId", "userId", "user", "forgeWorkflow"}

ORDERS = {**ORDER_SUMMARY, "name": "Search orders", "integration": "crm-search"}
ORDERS_V2 = {**ORDERS, "blocks": [
    {"id": "done", "type": "respond", "with": {"body": {"version": 2}}},
]}
BILLING = {
    "name": "Search billing",
    "integration": "billing-search",
    "trigger": {"type": "api"},
    "blocks": [
        {"id": "check", "type": "branch", "with": {
            "if": "{{ trigger.data.fail = true }}",
            "then": [{"id": "stop", "type": "fail", "with": {"message": "asked to fail"}}],
        }},
        {"id": "done", "type": "respond", "with": {"body": {"ok": True}}},
    ],
}


@dataclass
class Logs:
    """The dataset: ids by name, in the order the executions were made."""

    ada: str  # user "ada@example.com", "Ada Lovelace"
    bob: str  # user "bob", "Bob Builder"
    orders: str  # workflow "Search orders" (integration crm-search), v2 for bob
    billing: str  # workflow "Search billing" (integration billing-search)
    waiter: str
    ada_orders_1: str
    ada_orders_2: str
    bob_orders_v2: str
    ada_billing_failed: str
    ada_billing_ok: str
    ada_waiting: str  # held by the slow target until the module ends

    @property
    def finished(self) -> list[str]:
        """The finished executions, oldest first."""
        return [self.ada_orders_1, self.ada_orders_2, self.bob_orders_v2,
                self.ada_billing_failed, self.ada_billing_ok]

    @property
    def all(self) -> list[str]:
        """Every execution, oldest first."""
        return [*self.finished, self.ada_waiting]


@dataclass
class World:
    """One app with the dataset, shared by the module's read-only tests (per backend)."""

    client: TestClient
    reflow: Reflow
    logs: Logs


def _call(client: TestClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    response = client.request(method, path, **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def make_logs(client: TestClient, waiter_url: str) -> Logs:
    """The dataset, made through the API."""
    ada = _call(client, "POST", "/users", json={"username": "ada@example.com",
                                                "fullName": "Ada Lovelace"})["userId"]
    bob = _call(client, "POST", "/users", json={"username": "bob",
                                                "fullName": "Bob Builder"})["userId"]
    waiting = {"name": "Search waiter", "trigger": {"type": "api"}, "blocks": [
        {"id": "fetch", "type": "http", "with": {"method": "GET", "url": waiter_url},
         "timeout": "10m"}]}
    orders, billing, waiter = (_call(client, "POST", "/workflows", json=d)["workflowId"]
                               for d in (ORDERS, BILLING, waiting))
    for user_id, workflow_id in ((ada, orders), (bob, orders), (ada, billing), (ada, waiter)):
        _call(client, "PUT", "/workflows/activate", json={"userId": user_id,
                                                          "workflowId": workflow_id})
    _call(client, "PUT", f"/workflows/{orders}/definition", json=ORDERS_V2)
    _call(client, "PUT", f"/workflows/{orders}/upgrade", params={"userId": bob})
    made = []
    for workflow_id, user_id, data in ((orders, ada, {}), (orders, ada, {}), (orders, bob, {}),
                                       (billing, ada, {"fail": True}), (billing, ada, {}),
                                       (waiter, ada, {})):
        params = {} if workflow_id == waiter else {"wait": 10}
        made.append(_call(client, "POST", "/run/workflow", params=params, json={
            "workflowId": workflow_id, "userId": user_id, "data": data})["executionId"])
        time.sleep(0.002)  # ids order by the millisecond they were minted
    return Logs(ada, bob, orders, billing, waiter, *made)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    """The dataset in an app of its own, on each backend. (No test of this module
    empties the session's PostgreSQL database meanwhile: those that change data do it in
    a team of their own.)"""
    folder = tmp_path_factory.mktemp("logs-search")
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")  # skips when none is configured
        pg_support.truncate(url)
    else:
        url = f"sqlite:///{folder / 'reflow.db'}"
        pg_support.migrate(url)
    settings = load_settings(database_url=url, bootstrap_key=TEST_KEY,
                             secret_key=TEST_SECRET_KEY, dev_key_file=folder / "dev-key",
                             purge_interval=3600, executor_processes=0,
                             http_allow_networks="127.0.0.0/8", http_timeout=600)
    release = threading.Event()
    with serving(json_handler(lambda _: release.wait(600))) as base_url:
        reflow = Reflow.open(settings, ManualClock())
        app = create_app(reflow)
        headers = {"authorization": f"bearer {TEST_KEY}", "x-api-version": API_VERSION}
        with TestClient(app, headers=headers, raise_server_exceptions=False) as client:
            try:
                client.event_hooks = checking_hooks(app)
                assert client.portal is not None
                client.portal.call(reflow.bootstrap)
                yield World(client, reflow, make_logs(client, base_url))
            finally:
                release.set()  # the waiting execution ends before the app closes


def other_team(world: World, name: str) -> dict[str, str]:
    """The headers of a new team's key."""
    client = world.client
    assert client.portal is not None
    team = client.portal.call(world.reflow.keys.create_team, name)
    key = client.portal.call(world.reflow.keys.create_key, team, f"{name} key")
    return {"authorization": f"bearer {key.raw}"}


def search(client: TestClient, path: str = "/logs", **params: Any) -> dict[str, Any]:
    """The answer of a search (asserting a 200); ``filters`` may be given as a list."""
    if isinstance(params.get("filters"), list):
        params["filters"] = orjson.dumps(params["filters"]).decode()
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [item["_id"] for item in body["notifications"]]


def found(client: TestClient, *filters: dict[str, Any], **params: Any) -> set[str]:
    """The executions (as a set) that pass the filters."""
    return set(ids(search(client, filters=list(filters), limit=100, **params)))


def rule(column: str, operator: str, value: Any, condition: str = "and") -> dict[str, Any]:
    """One filter in the reference's shape."""
    return {"columns": {"value": column}, "operators": {"value": operator},
            "userinput": {"value": value}, "condition": {"value": condition}}


def refused(client: TestClient, filters: Any, **params: Any) -> dict[str, Any]:
    """The 422 of a search (``filters`` as text, or as a list to encode)."""
    if not isinstance(filters, str):
        filters = orjson.dumps(filters).decode()
    response = client.get("/logs", params={"filters": filters, **params})
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()
    return body


# -- the answer's shape ---------------------------------------------------------------------


def test_answer_has_the_reference_envelope_with_the_items_under_both_keys(world: World) -> None:
    client, logs = world.client, world.logs
    body = search(client)
    assert set(body) == {"data", "notifications", "lastFetched", "pagination"}
    assert body["data"] == body["notifications"]
    assert ISO.match(body["lastFetched"])
    assert body["pagination"] == {"totalItems": 6, "totalPages": 1, "currentPage": 1,
                                  "pageSize": 10, "totalItemsExact": True}
    assert ids(body) == logs.all[::-1]  # newest first


def test_item_has_every_reference_key_with_the_executions_values(world: World) -> None:
    client, logs = world.client, world.logs
    items = {item["_id"]: item for item in search(client)["notifications"]}
    failed = items[logs.ada_billing_failed]
    assert REFERENCE_KEYS <= set(failed)
    assert failed["message"] == "executionError"
    assert failed["data"] == {"executionId": logs.ada_billing_failed,
                              "executionUuid": logs.ada_billing_failed}
    assert failed["status"] == "failed"
    assert failed["forgeWorkflowId"] == logs.billing
    installation = client.get(f"/workflows/{logs.billing}", params={"userId": logs.ada})
    assert failed["workflowId"] == installation.json()["data"]["installationId"]
    assert failed["userId"] == logs.ada
    assert failed["user"] == {"email": "ada@example.com", "username": "ada@example.com",
                              "fullName": "Ada Lovelace"}
    assert failed["forgeWorkflow"]["name"] == "Search billing"
    assert failed["forgeWorkflow"]["integrationId"]["name"] == "billing-search"
    assert failed["customVersion"] is False
    assert failed["workflowVersion"] == 1
    assert failed["executionMode"] == "webhook"
    for key in ("startedAt", "completedAt", "createdAt"):
        assert ISO.match(failed[key]), key
    assert failed["createdAt"] <= failed["startedAt"] <= failed["completedAt"]
    assert items[logs.ada_orders_1]["message"] == "executionSuccess"
    bob = items[logs.bob_orders_v2]
    assert bob["user"] == {"email": None, "username": "bob", "fullName": "Bob Builder"}
    assert bob["workflowVersion"] == 2
    waiting = items[logs.ada_waiting]
    assert waiting["completedAt"] is None
    assert waiting["forgeWorkflow"]["integrationId"] is None
    teams = {item["teamId"] for item in items.values()}
    assert len(teams) == 1


def test_item_shares_its_fields_with_the_execution_log(world: World) -> None:
    client, logs = world.client, world.logs
    [item] = search(client, filters=[rule("data.executionId", "equals",
                                          logs.bob_orders_v2)])["notifications"]
    detail = client.get(f"/logs/{logs.bob_orders_v2}").json()["data"]
    for key in ("_id", "startedAt", "createdAt", "workflowVersion", "userId", "status",
                "executionUuid", "executionMode"):
        assert item[key] == detail[key], key
    assert item["completedAt"] == detail["stoppedAt"]
    assert item["forgeWorkflowId"] == detail["workflowId"]
    assert item["workflowId"] == detail["installationId"]


def test_path_versioned_and_headerless_forms_answer_the_same(world: World) -> None:
    client = world.client
    expected = ids(search(client))
    for prefix in ("/2023-12", "/2024-03", "/2025-09"):
        assert ids(search(client, f"{prefix}/logs")) == expected
    # The reference documents /logs without x-api-version.
    request = client.build_request("GET", "/logs")
    del request.headers["x-api-version"]
    bare = client.send(request)
    assert bare.status_code == 200, bare.text
    assert ids(bare.json()) == expected


# -- filters --------------------------------------------------------------------------------


def test_message_filters_select_by_status_with_every_operator(world: World) -> None:
    client, logs = world.client, world.logs
    failed, waiting = {logs.ada_billing_failed}, {logs.ada_waiting}
    succeeded = set(logs.finished) - failed
    assert found(client, rule("message", "equals", "executionError")) == failed
    assert found(client, rule("message", "notequals", "executionError")) == \
        succeeded | waiting
    assert found(client, rule("message", "contains", "error")) == failed  # any case
    assert found(client, rule("message", "notcontains", "Success")) == failed | waiting
    # Compared as text: executionError < executionQueued < ... < executionSuccess.
    assert found(client, rule("message", "lessthan", "executionQueued")) == failed
    assert found(client, rule("message", "greaterthan", "executionRunning")) == succeeded
    assert found(client, rule("message", "contains", "nothing-has-this")) == set()


def test_execution_id_filters_match_whole_ids_or_compare_creation(world: World) -> None:
    client, logs = world.client, world.logs
    third = logs.bob_orders_v2
    assert found(client, rule("data.executionId", "equals", third)) == {third}
    assert found(client, rule("data.executionId", "notequals", third)) == set(logs.all) - {third}
    assert found(client, rule("data.executionId", "greaterthan", third)) == set(logs.all[3:])
    assert found(client, rule("data.executionId", "lessthan", third)) == set(logs.all[:2])
    assert found(client, rule("data.executionId", "equals", "not-an-id")) == set()


def test_workflow_filters_take_an_id_or_a_name_and_contains_matches_names(world: World) -> None:
    client, logs = world.client, world.logs
    orders = {logs.ada_orders_1, logs.ada_orders_2, logs.bob_orders_v2}
    billing = {logs.ada_billing_failed, logs.ada_billing_ok}
    assert found(client, rule("forgeWorkflowId", "equals", logs.orders)) == orders
    assert found(client, rule("forgeWorkflowId", "equals", "Search orders")) == orders
    assert found(client, rule("forgeWorkflowId", "notequals", logs.orders)) == \
        set(logs.all) - orders
    assert found(client, rule("forgeWorkflowId", "contains", "BILL")) == billing
    assert found(client, rule("forgeWorkflowId", "notcontains", "search b")) == \
        set(logs.all) - billing
    assert found(client, rule("forgeWorkflowId", "equals", "no such workflow")) == set()


@pytest.mark.parametrize("named_up_to", [log_service.MAX_MATCHED_USERS, 0])
def test_user_filters_take_an_id_or_a_username_and_contains_matches_names(
    world: World, monkeypatch: pytest.MonkeyPatch, named_up_to: int
) -> None:
    # contains names the matching users when they are few, or matches them in the query.
    monkeypatch.setattr(log_service, "MAX_MATCHED_USERS", named_up_to)
    client, logs = world.client, world.logs
    bob = {logs.bob_orders_v2}
    ada = set(logs.all) - bob
    assert found(client, rule("userId", "equals", logs.bob)) == bob
    assert found(client, rule("userId", "equals", "bob")) == bob
    assert found(client, rule("userId", "notequals", "bob")) == ada
    assert found(client, rule("userId", "contains", "lovelace")) == ada  # the full name
    assert found(client, rule("userId", "contains", "@EXAMPLE")) == ada  # the username
    assert found(client, rule("userId", "contains", logs.bob[-6:])) == bob  # the id
    assert found(client, rule("userId", "contains", "b")) == set(logs.all)  # both
    assert found(client, rule("userId", "notcontains", "ada")) == bob
    assert found(client, rule("userId", "notcontains", "nobody")) == set(logs.all)
    assert found(client, rule("userId", "contains", "nobody")) == set()


def test_integration_filters_take_a_name_or_id_and_contains_matches_names(world: World) -> None:
    client, logs = world.client, world.logs
    orders = {logs.ada_orders_1, logs.ada_orders_2, logs.bob_orders_v2}
    assert found(client, rule("forgeWorkflow.integrationId._id", "equals",
                              "crm-search")) == orders
    integration_id = search(client, filters=[rule("data.executionId", "equals",
                                                  logs.ada_orders_1)])[
        "notifications"][0]["forgeWorkflow"]["integrationId"]["_id"]
    if integration_id is not None:  # the integration's own id, when it has a record
        assert found(client, rule("forgeWorkflow.integrationId._id", "equals",
                                  integration_id)) == orders
    assert found(client, rule("forgeWorkflow.integrationId._id", "notequals",
                              "crm-search")) == set(logs.all) - orders
    assert found(client, rule("forgeWorkflow.integrationId._id", "contains", "CRM")) == orders
    # A workflow without an integration passes notcontains.
    assert found(client, rule("forgeWorkflow.integrationId._id", "notcontains", "crm")) == \
        set(logs.all) - orders


def test_version_filters_compare_numbers(world: World) -> None:
    client, logs = world.client, world.logs
    v2 = {logs.bob_orders_v2}
    assert found(client, rule("workflowVersion", "equals", "2")) == v2
    assert found(client, rule("workflowVersion", "equals", 2)) == v2
    assert found(client, rule("workflowVersion", "notequals", 2)) == set(logs.all) - v2
    assert found(client, rule("workflowVersion", "greaterthan", 1)) == v2
    assert found(client, rule("workflowVersion", "lessthan", 2)) == set(logs.all) - v2


def test_created_at_filters_take_times_at_their_written_precision(world: World) -> None:
    client, logs = world.client, world.logs
    items = {i["_id"]: i for i in search(client)["notifications"]}
    third = items[logs.bob_orders_v2]["createdAt"]  # 2026-11-30T15:33:36.123Z
    assert found(client, rule("createdAt", "equals", third)) == {logs.bob_orders_v2}
    later = {i for i in logs.all if items[i]["createdAt"] > third}
    assert found(client, rule("createdAt", "greaterthan", third)) == later
    assert found(client, rule("createdAt", "lessthan", third)) == \
        {i for i in logs.all if items[i]["createdAt"] < third}
    assert found(client, rule("createdAt", "notequals", third)) == set(logs.all) - {
        logs.bob_orders_v2}
    day = third[:10]
    assert found(client, rule("createdAt", "equals", day)) == set(logs.all)
    assert found(client, rule("createdAt", "greaterthan", day)) == set()
    assert found(client, rule("createdAt", "lessthan", day)) == set()
    # The same instant with an offset, and as milliseconds since 1970.
    in_paris = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(
        time.mktime(time.strptime(third[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone + 3600))
    assert found(client, rule("createdAt", "equals",
                              f"{in_paris}{third[19:23]}+01:00")) == {logs.bob_orders_v2}
    ms = int(time.mktime(time.strptime(third[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
             ) * 1000 + int(third[20:23])
    assert found(client, rule("createdAt", "equals", ms)) == {logs.bob_orders_v2}


def test_and_binds_tighter_than_or(world: World) -> None:
    client, logs = world.client, world.logs
    failed = rule("message", "equals", "executionError")
    bob = rule("userId", "equals", "bob", "or")
    v2 = rule("workflowVersion", "equals", 2)
    v1 = rule("workflowVersion", "equals", 1)
    # failed OR (bob AND v2)
    assert found(client, failed, bob, v2) == {logs.ada_billing_failed, logs.bob_orders_v2}
    # failed OR (bob AND v1): bob ran v2 only
    assert found(client, failed, bob, v1) == {logs.ada_billing_failed}
    # (v1 AND failed): and-ed by default, the first condition ignored
    assert found(client, {**v1, "condition": {"value": "or"}}, failed) == {
        logs.ada_billing_failed}
    assert found(client, {k: v for k, v in failed.items() if k != "condition"}) == {
        logs.ada_billing_failed}
    # An or-group every execution passes makes the whole search pass everything.
    assert found(client, failed, rule("message", "notcontains", "zzz", "or")) == set(logs.all)


def test_scope_parameters_take_ids_or_names_and_narrow_the_filters(world: World) -> None:
    client, logs = world.client, world.logs
    orders = {logs.ada_orders_1, logs.ada_orders_2, logs.bob_orders_v2}
    assert found(client, workflowId=logs.orders) == orders
    assert found(client, workflowId="Search orders") == orders
    installation = client.get(f"/workflows/{logs.orders}", params={"userId": "bob"})
    assert found(client, workflowId=installation.json()["data"]["installationId"]) == {
        logs.bob_orders_v2}
    assert found(client, associatedUserId="bob") == {logs.bob_orders_v2}
    assert found(client, associatedUserId=logs.ada, workflowId=logs.orders) == {
        logs.ada_orders_1, logs.ada_orders_2}
    assert found(client, rule("message", "equals", "executionError"),
                 workflowId=logs.orders) == set()
    # Empty parameters, as a client sending every key does, narrow nothing.
    assert set(ids(search(client, workflowId="", associatedUserId="", filters=""))) == set(
        logs.all)


def test_a_deleted_users_logs_are_found_by_its_id(world: World) -> None:
    client = world.client
    team_c = other_team(world, "logs search team C")  # its own data: it deletes a user

    def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return _call(client, method, path, headers=team_c, **kwargs)

    user_id = call("POST", "/users", json={"username": "carol"})["userId"]
    workflow_id = call("POST", "/workflows", json=ORDERS)["workflowId"]
    call("PUT", "/workflows/activate", json={"userId": user_id, "workflowId": workflow_id})
    execution_id = call("POST", "/run/workflow", params={"wait": 10}, json={
        "workflowId": workflow_id, "userId": user_id, "data": {}})["executionId"]
    call("DELETE", f"/users/{user_id}")
    assert ids(call("GET", "/logs", params={"associatedUserId": user_id})) == [execution_id]
    by_filter = call("GET", "/logs", params={"filters": orjson.dumps(
        [rule("userId", "equals", user_id)]).decode()})
    assert ids(by_filter) == [execution_id]
    assert by_filter["notifications"][0]["user"]["username"] == "carol"
    assert client.get("/logs", params={"associatedUserId": "carol"},
                      headers=team_c).status_code == 404  # its username is free


@pytest.mark.parametrize(("params", "message"), [
    ({"workflowId": "no such workflow"}, "workflow 'no such workflow' not found"),
    ({"associatedUserId": "nobody"}, "user 'nobody' not found"),
])
def test_unknown_scope_answers_404(world: World, params: dict[str, str], message: str) -> None:
    response = world.client.get("/logs", params=params)
    assert response.status_code == 404
    assert response.json()["message"] == message


def test_another_team_sees_none_of_the_logs(world: World) -> None:
    client, logs = world.client, world.logs
    other_team_headers = other_team(world, "logs search team B")
    body = client.get("/logs", headers=other_team_headers).json()
    assert body["notifications"] == []
    assert body["pagination"]["totalItems"] == 0
    for params in ({"workflowId": logs.orders}, {"associatedUserId": logs.ada}):
        assert client.get("/logs", params=params, headers=other_team_headers
                          ).status_code == 404
    by_id = client.get("/logs", headers=other_team_headers, params={"filters": orjson.dumps(
        [rule("data.executionId", "equals", logs.ada_orders_1)]).decode()})
    assert by_id.json()["notifications"] == []


# -- malformed filters ----------------------------------------------------------------------


@pytest.mark.parametrize(("filters", "path", "reason"), [
    ("[{", "filters", "not valid JSON"),
    ('"message"', "filters", "must be a JSON array of filters, not a string"),
    ([3], "filters[0]", "must be an object, not a number"),
    ([rule("status", "equals", "x")], "filters[0].columns.value",
     '"status" is not a column; use one of message, data.executionId'),
    ([rule("message", "like", "x")], "filters[0].operators.value",
     '"like" is not an operator; use one of equals, notequals'),
    ([rule("message", "equals", "x", "xor")], "filters[0].condition.value",
     '"xor" is not a condition; use one of and, or'),
    ([rule("message", "equals", "executionError"), rule("createdAt", "greaterthan", "soon")],
     "filters[1].userinput.value", "'soon' is not an ISO 8601 date or time"),
    ([rule("createdAt", "lessthan", "2025-02-30")], "filters[0].userinput.value",
     "'2025-02-30' is not a valid time"),
    ([rule("workflowVersion", "equals", "v2")], "filters[0].userinput.value",
     'workflowVersion takes a whole number, not "v2"'),
    ([rule("workflowVersion", "equals", 1.5)], "filters[0].userinput.value",
     "workflowVersion takes a whole number, not 1.5"),
    ([rule("message", "equals", "executionFailed")], "filters[0].userinput.value",
     "'executionFailed' is not a message; messages are executionCancelled"),
    ([rule("userId", "greaterthan", "a")], "filters[0].operators.value",
     "userId does not take greaterthan"),
    ([rule("data.executionId", "contains", "a")], "filters[0].operators.value",
     "data.executionId does not take contains"),
    ([rule("data.executionId", "greaterthan", "abc")], "filters[0].userinput.value",
     "'abc' is not an execution id"),
    ([rule("createdAt", "contains", "2025")], "filters[0].operators.value",
     "createdAt does not take contains"),
    ([{"columns": {"value": "message"}, "operators": "equals", "userinput": {"value": "x"}}],
     "filters[0].operators", 'must be an object {"value": ...}'),
    ([{"columns": {"value": "message"}, "operators": {"value": "equals"}}],
     "filters[0].userinput", "required"),
    ([rule("userId", "equals", "")], "filters[0].userinput.value", "must be 1 to 200"),
    ([rule("userId", "equals", None)], "filters[0].userinput.value",
     "must be a string, not a null"),
])
def test_a_malformed_filter_answers_422_naming_where_and_why(
    world: World, filters: Any, path: str, reason: str
) -> None:
    body = refused(world.client, filters)
    [problem] = body["problems"]
    assert problem["path"] == path
    assert reason in problem["reason"], problem["reason"]
    assert path in body["message"]


def test_every_malformed_filter_is_listed(world: World) -> None:
    body = refused(world.client, [rule("message", "equals", "executionError"),
                            rule("nope", "equals", "x"), rule("workflowVersion", "equals", "x")])
    assert [p["path"] for p in body["problems"]] == ["filters[1].columns.value",
                                                      "filters[2].userinput.value"]


@pytest.mark.parametrize(("params", "reason"), [
    ({"limit": 0}, "limit: must be between 1 and 100, got 0"),
    ({"limit": 101}, "limit: must be between 1 and 100, got 101"),
    ({"skip": -1}, "skip: must not be negative"),
    ({"skip": MAX_WINDOW, "limit": 1}, "skip + limit may not pass 10,000"),
    ({"sortBy": "status"}, "sortBy"),
    ({"sortOrder": "up"}, "sortOrder"),
    ({"skip": "x"}, "skip"),
])
def test_a_page_out_of_bounds_answers_422(
    world: World, params: dict[str, Any], reason: str
) -> None:
    response = world.client.get("/logs", params=params)
    assert response.status_code == 422, response.text
    assert reason in response.json()["message"]


# -- order and pages ------------------------------------------------------------------------


def test_each_sort_orders_items_and_breaks_ties_by_creation(world: World) -> None:
    client, logs = world.client, world.logs
    items = search(client)["notifications"]
    created = {i["_id"]: (i["createdAt"], i["_id"]) for i in items}

    def expected(key: Callable[[dict[str, Any]], Any], descending: bool) -> list[str]:
        return [i["_id"] for i in sorted(items, key=lambda i: (key(i), created[i["_id"]]),
                                         reverse=descending)]

    keys: dict[str, Callable[[dict[str, Any]], Any]] = {
        "createdAt": lambda i: i["createdAt"],
        "message": lambda i: i["message"],
        "userId": lambda i: i["userId"],
        # Unfinished ones have no completedAt: they come after every finished one.
        "completedAt": lambda i: (i["completedAt"] is None, i["completedAt"] or ""),
    }
    for sort_by, key in keys.items():
        for order in ("asc", "desc"):
            got = ids(search(client, sortBy=sort_by, sortOrder=order))
            assert got == expected(key, order == "desc"), (sort_by, order)
    newest_completed = ids(search(client, sortBy="completedAt"))
    assert newest_completed[0] == logs.ada_waiting


def test_pages_follow_skip_and_limit(world: World) -> None:
    client, logs = world.client, world.logs
    newest_first = logs.all[::-1]
    body = search(client, skip=2, limit=2)
    assert ids(body) == newest_first[2:4]
    assert body["pagination"] == {"totalItems": 6, "totalPages": 3, "currentPage": 2,
                                  "pageSize": 2, "totalItemsExact": True}
    last = search(client, skip=4, limit=4, sortOrder="asc")
    assert ids(last) == logs.all[4:]
    assert last["pagination"]["currentPage"] == 2
    completed = search(client, skip=1, limit=2, sortBy="completedAt")
    assert ids(completed) == ids(search(client, sortBy="completedAt"))[1:3]
    assert search(client, skip=6)["notifications"] == []


def test_total_items_counts_up_to_the_cap(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, logs = world.client, world.logs
    monkeypatch.setattr(log_service, "COUNT_CAP", 4)
    body = search(client, limit=3)
    assert body["pagination"] == {"totalItems": 4, "totalPages": 2, "currentPage": 1,
                                  "pageSize": 3, "totalItemsExact": False}
    assert len(body["notifications"]) == 3
    exact = search(client, workflowId=logs.orders)
    assert exact["pagination"]["totalItems"] == 3
    assert exact["pagination"]["totalItemsExact"] is True


# -- query plans ----------------------------------------------------------------------------

def _is(clause: LogClause, *values: Any) -> LogPredicate:
    return LogPredicate(clause, values)


# Typical searches, the index that should read their executions, and whether the rows it
# reads are then sorted (only the rows of a few users are: theirs are few).
PLANNED: dict[str, tuple[LogSearch, str, bool]] = {
    "no filter": (LogSearch("t"), "ix_executions_team_created", False),
    "by user": (LogSearch("t", (_is(LogClause.USER_EQ, "u"),)), "ix_executions_team_user",
                False),
    "by workflow": (LogSearch("t", (_is(LogClause.WORKFLOW_EQ, "w"),)),
                    "ix_executions_team_workflow", False),
    "failed only": (LogSearch("t", groups=((_is(LogClause.STATUS_EQ, "failed"),),)),
                    "ix_executions_team_status", False),
    "created range": (LogSearch("t", groups=((_is(LogClause.CREATED_WITHIN, 1, 2),),)),
                      "ix_executions_team_created", False),
    "by completion": (LogSearch("t", order=LogOrder.COMPLETED), "ix_executions_team_stopped",
                      False),
    "by message": (LogSearch("t", order=LogOrder.STATUS), "ix_executions_team_status", False),
    "by user id": (LogSearch("t", order=LogOrder.USER, descending=False),
                   "ix_executions_team_user", False),
    "a workflow's failures": (LogSearch("t", (_is(LogClause.WORKFLOW_EQ, "w"),),
                                        ((_is(LogClause.STATUS_EQ, "failed"),),)),
                              "ix_executions_team_status", False),
    "a user's in a workflow": (LogSearch("t", (_is(LogClause.WORKFLOW_EQ, "w"),
                                               _is(LogClause.USER_EQ, "u"))),
                               "ix_executions_team_user", False),
    "users named by text": (LogSearch("t", groups=((_is(LogClause.USER_IN, ["a", "b"]),),)),
                            "ix_executions_team_user", True),
    "a user's, by completion": (LogSearch("t", (_is(LogClause.USER_EQ, "u"),),
                                          order=LogOrder.COMPLETED),
                                "ix_executions_team_", True),
}


def executions_reads(plan: str) -> list[tuple[str, bool]]:
    """Each read of the executions in an indented SQLite plan, and whether the rows it
    gives are then sorted (a TEMP B-TREE beside it, under the same parent)."""
    lines = [(len(line) - len(line.lstrip()), line.strip()) for line in plan.splitlines()]
    reads = []
    for at, (depth, text) in enumerate(lines):
        if text.startswith(("SEARCH e ", "SCAN e")) and depth > 0:
            siblings = []
            for other_depth, other in lines[at + 1:]:
                if other_depth < depth:
                    break
                if other_depth == depth:
                    siblings.append(other)
            reads.append((text, any(o.startswith("USE TEMP B-TREE") for o in siblings)))
    return reads


@pytest.mark.sqlite_only
def test_each_typical_search_reads_one_index_in_order(client: TestClient, reflow: Reflow) -> None:
    """SQLite's plans (its planner does not depend on the data here): the executions are
    read on the search's index, in the page's order unless they are a few users' (only the
    page's rows are sorted, once joined to their names); the count reads an index alone.
    The benchmark shows PostgreSQL's at 1,000,000 executions."""
    assert client.portal is not None
    for name, (search_, index, sorts) in PLANNED.items():
        page, count = client.portal.call(reflow.store.explain_log_search, search_)
        reads = executions_reads(page)
        assert reads, (name, page)
        for text, sorted_after in reads:
            assert text.startswith("SEARCH e USING") and index in text, (name, page)
            assert sorted_after is sorts or "stopped_at=?" in text, (name, page)
        [(counted, _)] = executions_reads(count)
        assert counted.startswith("SEARCH e USING COVERING INDEX"), (name, count)
