"""``GET /users/{userId}/token`` and ``/.well-known/jwks.json``: EdDSA user tokens that a
verifier checks with the published keys, across key rotation and both SDKs' query forms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from reflow.clock import ManualClock
from reflow.ids import now_ms
from reflow.services import Reflow
from reflow.services.tokens import TokenService, signing_keys
from reflow.settings import load_settings
from support import TEST_SECRET_KEY

NEW_SECRET_KEY = "bmV3LXJlZmxvdy1zZWNyZXQta2V5LTMyLWJ5dGVzISE="
HOUR = 3600


def jwks(client: TestClient) -> list[dict[str, Any]]:
    """The published keys, fetched as a verifier would: no API key, no version header.

    (A client outside the app's lifespan runs each request on a loop of its own: fine here,
    as the key set reads no database.)"""
    anonymous = TestClient(client.app)
    response = anonymous.get("/.well-known/jwks.json")
    assert response.status_code == 200, response.text
    keys: list[dict[str, Any]] = response.json()["keys"]
    return keys


def verify(client: TestClient, token: str, **options: Any) -> dict[str, Any]:
    """The token's claims, checked against the JWKS key its ``kid`` names."""
    kid = jwt.get_unverified_header(token)["kid"]
    (jwk,) = [key for key in jwks(client) if key["kid"] == kid]
    claims: dict[str, Any] = jwt.decode(token, jwt.PyJWK(jwk), algorithms=["EdDSA"],
                                        issuer="reflow", **options)
    return claims


def token_of(client: TestClient, path: str, **kwargs: Any) -> str:
    response = client.get(path, **kwargs)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["token"]
    token: str = body["token"]
    return token


def test_token_verifies_with_the_published_key_and_carries_the_user_claims(
    client: TestClient, reflow: Reflow, make_user: Callable[..., str]
) -> None:
    user_id = make_user(username="jane@example.com")
    before = now_ms() // 1000
    token = token_of(client, f"/users/{user_id}/token")
    claims = verify(client, token)
    team = client.portal.call(reflow.keys.team, None)  # type: ignore[union-attr]
    assert claims["sub"] == user_id
    assert claims["team"] == team.id
    assert claims["username"] == "jane@example.com"
    assert before <= claims["iat"] <= now_ms() // 1000
    assert claims["exp"] == claims["iat"] + HOUR
    assert len(claims["jti"]) >= 16
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == jwks(client)[0]["kid"]


def test_each_token_gets_its_own_jti(client: TestClient, make_user: Callable[..., str]) -> None:
    user_id = make_user()
    jtis = {verify(client, token_of(client, f"/users/{user_id}/token"))["jti"]
            for _ in range(3)}
    assert len(jtis) == 3


def test_jwks_lists_an_ed25519_signing_key(client: TestClient) -> None:
    (key,) = jwks(client)
    assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")


def test_a_username_in_the_path_gives_the_users_token(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    user_id = make_user(username="gregg@example.com")
    claims = verify(client, token_of(client, "/users/gregg@example.com/token"))
    assert claims["sub"] == user_id
    assert claims["username"] == "gregg@example.com"


def test_unknown_user_answers_404(client: TestClient) -> None:
    response = client.get("/users/nobody/token")
    assert response.status_code == 404
    assert "nobody" in response.json()["message"]


def test_another_teams_user_answers_404(
    client: TestClient, make_user: Callable[..., str], other_team_headers: dict[str, str]
) -> None:
    user_id = make_user()
    assert client.get(f"/users/{user_id}/token", headers=other_team_headers).status_code == 404


def test_token_needs_an_api_key(client: TestClient, make_user: Callable[..., str]) -> None:
    user_id = make_user()
    response = TestClient(client.app).get(f"/2025-09/users/{user_id}/token")
    assert response.status_code == 401


def test_an_expired_token_is_refused_by_verification(
    client: TestClient, reflow: Reflow, make_user: Callable[..., str]
) -> None:
    user_id = make_user()
    two_hours_ago = now_ms() - 2 * HOUR * 1000
    reflow.tokens = TokenService(reflow.users, TEST_SECRET_KEY, HOUR,
                                 clock=ManualClock(two_hours_ago))
    token = token_of(client, f"/users/{user_id}/token")
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(client, token)
    # Within its hour (as the verifier's leeway pretends) the same token is good.
    assert verify(client, token, leeway=2 * HOUR)["sub"] == user_id


def test_a_token_from_before_a_key_rotation_still_verifies(
    client: TestClient, reflow: Reflow, make_user: Callable[..., str]
) -> None:
    user_id = make_user()
    old_token = token_of(client, f"/users/{user_id}/token")
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    # REFLOW_SECRET_KEY rotated: the new key first, the old one kept after it.
    reflow.tokens = TokenService(reflow.users, f"{NEW_SECRET_KEY},{TEST_SECRET_KEY}", HOUR)
    keys = jwks(client)
    assert [key["kid"] for key in keys][1:] == [old_kid]
    assert verify(client, old_token)["sub"] == user_id
    new_token = token_of(client, f"/users/{user_id}/token")
    assert jwt.get_unverified_header(new_token)["kid"] == keys[0]["kid"] != old_kid
    assert verify(client, new_token)["sub"] == user_id


def test_every_process_derives_the_same_key_from_the_same_secret() -> None:
    first, second = signing_keys(TEST_SECRET_KEY), signing_keys(f" {TEST_SECRET_KEY} ")
    assert [k.jwk for k in first] == [k.jwk for k in second]
    assert first[0].jwk != signing_keys(NEW_SECRET_KEY)[0].jwk


def test_the_path_versioned_form_works(client: TestClient, make_user: Callable[..., str]) -> None:
    user_id = make_user()
    # The path's version replaces the header's (the middleware strips the segment).
    token = token_of(client, f"/2024-03/users/{user_id}/token")
    assert verify(client, token)["sub"] == user_id


@pytest.mark.parametrize("query", ["?userId", "?userId=", "?userId={id}"])
def test_the_query_user_id_of_both_sdks_is_accepted(
    client: TestClient, make_user: Callable[..., str], query: str
) -> None:
    # alloy-python sends a bare ?userId; alloy-node (and the reference's sample) ?userId=<id>.
    user_id = make_user()
    token = token_of(client, f"/users/{user_id}/token{query.format(id=user_id)}")
    assert verify(client, token)["sub"] == user_id


def test_a_query_user_id_other_than_the_paths_answers_422(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    user_id = make_user()
    response = client.get(f"/users/{user_id}/token", params={"userId": "someone-else"})
    assert response.status_code == 422
    assert "userId" in response.json()["message"]


def test_without_a_secret_key_the_token_answers_503_and_no_key_is_published(
    client: TestClient, reflow: Reflow, make_user: Callable[..., str]
) -> None:
    user_id = make_user()
    reflow.tokens = TokenService(reflow.users, None, HOUR)
    response = client.get(f"/users/{user_id}/token")
    assert response.status_code == 503
    assert response.json() == {"message": "user tokens need REFLOW_SECRET_KEY"}
    assert jwks(client) == []


def test_token_lifetime_is_a_duration_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_USER_TOKEN_TTL", "30m")
    assert load_settings().user_token_ttl == 1800
    monkeypatch.setenv("REFLOW_USER_TOKEN_TTL", "90")
    assert load_settings().user_token_ttl == 90
