"""Apps declared through the API (YAML or JSON) and served as the Alloy metadata endpoints."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

SHOP_APP = b"""\
name: shop
displayName: Example Shop
auth: {type: api_key, header: X-Api-Key}   # the value sent is the secret field's
fields:
  - {name: apiKey, displayName: API key, secret: true, required: true}
"""
CRM_APP = {
    "name": "crm", "displayName": "CRM", "icon": "https://cdn.example/crm.png",
    "auth": {"type": "oauth2", "authorizeUrl": "https://crm.example/oauth/authorize",
             "tokenUrl": "https://crm.example/oauth/token", "scopes": ["contacts.read"],
             "clientId": {"env": "REFLOW_OAUTH_CRM_CLIENT_ID"},
             "clientSecret": {"env": "REFLOW_OAUTH_CRM_SECRET"}},
    "fields": [{"name": "region", "displayName": "Region", "required": False}],
}


def post_yaml(client: TestClient, body: bytes, path: str = "/apps") -> dict[str, object]:
    response = client.post(path, content=body, headers={"content-type": "application/yaml"})
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def test_the_issues_example_is_accepted_as_written_and_applying_it_again_changes_nothing(
    client: TestClient,
) -> None:
    first = post_yaml(client, SHOP_APP)
    again = post_yaml(client, SHOP_APP, "/2025-09/apps")
    assert (first["name"], first["created"], first["changed"]) == ("shop", True, True)
    assert (again["appId"], again["created"], again["changed"]) == (first["appId"], False,
                                                                    False)


def test_an_update_keeps_the_app_and_changes_what_it_shows(client: TestClient) -> None:
    first = post_yaml(client, SHOP_APP)
    changed = post_yaml(client, SHOP_APP.replace(b"Example Shop", b"The Shop"))
    assert (changed["appId"], changed["created"], changed["changed"]) == (
        first["appId"], False, True)
    [item] = client.get("/apps").json()["data"]
    assert item["displayName"] == "The Shop"


def test_a_bad_declaration_is_422_with_every_problem_by_path(client: TestClient) -> None:
    response = client.post("/apps", json={
        "name": "9shop", "icon": "ftp://x", "colour": "red",
        "auth": {"type": "oauth2", "tokenUrl": "https://t.example/token",
                 "clientId": "abc123", "clientSecret": {"env": "lower-case"}},
        "fields": [{"name": "key"}, {"name": "key", "secret": "yes"}]})
    assert response.status_code == 422, response.text
    problems = {p["path"]: p["reason"] for p in response.json()["problems"]}
    assert problems["name"].startswith("must start with a letter")
    assert problems["icon"] == "must be an absolute http or https URL"
    assert problems["colour"].startswith("unknown key")
    assert problems["auth.authorizeUrl"] == "required"
    assert "never the value itself" in problems["auth.clientId"]
    assert "REFLOW_OAUTH_" in problems["auth.clientSecret.env"]
    assert "declared twice" in problems["fields[1].name"]
    assert problems["fields[1].secret"] == "must be true or false"
    assert response.json()["message"].startswith("invalid app declaration: ")


def test_an_unknown_auth_type_names_the_kinds(client: TestClient) -> None:
    response = client.post("/apps", json={"name": "x", "auth": {"type": "hmac"}})
    assert response.status_code == 422
    assert "api_key, bearer, basic, oauth2, oauth2_client_credentials" in response.text


def test_apps_and_metadata_list_each_app_with_its_fields_in_every_sdk_path(
    client: TestClient, make_user: Callable[..., str],
) -> None:
    post_yaml(client, SHOP_APP)
    assert client.post("/apps", json=CRM_APP).status_code == 200
    user_id = make_user()
    apps = client.get("/2024-03/metadata/apps").json()["data"]
    assert apps == client.get("/apps").json()["data"]
    assert [(a["name"], a["type"], a["isOauth"], a["icon"]) for a in apps] == [
        ("crm", "oauth2", True, "https://cdn.example/crm.png"),
        ("shop", "api_key", False, None)]
    metadata = client.get("/metadata/credentials").json()["data"]
    assert metadata == client.get("/2023-12/credentials", params={"userId": user_id}
                                  ).json()["data"]
    shop = metadata[1]
    assert (shop["connector"], shop["name"], shop["isOauth"], shop["authType"]) == (
        "shop", "shop", False, "api_key")
    assert shop["properties"] == [{"name": "apiKey", "displayName": "API key",
                                   "description": "", "secret": True, "required": True}]
    one = client.get("/2024-03/metadata/credentials/crm").json()["data"]
    assert [m["connector"] for m in one] == ["crm"]
    # The declaration's client secret reference is not shown, nor anything of the auth.
    assert "REFLOW_OAUTH_CRM_SECRET" not in client.get("/metadata/credentials").text


def test_metadata_of_an_unknown_app_or_user_is_404(client: TestClient) -> None:
    assert client.get("/metadata/credentials/nope").status_code == 404
    assert client.get("/credentials", params={"userId": "nobody"}).status_code == 404


def test_a_declaration_may_not_name_the_deployments_own_settings_as_a_client_secret(
    client: TestClient,
) -> None:
    """Otherwise a team could have reflow send REFLOW_SECRET_KEY to a token URL it chose."""
    response = client.post("/apps", json={
        "name": "grab", "auth": {"type": "oauth2_client_credentials",
                                 "tokenUrl": "https://attacker.example/token",
                                 "clientId": {"env": "REFLOW_OAUTH_GRAB_ID"},
                                 "clientSecret": {"env": "REFLOW_SECRET_KEY"}}})
    assert response.status_code == 422, response.text
    problems = {p["path"]: p["reason"] for p in response.json()["problems"]}
    assert "REFLOW_OAUTH_" in problems["auth.clientSecret.env"]
