"""Configurable fields in definitions (docs/workflows.md "Configurable fields"): what a
block may declare, the problems by path, and the rules for a user's values."""

from __future__ import annotations

from typing import Any

import pytest

from reflow.domain.configuration import FieldType, effective, missing, value_problem
from reflow.errors import DefinitionInvalid
from reflow.services.workflows import definition_from_document


def definition(config: Any, value: Any = "{{ config.channel }}") -> dict[str, Any]:
    return {"name": "w", "trigger": {"type": "api"},
            "blocks": [{"id": "notify", "type": "transform", "config": config,
                        "with": {"value": value}}]}


def problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionInvalid) as raised:
        definition_from_document(doc)
    return [str(p) for p in raised.value.problems]


def test_a_declared_field_is_read_with_its_defaults_and_block() -> None:
    parsed = definition_from_document(definition([
        {"name": "channel", "options": ["#a", {"value": "#b", "displayName": "B"}]},
        {"name": "limit", "type": "integer", "default": 5, "required": False}]))
    channel, limit = parsed.config_fields
    assert (channel.display_name, channel.type, channel.required, channel.block_id) == (
        "channel", FieldType.STRING, True, "notify")
    assert [(o.value, o.display_name) for o in channel.options] == [("#a", "#a"), ("#b", "B")]
    assert limit.has_default and limit.default == 5 and not channel.has_default


def test_each_bad_field_is_named_by_its_path() -> None:
    assert problems(definition([
        {"name": "channel", "type": "text"},
        {"name": "channel"},
        {"name": "1st"},
        {"name": "n", "type": "integer", "default": 1.5},
        {"name": "s", "secret": True, "default": "x"},
        {"name": "o", "options": []},
        {"name": "b", "type": "boolean", "secret": True},
        {"name": "d", "default": "z", "options": ["x"]},
        {"name": "u", "colour": "red"},
    ])) == [
        "blocks[0].config[0].type: must be one of string, number, integer, boolean, json",
        "blocks[0].config[1].name: duplicate field 'channel' (first declared at "
        "blocks[0].config[0].name); names are the workflow's, not the block's",
        "blocks[0].config[2].name: must start with a letter or _ and hold only letters, "
        "digits and _, at most 64 (expressions read it as config.<name>)",
        "blocks[0].config[3].default: must be an integer",
        "blocks[0].config[4].default: a secret field takes no default (a definition never "
        "holds a secret)",
        "blocks[0].config[5].options: must be a non-empty list of values, or of "
        "{value, displayName}",
        "blocks[0].config[6].secret: only a string field can be secret",
        "blocks[0].config[7].default: must be one of the options",
        "blocks[0].config[8].colour: unknown key (expected one of: default, description, "
        "displayName, name, options, required, secret, type)",
    ]


def test_a_template_reading_an_undeclared_field_is_refused_with_a_suggestion() -> None:
    assert problems(definition([{"name": "channel"}], {"x": ["{{ config.chanel }}"]})) == [
        "blocks[0].with.value.x[0]: reads config.chanel, which no block of the workflow "
        "declares; did you mean 'channel'?"]
    # Another object's "config" key is not the installation's.
    definition_from_document(definition([{"name": "channel"}], "{{ order.config.other }}"))


def test_config_is_a_reserved_block_id() -> None:
    doc = {"name": "w", "trigger": {"type": "api"},
           "blocks": [{"id": "config", "type": "transform", "with": {"value": 1}}]}
    assert problems(doc) == ["blocks[0].id: 'config' is reserved: expressions use it for "
                             "the installation's configured fields"]


def test_values_are_checked_against_their_field_and_defaults_fill_the_rest() -> None:
    parsed = definition_from_document(definition([
        {"name": "channel", "options": ["#a"]},
        {"name": "limit", "type": "number", "default": 5},
        {"name": "note", "required": False}]))
    channel, limit, note = parsed.config_fields
    assert value_problem(channel, "#z") == "must be one of '#a'"
    assert value_problem(channel, None) == "required: a value must be given"
    assert value_problem(limit, True) == "must be a number"
    assert value_problem(note, None) is None
    assert [f.name for f in missing(parsed.config_fields, {})] == ["channel"]
    assert effective(parsed.config_fields, {"channel": "#a"}) == {"channel": "#a", "limit": 5}
