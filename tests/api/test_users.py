"""``POST /users`` and ``GET /users/{userId}``: ids, usernames, conflicts and tenancy."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")


def test_create_user_answers_only_a_24_hex_user_id(client: TestClient) -> None:
    response = client.post("/users", json={"username": "jane@example.com", "fullName": "Jane"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["userId"]
    assert OBJECT_ID.match(body["userId"])


def test_create_user_accepts_the_trailing_slash_of_the_reference_curl(client: TestClient) -> None:
    response = client.post("/users/", json={"username": "slash@example.com"})
    assert response.status_code == 200, response.text
    assert OBJECT_ID.match(response.json()["userId"])


def test_each_user_gets_a_new_id(make_user: Callable[..., str]) -> None:
    assert len({make_user() for _ in range(5)}) == 5


def test_get_user_by_id_answers_user_id_username_and_full_name(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    user_id = make_user(username="gregg@example.com", full_name="Gregg Mojica")
    response = client.get(f"/users/{user_id}")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "userId": user_id, "username": "gregg@example.com", "fullName": "Gregg Mojica",
    }


def test_get_user_by_username_finds_the_same_user(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    user_id = make_user(username="support@example.com", full_name="Support")
    response = client.get("/users/support@example.com")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "userId": user_id, "username": "support@example.com", "fullName": "Support",
    }


def test_full_name_is_optional(client: TestClient, make_user: Callable[..., str]) -> None:
    user_id = make_user(username="nameless")
    body = client.get(f"/users/{user_id}").json()
    assert body["userId"] == user_id
    assert body["username"] == "nameless"
    assert body["fullName"] is None


def test_duplicate_username_answers_409(client: TestClient, make_user: Callable[..., str]) -> None:
    make_user(username="taken@example.com")
    response = client.post("/users", json={"username": "taken@example.com", "fullName": "Two"})
    assert response.status_code == 409
    body = response.json()
    assert list(body) == ["message"]
    assert "taken@example.com" in body["message"]


def test_same_username_in_another_team_is_allowed(
    client: TestClient, make_user: Callable[..., str], other_team_headers: dict[str, str]
) -> None:
    mine = make_user(username="shared@example.com")
    response = client.post("/users", json={"username": "shared@example.com"},
                           headers=other_team_headers)
    assert response.status_code == 200, response.text
    assert response.json()["userId"] != mine


@pytest.mark.parametrize("ref", ["0123456789abcdef01234567", "nobody@example.com"])
def test_unknown_user_answers_404(client: TestClient, ref: str) -> None:
    response = client.get(f"/users/{ref}")
    assert response.status_code == 404
    assert list(response.json()) == ["message"]


def test_another_teams_user_answers_404_by_id_and_by_username(
    client: TestClient, make_user: Callable[..., str], other_team_headers: dict[str, str]
) -> None:
    user_id = make_user(username="private@example.com")
    for ref in (user_id, "private@example.com"):
        response = client.get(f"/users/{ref}", headers=other_team_headers)
        assert response.status_code == 404, ref
        assert list(response.json()) == ["message"]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "username"),
    ({"fullName": "No Username"}, "username"),
    ({"username": ""}, "username"),
    ({"username": 12}, "username"),
    ({"username": "ok", "fullName": ["not", "text"]}, "fullName"),
    ({"username": "ok", "email": "x@example.com"}, "email"),
])
def test_invalid_create_user_body_answers_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/users", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["message"]


def test_a_username_ending_in_a_newline_is_refused(client: TestClient) -> None:
    response = client.post("/users", json={"username": "ada\n"})
    assert response.status_code == 422, response.text
