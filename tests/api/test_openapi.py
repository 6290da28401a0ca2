"""The OpenAPI document says what the API answers, and schemathesis holds the API to it.

Every operation lists each status it answers with its body schema; the workflow
definition's JSON schema agrees with the validator on the examples and on bad
definitions; answers of real calls conform; and schemathesis fuzzes every operation
in-process (a bounded number of examples, derandomized so a run repeats).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema_rs
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reflow.api import create_app
from reflow.api.definition_schema import SEMANTIC_RULES
from reflow.domain.definitions import parse_document
from reflow.domain.integrations import declares_integration
from reflow.errors import DefinitionInvalid
from reflow.services import Reflow
from reflow.services.workflows import definition_from_document
from reflow.settings import Settings, load_settings
from reflow.store.migrate import upgrade
from support import API_VERSION, ORDER_DATA, ORDER_SUMMARY, TEST_KEY

# The example workflows (an integration declaration, `kind: integration`, is not one).
EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "examples").glob("*.yaml")
                  if not declares_integration(parse_document(p.read_text())))
COMMON = {"400", "401", "413", "422", "503"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation of the document."""
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings whose http blocks may reach the local slow target."""
    return make_settings(http_allow_networks="127.0.0.0/8")


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The OpenAPI document (built once: it needs no database, the app is not started)."""
    folder = tmp_path_factory.mktemp("openapi")
    settings = load_settings(database_url=f"sqlite:///{folder / 'reflow.db'}",
                             bootstrap_key=TEST_KEY, dev_key_file=folder / "dev-key")
    return create_app(Reflow.open(settings)).openapi()


@pytest.fixture(scope="module")
def definition_validator(document: dict[str, Any]) -> Any:
    """A JSON schema validator for the document's WorkflowDefinition."""
    root = {"$ref": "#/components/schemas/WorkflowDefinition",
            "components": {"schemas": document["components"]["schemas"]}}
    return jsonschema_rs.Draft202012Validator(root)


# -- the document -------------------------------------------------------------------------


def test_every_operation_declares_the_errors_any_route_may_answer(
    document: dict[str, Any],
) -> None:
    for method, path, operation in operations(document):
        responses = operation["responses"]
        assert COMMON <= set(responses), f"{method} {path}: {sorted(responses)}"
        for status, response in responses.items():
            schema = response["content"]["application/json"]["schema"]
            assert "$ref" in schema, f"{method} {path} {status} has no body model"


def test_error_answers_are_the_message_schema(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            ref = response["content"]["application/json"]["schema"]["$ref"]
            expected = "Invalid" if status == "422" else "Message"
            assert ref == f"#/components/schemas/{expected}", f"{method} {path} {status}"
    assert document["components"]["schemas"]["Message"]["required"] == ["message"]
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.parametrize(("method", "path", "statuses"), [
    ("POST", "/users", {"200", "409"}),
    ("GET", "/users/{userId}", {"200", "404"}),
    ("POST", "/workflows", {"200", "409"}),
    ("PUT", "/workflows/activate", {"200", "404"}),
    ("PUT", "/workflows/{workflowId}/definition", {"200", "404", "409"}),
    ("GET", "/workflows/{workflowId}/versions", {"200", "404"}),
    ("POST", "/run/workflow", {"200", "202", "404", "409"}),
    ("POST", "/workflows/{workflowId}/rerun/{executionId}", {"200", "202", "404", "409"}),
    ("GET", "/workflows/{workflowId}/logs", {"200", "404"}),
    ("GET", "/logs/{executionId}", {"200", "404"}),
])
def test_each_route_declares_its_own_statuses(
    document: dict[str, Any], method: str, path: str, statuses: set[str]
) -> None:
    declared = set(document["paths"][path][method.lower()]["responses"])
    assert declared == statuses | COMMON


def test_the_version_header_and_the_path_version_are_declared(
    document: dict[str, Any],
) -> None:
    servers = document["servers"]
    assert [s["url"] for s in servers] == ["/", "/{version}"]
    assert servers[1]["variables"]["version"]["enum"] == ["2023-12", "2024-03", "2025-09"]
    for method, path, operation in operations(document):
        headers = [p for p in operation["parameters"] if p["in"] == "header"]
        version = [p for p in headers if p["name"] == "x-api-version"]
        assert len(version) == 1, f"{method} {path}"
        assert version[0]["schema"]["enum"] == ["2023-12", "2024-03", "2025-09"]
    assert document["security"] == [{"bearer": []}]


def test_definition_bodies_refer_to_the_definition_schema(document: dict[str, Any]) -> None:
    for path, method in (("/workflows", "post"), ("/workflows/{workflowId}/definition", "put")):
        content = document["paths"][path][method]["requestBody"]["content"]
        assert content["application/json"]["schema"] == {
            "$ref": "#/components/schemas/WorkflowDefinition"}
        assert content["application/yaml"]["schema"] == {"type": "string"}


def test_block_schema_has_one_entry_per_registered_block_type(
    document: dict[str, Any],
) -> None:
    block = document["components"]["schemas"]["Block"]
    types = [entry["properties"]["type"]["const"] for entry in block["oneOf"]]
    assert types == ["branch", "delay", "fail", "filter", "http", "loop", "respond", "transform"]


# -- the definition schema against the validator -------------------------------------------


def validator_accepts(definition: Any) -> bool:
    """Whether the real validator (templates included) accepts the definition."""
    try:
        definition_from_document(definition)
    except DefinitionInvalid:
        return False
    return True


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates_against_the_definition_schema(
    definition_validator: Any, path: Path
) -> None:
    definition = parse_document(path.read_text())
    assert validator_accepts(definition)
    errors = [e.message for e in definition_validator.iter_errors(definition)]
    assert errors == []


def block(**changes: Any) -> dict[str, Any]:
    """A valid transform block, changed."""
    return {"id": "one", "type": "transform", "with": {"value": 1}, **changes}


def definition(**changes: Any) -> dict[str, Any]:
    """ORDER_SUMMARY, changed (None removes a key)."""
    changed = {**ORDER_SUMMARY, **changes}
    return {key: value for key, value in changed.items() if value is not None}


BAD_DEFINITIONS = {
    "not a mapping": ["a list"],
    "no name": definition(name=None),
    "blank name": definition(name="  "),
    "name too long": definition(name="n" * 201),
    "unknown top-level key": definition(retries=3),
    "no trigger": definition(trigger=None),
    "unknown trigger type": definition(trigger={"type": "cron"}),
    "event trigger without its event": definition(trigger={"type": "event"}),
    "event on an api trigger": definition(trigger={"type": "api", "event": "x"}),
    "no blocks": definition(blocks=[]),
    "blocks not a list": definition(blocks={"id": "a"}),
    "unknown block type": definition(blocks=[block(type="transfrom")]),
    "block without an id": definition(blocks=[{"type": "transform", "with": {"value": 1}}]),
    "block id with a dash": definition(blocks=[block(id="my-block")]),
    "reserved block id": definition(blocks=[block(id="trigger")]),
    "block id too long": definition(blocks=[block(id="b" * 65)]),
    "missing required parameter": definition(blocks=[block(**{"with": {}})]),
    "required parameter null": definition(blocks=[block(**{"with": {"value": None}})]),
    "unknown parameter": definition(blocks=[block(**{"with": {"value": 1, "vale": 2}})]),
    "unknown block key": definition(blocks=[block(retries=2)]),
    "retry attempts zero": definition(blocks=[block(retry={"attempts": 0})]),
    "retry attempts as text": definition(blocks=[block(retry={"attempts": "3"})]),
    "unknown backoff": definition(blocks=[block(retry={"backoff": "linear"})]),
    "duration without a unit": definition(blocks=[block(timeout="10")]),
    "zero timeout": definition(blocks=[block(timeout="0s")]),
    "negative timeout": definition(timeout=-1),
    "timeout over the block maximum": definition(blocks=[block(timeout=3601)]),
    "units out of order": definition(timeout="1m1h"),
    "nested block with a bad type": definition(blocks=[{
        "id": "pick", "type": "branch",
        "with": {"if": True, "then": [block(type="nope")]},
    }]),
}


@pytest.mark.parametrize("bad", list(BAD_DEFINITIONS.values()), ids=list(BAD_DEFINITIONS))
def test_schema_and_validator_both_refuse_bad_definitions(
    definition_validator: Any, bad: Any
) -> None:
    assert not validator_accepts(bad)
    assert not definition_validator.is_valid(bad)


GOOD_DEFINITIONS = {
    "nulls for optional keys": definition(description=None, integration=None, blocks=[
        block(retry=None, timeout=None),
        {"id": "done", "type": "respond", "with": None},
    ]),
    "durations as numbers and text": definition(timeout=" 1h30m ", blocks=[
        block(timeout=2.5, retry={"attempts": 3, "backoff": "fixed", "initial": "500ms",
                                  "max": "1m"}),
    ]),
    "schedule trigger": definition(trigger={"type": "schedule", "cron": "*/5 * * * *"}),
    "nested blocks": definition(blocks=[{
        "id": "pick", "type": "branch",
        "with": {"if": "{{ trigger.data.ok }}", "then": [block()], "else": None},
    }]),
}


@pytest.mark.parametrize("good", list(GOOD_DEFINITIONS.values()), ids=list(GOOD_DEFINITIONS))
def test_schema_and_validator_both_accept_good_definitions(
    definition_validator: Any, good: Any
) -> None:
    assert validator_accepts(good)
    assert [e.message for e in definition_validator.iter_errors(good)] == []


SEMANTIC_ONLY = {
    "duplicate block ids": definition(blocks=[block(), block()]),
    "template that does not compile": definition(blocks=[block(**{"with": {
        "value": "{{ $count( }}"}})]),
    "cron field out of range": definition(trigger={"type": "schedule", "cron": "61 * * * *"}),
    "retry max below initial": definition(blocks=[block(retry={"initial": "10s",
                                                               "max": "1s"})]),
}


@pytest.mark.parametrize("bad", list(SEMANTIC_ONLY.values()), ids=list(SEMANTIC_ONLY))
def test_rules_a_schema_cannot_say_are_the_validators_and_named_in_the_schema(
    document: dict[str, Any], definition_validator: Any, bad: Any
) -> None:
    assert not validator_accepts(bad)
    assert definition_validator.is_valid(bad)
    described = document["components"]["schemas"]["WorkflowDefinition"]["description"]
    assert all(rule in described for rule in SEMANTIC_RULES)


# -- real answers conform ------------------------------------------------------------------


def test_answers_of_a_whole_session_conform_to_the_document(
    client: TestClient, document: dict[str, Any],
    run_finished: Callable[..., str], slow_target: Any,
) -> None:
    schema = schemathesis.openapi.from_dict(document)
    seen: set[tuple[str, str, int]] = set()

    def call(method: str, template: str, url: str, **kwargs: Any) -> Any:
        response = client.request(method, url, **kwargs)
        schema[template][method].validate_response(response)
        seen.add((method, template, response.status_code))
        return response

    user = call("POST", "/users", "/users", json={"username": "ada", "fullName": "Ada"})
    user_id = user.json()["userId"]
    call("POST", "/users", "/users", json={"username": "ada"})
    call("GET", "/users/{userId}", f"/users/{user_id}")
    call("GET", "/users/{userId}", "/users/nobody")
    created = call("POST", "/workflows", "/workflows", json=ORDER_SUMMARY)
    workflow_id = created.json()["workflowId"]
    call("POST", "/workflows", "/workflows", json=ORDER_SUMMARY)
    call("POST", "/workflows", "/workflows", json={"name": "x", "blocks": "no"})
    call("PUT", "/workflows/{workflowId}/definition", f"/workflows/{workflow_id}/definition",
         content=b"name: Order summary\ntrigger: {type: api}\nblocks:\n"
                 b"  - {id: done, type: respond, with: {body: 2}}\n",
         headers={"content-type": "application/yaml"})
    call("PUT", "/workflows/{workflowId}/definition", "/workflows/nope/definition",
         json=ORDER_SUMMARY)
    call("PUT", "/workflows/activate", "/workflows/activate",
         json={"userId": user_id, "workflowId": workflow_id})
    call("PUT", "/workflows/activate", "/workflows/activate",
         json={"userId": "nobody", "workflowId": workflow_id})
    call("GET", "/workflows/{workflowId}/versions", f"/workflows/{workflow_id}/versions",
         params={"userId": user_id})
    call("POST", "/run/workflow", "/run/workflow",
         json={"workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA})
    execution_id = run_finished(workflow_id, user_id)
    call("POST", "/run/workflow", "/run/workflow", params={"wait": 5},
         json={"workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA})
    call("POST", "/run/workflow", "/run/workflow",
         json={"workflowId": "nope", "userId": user_id, "data": {}})
    call("POST", "/workflows/{workflowId}/rerun/{executionId}",
         f"/workflows/{workflow_id}/rerun/{execution_id}", json={"wait": 5})
    call("POST", "/workflows/{workflowId}/rerun/{executionId}",
         f"/workflows/{workflow_id}/rerun/nope")
    call("GET", "/workflows/{workflowId}/logs", f"/workflows/{workflow_id}/logs")
    call("GET", "/logs/{executionId}", f"/logs/{execution_id}")
    call("GET", "/logs/{executionId}", "/logs/nope")

    slow_id = client.post("/workflows", json=slow_target.workflow()).json()["workflowId"]
    assert client.put("/workflows/activate", json={
        "userId": user_id, "workflowId": slow_id}).status_code == 200
    running = call("POST", "/run/workflow", "/run/workflow", params={"wait": 0.05},
                   json={"workflowId": slow_id, "userId": user_id, "data": {}})
    assert running.status_code == 202
    call("POST", "/workflows/{workflowId}/rerun/{executionId}",
         f"/workflows/{slow_id}/rerun/{running.json()['executionId']}")
    call("POST", "/users", "/users", json={"username": "ada", "extra": 1})
    assert {status for _, _, status in seen} == {200, 202, 404, 409, 422}


# -- schemathesis ----------------------------------------------------------------------------


@pytest.fixture
def fuzzed_schema(settings: Settings) -> Iterator[Any]:
    """The app on a migrated, bootstrapped database, loaded by schemathesis in-process.

    Schemathesis runs the app's lifespan on its own event loop, so the first team and key
    are made beforehand, on another.
    """
    upgrade(settings.database_url)

    async def bootstrap() -> None:
        reflow = Reflow.open(settings)
        try:
            await reflow.bootstrap()
        finally:
            await reflow.close()

    asyncio.run(bootstrap())
    app = create_app(Reflow.open(settings))
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        shutdown_lifespans()


HEADERS = {"authorization": f"bearer {TEST_KEY}", "x-api-version": API_VERSION}
# Bounded and derandomized: the same requests every run, about 20 s in all on 2 cores.
# Negative cases mostly drop the key or the version (401, 400), so fewer of them do.
EXAMPLES_PER_MODE = {schemathesis.GenerationMode.POSITIVE: 25,
                     schemathesis.GenerationMode.NEGATIVE: 10}


def test_every_operation_holds_to_the_document_under_fuzzing(fuzzed_schema: Any) -> None:
    # Driven with @given here rather than @schema.parametrize(), whose lazy (fixture) form
    # does not run under pytest 9; every operation of the document is covered either way.
    failures = []
    for result in fuzzed_schema.get_all_operations():
        operation = result.ok()
        for mode, examples in EXAMPLES_PER_MODE.items():

            @hypothesis.settings(max_examples=examples, deadline=None, derandomize=True,
                                 database=None, suppress_health_check=list(hypothesis.HealthCheck))
            @hypothesis.given(case=operation.as_strategy(mode))
            def holds(case: Any) -> None:
                case.call_and_validate(headers=HEADERS, checks=CHECKS)

            try:
                holds()
            except Exception as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert failures == [], "\n\n".join(failures)


def test_definition_with_an_integer_past_64_bits_answers_422(client: TestClient) -> None:
    body = definition(blocks=[block(**{"with": {"value": 2**64}})])
    response = client.post("/workflows", json=body)
    assert response.status_code == 422, response.text
    assert "integer out of range" in response.json()["message"]



def test_the_test_client_refuses_an_answer_that_does_not_match_the_declared_model() -> None:
    """The check every API test relies on (tests/response_models.py) does fail."""
    from fastapi import FastAPI
    from pydantic import BaseModel
    from starlette.responses import JSONResponse

    from response_models import checking_hooks, declared_model

    class Named(BaseModel):
        name: str

    app = FastAPI()

    @app.get("/named", response_model=Named)
    async def named(wrong: bool = False) -> JSONResponse:
        return JSONResponse({"nom": "x"} if wrong else {"name": "x"})

    @app.get("/broken")
    async def broken() -> JSONResponse:
        return JSONResponse({"detail": "no message key"}, status_code=400)

    with TestClient(app) as client:
        client.event_hooks = checking_hooks(app)
        assert client.get("/named").json() == {"name": "x"}
        assert declared_model(app, "GET", "/2025-09/named") is Named
        with pytest.raises(AssertionError, match="not its declared Named"):
            client.get("/named", params={"wrong": True})
        with pytest.raises(AssertionError, match="without a"):
            client.get("/broken")
