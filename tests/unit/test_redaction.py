"""Redaction of what steps record: secret-named keys and credential values in any string."""

from __future__ import annotations

from typing import Any

import pytest

from reflow.blocks.redaction import SECRET_MARK, is_secret_key, redact, secret_values


@pytest.mark.parametrize(
    "key",
    [
        "Authorization",
        "proxy-authorization",
        "Cookie",
        "SET-COOKIE",
        "access_token",
        "X-Auth-Token",
        "client_secret",
        "password",
        "db_passwd",
        "api_key",
        "ApiKey",
        "x-api-key",
    ],
)
def test_secret_named_keys_are_redacted(key: str) -> None:
    assert redact({key: "value", "other": 1}) == {key: SECRET_MARK, "other": 1}


@pytest.mark.parametrize("key", ["content-type", "author", "cookies_enabled_count", "id"])
def test_ordinary_keys_are_not_secret(key: str) -> None:
    assert not is_secret_key(key)


def test_secret_key_value_is_replaced_whatever_its_type() -> None:
    assert redact({"token": {"nested": "x"}, "password": None}) == {
        "token": SECRET_MARK,
        "password": SECRET_MARK,
    }


def test_nested_mappings_and_lists_are_walked() -> None:
    value = {
        "order": {"id": 7, "headers": {"Authorization": "Bearer abc"}},
        "items": [{"name": "a"}, {"name": "b", "api-key": "k"}],
        "pair": ("x", {"secret": "s"}),
    }
    assert redact(value) == {
        "order": {"id": 7, "headers": {"Authorization": SECRET_MARK}},
        "items": [{"name": "a"}, {"name": "b", "api-key": SECRET_MARK}],
        "pair": ("x", {"secret": SECRET_MARK}),
    }


def test_redaction_never_mutates_its_input() -> None:
    value = {"a": {"token": "t"}, "b": ["sk-live-1234"]}
    redact(value, ["sk-live-1234"])
    assert value == {"a": {"token": "t"}, "b": ["sk-live-1234"]}


def test_secret_values_are_replaced_inside_any_string() -> None:
    value = {
        "url": "https://x/?key=sk-live-1234&a=1",
        "log": ["got sk-live-1234 twice sk-live-1234"],
    }
    assert redact(value, ["sk-live-1234"]) == {
        "url": f"https://x/?key={SECRET_MARK}&a=1",
        "log": [f"got {SECRET_MARK} twice {SECRET_MARK}"],
    }


def test_secret_inside_a_key_is_replaced() -> None:
    assert redact({"user:hunter22": 1}, ["hunter22"]) == {f"user:{SECRET_MARK}": 1}


def test_short_secrets_are_ignored() -> None:
    assert redact("a abc b", ["abc", ""]) == "a abc b"


def test_longer_secret_is_replaced_whole_when_it_contains_a_shorter_one() -> None:
    assert redact("x pass1234word y", ["pass", "pass1234word"]) == f"x {SECRET_MARK} y"


def test_secret_text_that_matches_the_mark_is_not_redacted_twice() -> None:
    assert redact("acted redacted", ["acted", "redacted"]) == f"{SECRET_MARK} {SECRET_MARK}"


def test_regex_metacharacters_in_secrets_are_literal() -> None:
    assert redact("a.b*c+d and axbxc", ["a.b*c+d"]) == f"{SECRET_MARK} and axbxc"


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1, 2, {"c": "clean text"}], "d": ("x", None)},
        ["plain", {"content-type": "application/json"}],
        "nothing to hide",
        42,
        None,
    ],
)
def test_clean_values_are_returned_as_the_same_object(value: Any) -> None:
    assert redact(value, ["sk-live-1234"]) is value


def test_only_changed_containers_are_copied() -> None:
    clean = {"x": [1, 2]}
    value = {"clean": clean, "dirty": {"token": "t"}, "items": [clean]}
    result = redact(value)
    assert result is not value
    assert result["clean"] is clean
    assert result["items"] is value["items"]
    assert result["dirty"] == {"token": SECRET_MARK}


def test_already_redacted_value_is_not_copied() -> None:
    value = {"Authorization": SECRET_MARK}
    assert redact(value) is value


def test_key_order_is_kept_when_copying() -> None:
    value = {"a": 1, "token": "t", "z": 2}
    assert list(redact(value)) == ["a", "token", "z"]


# -- credentials inside URLs and text ---------------------------------------------------------


@pytest.mark.parametrize(
    "param",
    ["token", "access_token", "api_key", "apikey", "apiKey", "key", "secret", "client_secret",
     "password", "signature", "X-Amz-Signature", "sig", "subscription-key"],
)
def test_secret_looking_query_parameters_are_redacted_in_urls(param: str) -> None:
    url = f"https://api.example.com/v1/orders?page=2&{param}=s3cr3t-value&sort=asc#top"
    assert redact({"url": url}) == {
        "url": f"https://api.example.com/v1/orders?page=2&{param}={SECRET_MARK}&sort=asc#top"
    }


@pytest.mark.parametrize("param", ["page", "sort", "keyword", "monkey", "q"])
def test_ordinary_query_parameters_are_kept(param: str) -> None:
    url = f"https://api.example.com/search?{param}=value"
    assert redact(url) is url


def test_a_url_inside_free_text_loses_its_secret_parameter() -> None:
    text = "GET https://x.example/cb?token=abc123&id=7 answered 500"
    assert redact([text]) == [f"GET https://x.example/cb?token={SECRET_MARK}&id=7 answered 500"]


def test_a_form_body_loses_its_secret_fields() -> None:
    assert redact("grant_type=password&password=hunter22&user=ann") == (
        f"grant_type=password&password={SECRET_MARK}&user=ann"
    )


def test_the_password_of_a_url_is_redacted_and_the_user_kept() -> None:
    assert redact("postgres://ann:pa55word@db:5432/x") == f"postgres://ann:{SECRET_MARK}@db:5432/x"


def test_an_already_redacted_url_is_returned_as_the_same_object() -> None:
    url = f"https://x/?token={SECRET_MARK}&sig={SECRET_MARK} and https://a:{SECRET_MARK}@h/"
    assert redact(url) is url


def test_a_known_secret_is_redacted_inside_a_query_string_under_any_name() -> None:
    assert redact("https://x/?q=hunter2&page=1", ["hunter2"]) == f"https://x/?q={SECRET_MARK}&page=1"


# -- known secret values from a trigger -------------------------------------------------------


def test_secret_values_collects_every_leaf_under_a_secret_looking_key_at_any_depth() -> None:
    trigger = {"data": {
        "password": "hunter2",
        "nested": {"apiKey": "abc123xyz", "name": "ann"},
        "items": [{"token": {"value": "t-1", "pin": 4321, "ok": True}}],
        "label": "public",
    }}
    assert secret_values(trigger) == ("hunter2", "abc123xyz", "t-1", "4321")


def test_secret_values_of_a_payload_without_secret_keys_is_empty() -> None:
    assert secret_values({"data": {"label": "x", "values": [1, 2]}}) == ()
