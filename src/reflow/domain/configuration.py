"""Configurable fields: values a user chooses when installing a workflow (headless install).

A block declares them under ``config`` (docs/workflows.md "Configurable fields"); the
user's values are stored on the installation and expressions read them as
``config.<name>``. This module holds the declared field and the rules for a value; the
definition validator (``definitions.py``) parses the declaration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson


class FieldType(StrEnum):
    """What kind of value a configurable field takes."""

    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    JSON = "json"  # any JSON value: a list, a mapping, ...


@dataclass(frozen=True, slots=True)
class FieldOption:
    """One allowed value of a field, with the label a form shows for it."""

    value: Any
    display_name: str


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class ConfigField:
    """A field a user fills in at install time; ``block_id`` is the block declaring it."""

    name: str
    display_name: str
    type: FieldType = FieldType.STRING
    required: bool = True
    default: Any = _UNSET
    options: tuple[FieldOption, ...] = ()
    secret: bool = False
    description: str | None = None
    block_id: str = ""

    @property
    def has_default(self) -> bool:
        """Whether the definition gives a value used until the user sets one."""
        return self.default is not _UNSET


def type_problem(field_type: FieldType, value: Any) -> str | None:
    """Why ``value`` is not of ``field_type`` (None when it is)."""
    if field_type is FieldType.JSON:
        return None
    if field_type is FieldType.STRING:
        ok = isinstance(value, str)
    elif field_type is FieldType.BOOLEAN:
        ok = isinstance(value, bool)
    elif field_type is FieldType.INTEGER:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value))
    article = "an" if field_type is FieldType.INTEGER else "a"
    return None if ok else f"must be {article} {field_type.value}"


def value_problem(field: ConfigField, value: Any) -> str | None:
    """Why ``value`` cannot be this field's value (None when it can)."""
    if value is None:
        return "required: a value must be given" if field.required else None
    reason = type_problem(field.type, value)
    if reason is not None:
        return reason
    if field.type is FieldType.STRING and field.required and not value.strip():
        return "required: must not be empty"
    if field.options and value not in [o.value for o in field.options]:
        allowed = ", ".join(repr(o.value) for o in field.options)
        return f"must be one of {allowed}"
    return None


def missing(fields: Iterable[ConfigField], values: Mapping[str, Any]) -> list[ConfigField]:
    """The required fields that have neither a stored value nor a default."""
    return [f for f in fields
            if f.required and not f.has_default and values.get(f.name) is None]


def effective(fields: Iterable[ConfigField], values: Mapping[str, Any]) -> dict[str, Any]:
    """What expressions see as ``config``: each field's stored value, else its default
    (a field with neither is absent)."""
    seen: dict[str, Any] = {}
    for f in fields:
        if values.get(f.name) is not None:
            seen[f.name] = values[f.name]
        elif f.has_default:
            seen[f.name] = f.default
    return seen


def stored_values(stored: bytes | None) -> dict[str, Any]:
    """An installation's stored values by field name (a secret one still sealed)."""
    if not stored:
        return {}
    found = orjson.loads(stored)
    return found if isinstance(found, dict) else {}


def describe_missing(workflow_name: str, fields: Iterable[ConfigField]) -> str:
    """A message naming each missing field and where it is set."""
    names = ", ".join(f"'{f.name}' (block '{f.block_id}')" for f in fields)
    return (f"workflow {workflow_name!r} is not configured for this user: it needs a value "
            f"for {names}; set it with POST /headless/completeInstallation")


__all__ = [
    "ConfigField",
    "FieldOption",
    "FieldType",
    "describe_missing",
    "effective",
    "missing",
    "stored_values",
    "type_problem",
    "value_problem",
]
