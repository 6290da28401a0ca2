"""Tenancy, generated from the route table: no route lets one team reach another's data.

Team A builds one of everything (a user, a workflow installed for it, an event workflow, a
finished execution that can be rerun); then every route of the app is called as team B
with A's ids in its path parameters (and in its body and query where it takes ids there).
Each must answer 404 and show nothing of A's. Routes are read from ``app.routes``, so a
route added later is walked too; one with a path parameter ``ID_PARAMETERS`` does not know,
or with no id anywhere and no entry in ``NO_TEAM_ID``, fails the test by name.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin

import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.routing import BaseRoute

from support import ORDER_SUMMARY

# Path, query and body names that carry a team-owned id, and which of A's objects each
# names. A new parameter name must be added here (with the object A creates for it).
ID_PARAMETERS: dict[str, str] = {
    "userId": "user",
    "workflowId": "workflow",
    "parentWorkflowId": "workflow",
    "associatedUserId": "user",
    "executionId": "execution",
    "integrationId": "integration",
    "credentialId": "credential",
    "app": "app",
    "jobId": "job",
    "event": "event",
    "installationId": "installation",
}

# Routes that take no team-owned id anywhere, and why they are not walked.
NO_TEAM_ID: dict[tuple[str, str], str] = {
    ("POST", "/users"): "creates a user of the caller's team; usernames are per team",
    ("POST", "/users/"): "the reference's trailing-slash form of POST /users",
    ("POST", "/users/batch"): "creates users of the caller's team",
    ("POST", "/workflows"): "creates a workflow of the caller's team",
    ("POST", "/integrations"): "declares an integration of the caller's team, by name",
    ("POST", "/apps"): "declares an app of the caller's team, by name",
    ("GET", "/apps"): "lists the caller's team's apps",
    ("GET", "/metadata/apps"): "lists the caller's team's apps",
    ("GET", "/metadata/credentials"): "the caller's team's apps' credential fields",
    ("GET", "/installations"): "lists the caller's team's installations",
    ("GET", "/env"): "the caller's own team env",
    ("PUT", "/env"): "replaces the caller's own team env",
    ("GET", "/settings/error-stream"): "the caller's own team's error stream",
    ("PUT", "/settings/error-stream"): "sets the caller's own team's error stream",
    ("DELETE", "/settings/error-stream"): "clears the caller's own team's error stream",
    ("GET", "/.well-known/jwks.json"): "the deployment's public keys, no team data",
    ("POST", "/webhooks/{token}"): "a webhook URL: no key, its secret token names the copy "
                                   "(and the team); test_webhooks.py covers unknown tokens",
    ("GET", "/install/{token}"): "an install URL: no key, its sealed token names the team; "
                                 "test_headless.py covers unknown and expired tokens",
    ("POST", "/install/{token}"): "an install URL: no key, its sealed token names the team",
    ("GET", "/oauth/callback"): "the OAuth callback: no key, its sealed single-use state "
                                "names the team; test_oauth.py covers forged and used ones",
    ("GET", "/settings/retention"): "the caller's own team's retention window",
    ("PUT", "/settings/retention"): "sets the caller's own team's retention window",
    ("GET", "/settings/oauth"): "the caller's own team's OAuth redirect URL",
    ("PUT", "/settings/oauth"): "sets the caller's own team's OAuth redirect URL",
    ("GET", "/healthz"): "probe, no key and no team",
    ("GET", "/health"): "probe, no key and no team",
    ("GET", "/readyz"): "probe, no key and no team",
    ("GET", "/metrics"): "deployment metrics, no team data",
    ("GET", "/openapi.json"): "the API document",
    ("GET", "/docs"): "the API document's page",
    ("GET", "/docs/oauth2-redirect"): "the API document's page",
    ("GET", "/redoc"): "the API document's page",
    ("GET", "/reruns"): "lists the caller's team's bulk rerun jobs",
    ("POST", "/reruns"): "its workflowId and userId are inside `filter`; test_bulk_rerun.py "
                         "covers another team's (404)",
}

# Bodies a route's model cannot give (it reads the raw body), keyed by route.
BODIES: dict[tuple[str, str], Callable[[TeamA], Any]] = {
    ("PUT", "/workflows/{workflowId}/definition"): lambda a: ORDER_SUMMARY,
    ("POST", "/headless/credentials"): lambda a: {
        "userId": a.ids["user"], "credential": {"type": a.ids["app"],
                                                "data": {"apiKey": "tenancy-b-key"}}},
    ("POST", "/users/{userId}/credentials"): lambda a: {
        "credential": {"type": a.ids["app"], "data": {"apiKey": "tenancy-b-key"}}},
}

# A route whose documented "not found" answer is not 404 goes here, with that status.
EXPECTED: dict[tuple[str, str], int] = {}

EVENT_NAME = "tenancy.a.created"
APP_NAME = "tenancy-a-app"
APP_SECRET = "tenancy-a-secret-api-key"
INTEGRATION_NAME = "tenancy-a-crm"
MARKER = "tenancy-a-marker"
EVENT_WORKFLOW: dict[str, Any] = {
    "name": "Tenancy A event",
    "integration": INTEGRATION_NAME,
    "trigger": {"type": "event", "event": EVENT_NAME},
    "blocks": [{"id": "done", "type": "respond", "with": {"body": {"seen": True}}}],
}


@dataclass
class TeamA:
    """The objects team A owns, by the kind ``ID_PARAMETERS`` names."""

    ids: dict[str, str]
    # Text of A's that B never sends and must never see.
    secrets: list[str] = field(default_factory=list)

    def id_for(self, name: str) -> str | None:
        """A's id for a parameter name, or None when A owns no such object."""
        kind = ID_PARAMETERS.get(name)
        return None if kind is None else self.ids.get(kind)


@dataclass
class Call:
    """One request team B makes to one route, with A's ids in it."""

    method: str
    path: str
    template: str
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None

    @property
    def sent(self) -> str:
        """Everything the caller sent: what the answer may echo back."""
        return self.path + repr(self.params) + orjson.dumps(self.body).decode()


def app_routes(app: FastAPI) -> list[tuple[str, BaseRoute]]:
    """Every route of ``app`` with its full path, routers' routes included."""
    return [(context.path or "", context.original_route)
            for context in iter_route_contexts(app.routes)]


def route_methods(route: BaseRoute) -> list[str]:
    """A route's methods; HEAD and OPTIONS follow GET and are not walked."""
    methods: set[str] = getattr(route, "methods", None) or set()
    return sorted(methods - {"HEAD", "OPTIONS"})


def _value_for(annotation: Any) -> Any:
    """A minimal valid value of a body field's type, or ``...`` when there is none."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return _value_for(next(a for a in get_args(annotation) if a is not type(None)))
    simple = {str: "tenancy-b", int: 1, float: 1.0, bool: True, dict: {}, list: []}
    return simple.get(origin or annotation, ...)


def body_from_model(model: type[BaseModel], a: TeamA) -> tuple[dict[str, Any], list[str]]:
    """The smallest body of ``model`` carrying A's ids: every id field, every required
    field; and the problems (a required field of a type with no obvious value)."""
    body: dict[str, Any] = {}
    problems: list[str] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        a_id = a.id_for(key)
        if a_id is not None:
            body[key] = a_id
        elif key in ID_PARAMETERS:
            problems.append(f"body field {key!r}: team A owns no {ID_PARAMETERS[key]}; "
                            "create one in team_a()")
        elif info.is_required():
            value = _value_for(info.annotation)
            if value is ...:
                problems.append(f"body field {key!r} of {model.__name__}: add the route "
                                "to BODIES")
            else:
                body[key] = value
    return body, problems


def _path_with_ids(template: str, where: str, a: TeamA) -> tuple[str, list[str]]:
    """``template`` with A's ids in its parameters, and each parameter that has none."""
    path, problems = template, []
    for name in re.findall(r"{(\w+)(?::\w+)?}", template):
        a_id = a.id_for(name)
        if name not in ID_PARAMETERS:
            problems.append(f"{where}: path parameter {name!r} is not in ID_PARAMETERS; "
                            "map it to the team-A object it names")
        elif a_id is None:
            problems.append(f"{where}: path parameter {name!r}: team A owns no "
                            f"{ID_PARAMETERS[name]}; create one in team_a()")
        else:
            path = re.sub(r"{" + name + r"(?::\w+)?}", a_id, path)
    return path, problems


def _query_and_body(route: APIRoute, call: Call, where: str, a: TeamA) -> list[str]:
    """Put A's ids in ``call``'s query and a minimal body; the problems that prevent it."""
    for query in route.dependant.query_params:
        a_id = a.id_for(query.alias)
        if a_id is not None:
            call.params[query.alias] = a_id
    if (call.method, call.template) in BODIES:
        call.body = BODIES[call.method, call.template](a)
        return []
    if route.body_field is not None and route.body_field.field_info.is_required():
        model = route.body_field.field_info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return [f"{where}: its body is not a model: add it to BODIES"]
        call.body, problems = body_from_model(model, a)
        return [f"{where}: {p}" for p in problems]
    if route.openapi_extra and "requestBody" in route.openapi_extra:
        return [f"{where}: it reads its body itself: add it to BODIES"]
    return []


def plan(
    route: BaseRoute, method: str, template: str, a: TeamA
) -> tuple[Call | None, list[str]]:
    """Team B's call to ``route`` (at ``template``) with A's ids, None for a ``NO_TEAM_ID``
    route, and the reasons the route cannot be walked (each names the route)."""
    if (method, template) in NO_TEAM_ID:
        return None, []
    where = f"{method} {template}"
    path, problems = _path_with_ids(template, where, a)
    call = Call(method, path, template)
    if isinstance(route, APIRoute):
        problems += _query_and_body(route, call, where, a)
    sent_keys = set(call.params) | set(call.body if isinstance(call.body, dict) else ())
    carries_id = path != template or bool(sent_keys & set(ID_PARAMETERS))
    if not carries_id and not problems:
        problems.append(f"{where}: takes no team-owned id in its path, query or body: list "
                        "it in NO_TEAM_ID with the reason, or map its parameter")
    return call, problems


def walk(app: FastAPI, a: TeamA) -> tuple[list[Call], list[str]]:
    """Team B's calls to every route of ``app`` that takes an id, and every problem."""
    calls: list[Call] = []
    problems: list[str] = []
    present = set()
    for path, route in app_routes(app):
        for method in route_methods(route):
            present.add((method, path))
            call, route_problems = plan(route, method, path, a)
            problems += route_problems
            if call is not None and not route_problems:
                calls.append(call)
    problems += [f"{m} {p}: listed in NO_TEAM_ID but no longer a route"
                 for m, p in NO_TEAM_ID if (m, p) not in present]
    return calls, problems


@pytest.fixture
def team_a(
    client: TestClient,
    make_user: Callable[..., str],
    make_workflow: Callable[..., str],
    run_finished: Callable[..., str],
) -> TeamA:
    """One of everything team A can own, through the API (the client's key is A's)."""
    username, full_name = "tenancy-a-user@example.com", "Tenancy A Person"
    user_id = make_user(username, full_name)
    workflow_id = make_workflow(name="Tenancy A order summary", integration=INTEGRATION_NAME)
    event_workflow_id = make_workflow(EVENT_WORKFLOW)
    for installed in (workflow_id, event_workflow_id):
        response = client.put("/workflows/activate",
                              json={"userId": user_id, "workflowId": installed})
        assert response.status_code == 200, response.text
    execution_id = run_finished(workflow_id, user_id, {"label": MARKER, "values": [7]})
    app = client.post("/apps", json={
        "name": APP_NAME, "displayName": "Tenancy A App", "auth": {"type": "bearer"},
        "fields": [{"name": "apiKey", "displayName": "Key", "secret": True}]})
    assert app.status_code == 200, app.text
    credential = client.post("/headless/credentials", json={
        "userId": user_id, "credential": {"type": APP_NAME, "data": {"apiKey": APP_SECRET}}})
    assert credential.status_code == 200, credential.text
    # A headless installation B must not complete.
    started = client.post("/headless/startInstallation",
                          json={"userId": user_id, "integrationId": INTEGRATION_NAME})
    assert started.status_code == 200, started.text
    # The execution is a rerun source: A can rerun it (B must not).
    rerun = client.post(f"/workflows/{workflow_id}/rerun/{execution_id}", params={"wait": 10})
    assert rerun.status_code == 200, rerun.text
    # A bulk rerun job (of nothing: a window before A existed) B must not see or cancel.
    job = client.post("/reruns", json={"filter": {"workflowId": workflow_id,
                                                  "since": "2020-01-01", "until": "2020-01-02"}})
    assert job.status_code == 200, job.text
    return TeamA(
        ids={"user": user_id, "workflow": workflow_id, "execution": execution_id,
             "integration": INTEGRATION_NAME, "event": EVENT_NAME, "app": APP_NAME,
             "credential": credential.json()["credentialId"],
             "installation": started.json()["installationId"],
             "job": job.json()["jobId"]},
        secrets=[user_id, workflow_id, event_workflow_id, execution_id,
                 rerun.json()["executionId"], username, full_name, "Tenancy A order summary",
                 "Tenancy A event", INTEGRATION_NAME, EVENT_NAME, MARKER, MARKER.upper(),
                 APP_NAME, APP_SECRET, "Tenancy A App", credential.json()["credentialId"],
                 job.json()["jobId"]],
    )


# GETs that refuse A's own ids for another reason than tenancy (B still gets its 404).
OWN_READ_REFUSED: dict[str, str] = {
    "/headless/oauthUrl": "A's app is not an OAuth app (422); test_oauth.py covers the 200",
    "/users/{userId}/credentials/{app}": "the same as /headless/oauthUrl",
}


def answer_problem(call: Call, status: int, text: str, a: TeamA) -> str | None:
    """Why team B's answer breaks tenancy, or None when it is the expected not-found."""
    expected = EXPECTED.get((call.method, call.template), 404)
    where = f"{call.method} {call.template} as team B ({call.method} {call.path})"
    if status != expected:
        return f"{where}: answered {status}, not {expected}: {text[:300]}"
    leaked = [s for s in a.secrets if s in text and s not in call.sent]
    if leaked:
        return f"{where}: the answer shows team A's {leaked}: {text[:300]}"
    return None


def test_every_route_answers_404_to_another_teams_ids(
    client: TestClient, team_a: TeamA, other_team_headers: dict[str, str]
) -> None:
    app = client.app
    assert isinstance(app, FastAPI)
    calls, problems = walk(app, team_a)
    assert not problems, "routes the tenancy walk cannot cover:\n" + "\n".join(problems)
    # Again with B's own user beside A's other ids: a route that checks only the user
    # against the caller's team would otherwise hide behind the user's 404.
    created = client.post("/users", json={"username": "tenancy-b-user@example.com"},
                          headers=other_team_headers)
    assert created.status_code == 200, created.text
    with_b_user = TeamA(ids={**team_a.ids, "user": created.json()["userId"]})
    others = [team_a.ids[k] for k in team_a.ids if k != "user"]
    calls += [c for c in walk(app, with_b_user)[0] if any(i in c.sent for i in others)]
    # GETs first, so a leaking write cannot hide a leaking read behind a changed object.
    calls.sort(key=lambda c: c.method != "GET")
    for call in calls:
        response = client.request(call.method, call.path, params=call.params,
                                  json=call.body, headers=other_team_headers)
        problem = answer_problem(call, response.status_code, response.text, team_a)
        if problem is not None:
            problems.append(problem)
    assert not problems, "cross-team answers:\n" + "\n".join(problems)
    assert len(calls) >= 10, [f"{c.method} {c.template}" for c in calls]


def test_team_as_own_reads_of_the_same_ids_succeed(client: TestClient, team_a: TeamA) -> None:
    """The walk's ids are real: A's own GETs of the same calls answer 2xx (so B's 404s
    come from the team, not from ids that name nothing)."""
    app = client.app
    assert isinstance(app, FastAPI)
    calls, problems = walk(app, team_a)
    assert not problems, problems
    gets = [c for c in calls if c.method == "GET" and c.template not in OWN_READ_REFUSED]
    failed = [f"GET {c.path} {c.params}: {r.status_code} {r.text[:200]}"
              for c in gets
              if not 200 <= (r := client.get(c.path, params=c.params)).status_code < 300]
    assert not failed, "team A's own reads failed:\n" + "\n".join(failed)
    assert len(gets) >= 4


def test_team_as_data_is_intact_after_team_bs_writes(
    client: TestClient, team_a: TeamA, other_team_headers: dict[str, str]
) -> None:
    app = client.app
    assert isinstance(app, FastAPI)
    calls, _ = walk(app, team_a)
    for call in calls:
        if call.method != "GET":
            client.request(call.method, call.path, params=call.params, json=call.body,
                           headers=other_team_headers)
    user = client.get(f"/users/{team_a.ids['user']}")
    assert user.status_code == 200, user.text
    assert user.json()["fullName"] == "Tenancy A Person"
    detail = client.get(f"/logs/{team_a.ids['execution']}")
    assert detail.status_code == 200, detail.text
    run = client.post("/run/workflow", params={"wait": 10}, json={
        "workflowId": team_a.ids["workflow"], "userId": team_a.ids["user"],
        "data": {"label": "again", "values": [1]},
    })
    assert run.status_code == 200, run.text


@pytest.mark.parametrize(("method", "template"), [
    ("GET", "/users/{userId}"),
    ("GET", "/logs/{executionId}"),
    ("POST", "/workflows/{workflowId}/rerun/{executionId}"),
    ("DELETE", "/users/{userId}"),
])
def test_path_versioned_routes_answer_404_to_another_teams_ids(
    client: TestClient, team_a: TeamA, other_team_headers: dict[str, str],
    method: str, template: str,
) -> None:
    path = template.replace("{userId}", team_a.ids["user"]).replace(
        "{executionId}", team_a.ids["execution"]).replace("{workflowId}", team_a.ids["workflow"])
    call = Call(method, f"/2024-03{path}", template)
    response = client.request(method, call.path, headers=other_team_headers)
    assert answer_problem(call, response.status_code, response.text, team_a) is None
    assert client.get(f"/2024-03/users/{team_a.ids['user']}").status_code == 200


def _widget(widgetId: str) -> dict[str, str]:
    return {"widgetId": widgetId}


def test_a_route_with_an_unknown_parameter_fails_the_walk_naming_it() -> None:
    a = TeamA(ids={"user": "u1"})
    route = APIRoute("/widgets/{widgetId}", _widget, methods=["GET"])
    _, problems = plan(route, "GET", route.path, a)
    assert problems == ["GET /widgets/{widgetId}: path parameter 'widgetId' is not in "
                        "ID_PARAMETERS; map it to the team-A object it names"]


def test_a_route_with_no_id_and_no_reason_fails_the_walk_naming_it() -> None:
    route = APIRoute("/widgets", lambda: {}, methods=["GET"])
    _, problems = plan(route, "GET", route.path, TeamA(ids={}))
    assert problems == ["GET /widgets: takes no team-owned id in its path, query or body: "
                        "list it in NO_TEAM_ID with the reason, or map its parameter"]


def test_a_route_on_an_id_team_a_lacks_fails_the_walk_naming_it() -> None:
    route = APIRoute("/credentials/{credentialId}", lambda credentialId: {}, methods=["DELETE"])
    _, problems = plan(route, "DELETE", route.path, TeamA(ids={}))
    assert problems == ["DELETE /credentials/{credentialId}: path parameter 'credentialId': "
                        "team A owns no credential; create one in team_a()"]
