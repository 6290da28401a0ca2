"""Every call the Alloy documentation and its two official SDKs send is served, in the
header-versioned form and in each path-versioned form (``/2023-12``, ``/2024-03``,
``/2025-09``), with the same answer (../shared/reference/sdk-paths.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import API_VERSION, ORDER_DATA, wait_finished

PATH_VERSIONS = ("2023-12", "2024-03", "2025-09")

# (id, method, path): the reference's calls, ids filled from the ``ids`` fixture.
CALLS = [
    ("U1", "POST", "/users"),
    ("U2", "GET", "/users?parentWorkflowId={workflow}"),
    ("U3", "GET", "/users/{user}"),
    ("U4", "PUT", "/users/{user}"),
    ("U5", "DELETE", "/users/{user}"),
    ("U6", "POST", "/users/batch"),
    ("U7", "GET", "/users/{user}/token?userId"),
    ("U8", "DELETE", "/users/{user}/logs?userId"),
    ("U9", "PUT", "/users/{user}/deactivate-workflows"),
    ("I1", "GET", "/integrations?userId={user}"),
    ("I2", "GET", "/integrations/{integration}?userId={user}"),
    ("I3", "GET", "/installations"),
    ("W1", "GET", "/workflows?userId={user}"),
    ("W2", "GET", "/workflows/{workflow}?userId={user}"),
    ("W3", "GET", "/workflows/{workflow}/versions?userId={user}"),
    ("W4", "PUT", "/workflows/activate"),
    ("W5", "PUT", "/workflows/deactivate"),
    ("W6", "DELETE", "/workflows/{workflow}?userId={user}"),
    ("W7", "PUT", "/workflows/{workflow}/upgrade?userId={user}"),
    ("W8", "GET", "/workflows/{workflow}/users"),
    ("W9", "GET", "/workflows/{workflow}/analytics"),
    ("W10", "GET", "/workflows/{workflow}/errors?userId={user}"),
    ("L1", "GET", "/workflows/{workflow}/logs?userId={user}&page=1&limit=10&order=desc"),
    ("L1b", "GET", "/workflow/{workflow}/logs?userId={user}"),
    ("L2", "POST", "/workflows/{workflow}/rerun/{execution}?userId={user}"),
    ("L3", "GET", "/logs?workflowId={workflow}&associatedUserId={user}&skip=0&limit=10"
                  "&sortBy=createdAt&sortOrder=desc"),
    ("L4", "GET", "/logs/{execution}"),
    ("R1", "POST", "/run/workflow"),
    ("E1", "POST", "/run/event"),
    ("E2", "GET", "/events?userId={user}"),
    ("C1", "GET", "/credentials/users/{user}"),
    ("C1b", "GET", "/users/{user}/credentials"),
    ("C2", "POST", "/headless/credentials"),
    ("C2b", "POST", "/users/{user}/credentials"),
    ("C3", "DELETE", "/users/{user}/credentials/{credential}"),
    ("C4", "GET", "/metadata/credentials"),
    ("C4b", "GET", "/metadata/credentials/{app}"),
    ("C4c", "GET", "/credentials?userId={user}"),
    ("A1", "GET", "/metadata/apps"),
    ("A2", "GET", "/apps"),
]
# Reads whose whole answer must not depend on the form.
READS = [(i, m, p) for i, m, p in CALLS if m == "GET" and i not in ("U7",)]


@pytest.fixture
def ids(client: TestClient, installed: Callable[..., tuple[str, str]]) -> dict[str, str]:
    """A user with an installed workflow of an integration and one finished execution."""
    from support import ORDER_SUMMARY

    workflow_id, user_id = installed({**ORDER_SUMMARY, "integration": "Shop"})
    response = client.post("/apps", json={
        "name": "shop", "displayName": "Example Shop",
        "auth": {"type": "api_key", "header": "X-Api-Key"},
        "fields": [{"name": "apiKey", "displayName": "API key", "secret": True,
                    "required": True}]})
    assert response.status_code == 200, response.text
    response = client.post("/run/workflow", params={"wait": 10}, json={
        "workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA})
    assert response.status_code == 200, response.text
    execution_id = response.json()["executionId"]
    wait_finished(client, execution_id)
    integration = client.get("/integrations", params={"userId": user_id}).json()
    return {"workflow": workflow_id, "user": user_id, "execution": execution_id,
            "integration": integration["data"][0]["integrationId"],
            "credential": "0" * 24, "app": "shop"}


def forms(path: str) -> list[tuple[str, dict[str, str]]]:
    """The header-versioned form and each path-versioned one (which sends no header)."""
    return [(path, {"x-api-version": API_VERSION}),
            *((f"/{version}{path}", {}) for version in PATH_VERSIONS)]


def send(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    request = client.build_request(method, path, headers=headers)
    if "x-api-version" not in headers:
        del request.headers["x-api-version"]
    return client.send(request)


def test_every_alloy_call_reaches_an_endpoint_in_every_versioned_form(
    client: TestClient, ids: dict[str, str]
) -> None:
    unserved = []
    for call, method, path in CALLS:
        for target, headers in forms(path.format(**ids)):
            response = send(client, method, target, headers)
            if response.status_code == 405 or (
                    response.status_code == 404
                    and response.json()["message"] == "no such endpoint"):
                unserved.append(f"{call} {method} {target}")
    assert unserved == []


def test_every_alloy_read_answers_the_same_in_every_versioned_form(
    client: TestClient, ids: dict[str, str]
) -> None:
    for call, method, path in READS:
        answers = [send(client, method, target, headers)
                   for target, headers in forms(path.format(**ids))]
        assert answers[0].status_code == 200, f"{call}: {answers[0].text}"
        first = answers[0].json()
        for answer in answers[1:]:
            again = answer.json()
            if "lastFetched" in first:  # when the page was read (GET /logs)
                again["lastFetched"] = first["lastFetched"]
            assert (answer.status_code, again) == (200, first), call
