"""App declarations (reflow.domain.apps): checked with precise problems, turned into the
bindings the http block applies; and the block applying them."""

from __future__ import annotations

import base64

import pytest

from reflow.domain.apps import (
    AuthKind,
    app_from_document,
    app_from_text,
    app_json,
    binding,
    binding_secrets,
    declares_app,
    value_problems,
)
from reflow.errors import AppInvalid

SHOP = """\
name: shop
displayName: Example Shop
auth: {type: api_key, header: X-Api-Key}   # the value sent is the secret field's
fields:
  - {name: apiKey, displayName: API key, secret: true, required: true}
"""


def problems_of(doc: object) -> dict[str, str]:
    with pytest.raises(AppInvalid) as raised:
        app_from_document(doc)
    return {p.path: p.reason for p in raised.value.problems}


def test_the_issues_example_reads_as_an_api_key_in_a_header_from_its_secret_field() -> None:
    app = app_from_text(SHOP)
    assert (app.name, app.display_name, app.auth.kind, app.auth.header, app.auth.field) == (
        "shop", "Example Shop", AuthKind.API_KEY, "X-Api-Key", "apiKey")
    assert binding(app, {"apiKey": "k1"}) == {"type": "header", "name": "X-Api-Key",
                                              "value": "k1"}


def test_only_kind_app_documents_are_app_files() -> None:
    assert declares_app({"kind": "app", "name": "x"})
    assert not declares_app({"kind": "integration", "name": "x"})
    assert not declares_app({"name": "x"})


@pytest.mark.parametrize(("auth", "fields", "expected"), [
    ({"type": "api_key", "query": "key"}, [{"name": "key", "secret": True}],
     {"type": "query", "name": "key", "value": "v"}),
    ({"type": "bearer", "field": "token"}, [{"name": "token", "secret": True}],
     {"type": "bearer", "token": "v"}),
    ({"type": "basic"}, [{"name": "username"}, {"name": "password", "secret": True}],
     {"type": "basic", "username": "v", "password": "v"}),
])
def test_each_auth_kind_binds_as_the_http_block_applies_it(
    auth: dict[str, str], fields: list[dict[str, object]], expected: dict[str, str]
) -> None:
    app = app_from_document({"name": "a", "auth": auth, "fields": fields})
    assert binding(app, {f["name"]: "v" for f in fields}) == expected


def test_oauth_apps_take_references_and_bind_the_access_token_as_bearer() -> None:
    app = app_from_document({
        "name": "crm", "auth": {
            "type": "oauth2", "authorizeUrl": "https://crm.example/a",
            "tokenUrl": "https://crm.example/t", "scopes": ["a", "b"],
            "clientId": {"env": "REFLOW_OAUTH_CRM_ID"},
            "clientSecret": {"env": "REFLOW_OAUTH_CRM_SECRET"}}})
    assert app.auth.kind.is_oauth and app.auth.pkce and app.auth.scopes == ("a", "b")
    assert app.auth.client_secret is not None
    assert app.auth.client_secret.env == "REFLOW_OAUTH_CRM_SECRET"
    assert binding(app, {"accessToken": "at"}) == {"type": "bearer", "token": "at"}
    assert binding(app, {})["type"] == "unavailable"
    assert [p.path for p in value_problems(app, {})] == ["credential.data.accessToken"]
    assert app.secret_names() == {"accessToken", "refreshToken"}


def test_client_credentials_may_take_the_client_from_the_users_fields() -> None:
    app = app_from_document({
        "name": "erp", "auth": {
            "type": "oauth2_client_credentials", "tokenUrl": "https://erp.example/t",
            "clientId": {"field": "clientId"}, "clientSecret": {"field": "clientSecret"}},
        "fields": [{"name": "clientId"}, {"name": "clientSecret", "secret": True}]})
    assert app.auth.client_id is not None and app.auth.client_id.field == "clientId"


def test_problems_name_each_path_and_reason() -> None:
    problems = problems_of({
        "kind": "workflow", "name": "shop", "auth": {"type": "api_key", "header": "X Key"},
        "fields": [{"name": "a", "secret": True}, {"name": "b", "secret": True},
                   {"name": "accessToken"}, {"name": "1x"}, "nope"]})
    assert problems["kind"] == "must be 'app'"
    assert problems["auth.header"].startswith("must be a header name")
    assert problems["auth.field"].startswith("required: name the field")
    assert problems["fields[2].name"] == "'accessToken' is reserved for OAuth tokens"
    assert problems["fields[3].name"].startswith("must be letters")
    assert problems["fields[4]"] == "must be a mapping with a name"
    assert problems_of({"name": "x"})["auth"].startswith("required")
    assert problems_of([1])[""].startswith("an app declaration must be a mapping")
    basic = problems_of({"name": "x", "auth": {"type": "basic", "username": "user"}})
    assert basic["auth.username"].startswith("names no field")
    assert basic["auth.password"].startswith("names no field")


def test_value_problems_name_missing_unknown_and_malformed_fields_never_values() -> None:
    app = app_from_text(SHOP)
    found = value_problems(app, {"apikey": "hunter22", "extra": 5})
    text = "; ".join(str(p) for p in found)
    assert "credential.data.apikey: unknown field of app 'shop'; did you mean 'apiKey'?" in text
    assert "credential.data.apiKey: required by app 'shop' (API key)" in text
    assert "hunter22" not in text
    assert [str(p) for p in value_problems(app, {"apiKey": 7})] == [
        "credential.data.apiKey: must be a string"]
    assert value_problems(app, {"apiKey": "k"}) == []
    assert value_problems(app, ["k"])[0].path == "credential.data"


def test_binding_secrets_hide_the_values_and_the_basic_pair_as_sent() -> None:
    secrets = binding_secrets({
        "a": {"type": "header", "name": "X-Api-Key", "value": "k1"},
        "b": {"type": "basic", "username": "ann", "password": "pw"},
        "c": {"type": "unavailable", "reason": "no credential"}})
    assert set(secrets) == {"k1", "pw", base64.b64encode(b"ann:pw").decode()}


@pytest.mark.parametrize("doc", [
    {"name": "erp", "auth": {"type": "oauth2_client_credentials", "tokenUrl": "https://e.x/t",
                             "clientId": {"field": "cid"},
                             "clientSecret": {"env": "REFLOW_OAUTH_X"}},
     "fields": [{"name": "cid"}]},
    {"name": "b", "icon": "https://i.x/b.png", "auth": {"type": "basic"},
     "fields": [{"name": "username"}, {"name": "password", "secret": True}]},
    {"name": "q", "auth": {"type": "api_key", "query": "k"},
     "fields": [{"name": "k", "secret": True, "description": "d", "required": False}]},
])
def test_the_stored_form_reads_back_as_the_same_declaration(doc: dict[str, object]) -> None:
    app = app_from_document(doc)
    assert app_from_document(app_json(app)) == app
