"""Authentication (``Authorization: bearer <key>``) and API versions (header or path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.services import Reflow
from support import TEST_KEY

SUPPORTED = ("2023-12", "2024-03", "2025-09")


def send_without(
    client: TestClient, method: str, url: str, *drop: str, **kwargs: Any
) -> Any:
    """Send a request with some of the client's default headers removed."""
    request = client.build_request(method, url, **kwargs)
    for name in drop:
        del request.headers[name]
    return client.send(request)


def assert_lists_supported_versions(response: Any) -> None:
    """A 400 whose message names every supported version."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert list(body) == ["message"]
    for version in SUPPORTED:
        assert version in body["message"]


# -- authentication ------------------------------------------------------------------------


def test_request_without_authorization_answers_401_unauthorized(client: TestClient) -> None:
    response = send_without(client, "POST", "/users", "authorization", json={"username": "a"})
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


@pytest.mark.parametrize("header", [
    "bearer rf_wrong_key_0123456789abcdef",
    f"Basic {TEST_KEY}",
    "bearer",
    "bearer ",
    TEST_KEY,
])
def test_wrong_key_or_scheme_answers_401_unauthorized(client: TestClient, header: str) -> None:
    response = client.get("/users/nobody", headers={"authorization": header})
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


@pytest.mark.parametrize("scheme", ["bearer", "Bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(
    client: TestClient, make_user: Callable[..., str], scheme: str
) -> None:
    user_id = make_user()
    response = client.get(f"/users/{user_id}", headers={"authorization": f"{scheme} {TEST_KEY}"})
    assert response.status_code == 200, response.text
    assert response.json()["userId"] == user_id


def test_a_revoked_key_stops_working_at_once(client: TestClient, reflow: Reflow) -> None:
    portal = client.portal
    assert portal is not None
    team = portal.call(reflow.keys.first_team)
    assert team is not None
    created = portal.call(reflow.keys.create_key, team, "second")
    headers = {"authorization": f"Bearer {created.raw}"}
    assert client.post("/users", json={"username": "before"}, headers=headers).status_code == 200

    portal.call(reflow.keys.revoke_key, team, created.key.prefix)

    response = client.post("/users", json={"username": "after"}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    # The other key of the team is untouched.
    assert client.post("/users", json={"username": "other"}).status_code == 200


def test_unauthenticated_request_creates_nothing(client: TestClient) -> None:
    send_without(client, "POST", "/users", "authorization", json={"username": "ghost"})
    assert client.get("/users/ghost").status_code == 404


# -- versions ------------------------------------------------------------------------------


def test_missing_version_answers_400_listing_supported_versions(client: TestClient) -> None:
    response = send_without(client, "POST", "/users", "x-api-version", json={"username": "a"})
    assert_lists_supported_versions(response)


@pytest.mark.parametrize("version", ["2019-01", "latest", "2025-9", ""])
def test_unknown_version_header_answers_400_listing_supported_versions(
    client: TestClient, version: str
) -> None:
    response = client.post("/users", json={"username": "a"}, headers={"x-api-version": version})
    assert_lists_supported_versions(response)


@pytest.mark.parametrize("version", SUPPORTED)
def test_every_supported_version_header_is_accepted(client: TestClient, version: str) -> None:
    response = client.post("/users", json={"username": f"u-{version}"},
                           headers={"x-api-version": version})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("version", ["2023-12", "2024-03", "2025-09"])
def test_version_as_first_path_segment_replaces_the_header(
    client: TestClient, make_user: Callable[..., str], version: str
) -> None:
    user_id = make_user(username=f"sdk-{version}@example.com")
    response = send_without(client, "GET", f"/{version}/users/{user_id}", "x-api-version")
    assert response.status_code == 200, response.text
    assert response.json()["username"] == f"sdk-{version}@example.com"


def test_path_version_works_for_posts_the_sdks_send(client: TestClient) -> None:
    response = send_without(client, "POST", "/2024-03/users", "x-api-version",
                            json={"username": "from-sdk"})
    assert response.status_code == 200, response.text
    assert client.get("/users/from-sdk").json()["userId"] == response.json()["userId"]


def test_unknown_path_version_answers_400_listing_supported_versions(client: TestClient) -> None:
    response = send_without(client, "GET", "/2019-01/users/someone", "x-api-version")
    assert_lists_supported_versions(response)


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/health"])
def test_pages_for_people_need_no_version(client: TestClient, path: str) -> None:
    response = send_without(client, "GET", path, "x-api-version")
    assert response.status_code == 200, response.text


def test_logs_endpoint_needs_no_version(client: TestClient) -> None:
    # Documented without the header in the reference: an unknown id is a 404, not a 400.
    response = send_without(client, "GET", "/logs/0000000000000000000000", "x-api-version")
    assert response.status_code == 404
    assert "message" in response.json()


def test_logs_endpoint_still_needs_a_key(client: TestClient) -> None:
    response = send_without(client, "GET", "/logs/0000000000000000000000",
                            "x-api-version", "authorization")
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}

