"""Integration declarations: a YAML or JSON document naming an integration, checked.

A declaration file says ``kind: integration`` (how ``reflow workflows apply`` and
``serve --apply`` tell it from a workflow definition in the same folder); the body of
``POST /integrations`` may leave ``kind`` out. Every problem is reported at once, by key.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from reflow.domain.definitions import MAX_NAME_LENGTH, parse_document
from reflow.errors import DefinitionInvalid, IntegrationInvalid, Problem

KIND = "integration"
MAX_DESCRIPTION_LENGTH = 10_000
MAX_URL_LENGTH = 2_048
_KEYS = ("kind", "name", "app", "description", "icon")


@dataclass(frozen=True, slots=True)
class IntegrationDeclaration:
    """A checked declaration; ``app`` is the name when the document leaves it out."""

    name: str
    app: str
    description: str = ""
    icon: str | None = None

    @classmethod
    def default(cls, name: str) -> IntegrationDeclaration:
        """What an integration a workflow names, but nobody declared, is made with."""
        return cls(name=name, app=name)


def declares_integration(doc: Any) -> bool:
    """Whether a parsed document is meant as an integration declaration: it has a ``kind``
    (a workflow definition has none; a kind other than ``integration`` fails its check)."""
    return isinstance(doc, dict) and "kind" in doc


def integration_from_text(
    text: str | bytes, content_type: str | None = None
) -> IntegrationDeclaration:
    """Parse and check a declaration; IntegrationInvalid lists every problem."""
    try:
        doc = parse_document(text, content_type)
    except DefinitionInvalid as exc:
        raise IntegrationInvalid(exc.problems) from None
    return integration_from_document(doc)


def integration_from_document(doc: Any) -> IntegrationDeclaration:
    """Check a parsed declaration; IntegrationInvalid lists every problem."""
    if not isinstance(doc, dict):
        raise IntegrationInvalid([Problem("", "a declaration must be a mapping with a name")])
    problems = [
        Problem(str(key), "unknown key" + _suggest(str(key)))
        for key in doc if key not in _KEYS
    ]
    kind = doc.get("kind", KIND)
    if kind != KIND:
        problems.append(Problem("kind", f"must be '{KIND}' (a workflow definition has no "
                                        "kind)"))
    name = _text(doc, "name", problems, required=True)
    app = _text(doc, "app", problems)
    description = _text(doc, "description", problems, max_length=MAX_DESCRIPTION_LENGTH,
                        may_be_empty=True)
    icon = _text(doc, "icon", problems, max_length=MAX_URL_LENGTH)
    if icon is not None and not _is_web_url(icon):
        problems.append(Problem("icon", "must be an absolute http or https URL"))
    if problems:
        raise IntegrationInvalid(problems)
    assert name is not None  # a missing name is a problem above
    return IntegrationDeclaration(name=name, app=app or name, description=description or "",
                                  icon=icon)


def _text(
    doc: Mapping[str, Any], key: str, problems: list[Problem], *, required: bool = False,
    max_length: int = MAX_NAME_LENGTH, may_be_empty: bool = False,
) -> str | None:
    """The key's string, or None (with a problem when it is wrong or required)."""
    value = doc.get(key)
    if value is None:
        if required:
            problems.append(Problem(key, "required"))
        return None
    if not isinstance(value, str):
        problems.append(Problem(key, "must be a string"))
    elif not may_be_empty and not value.strip():
        problems.append(Problem(key, "must not be empty"))
    elif len(value) > max_length:
        problems.append(Problem(key, f"must be at most {max_length} characters"))
    elif "\x00" in value:
        problems.append(Problem(key, "may not contain the NUL character"))
    else:
        return value
    return None


def _is_web_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and " " not in text


def _suggest(word: str) -> str:
    matches = difflib.get_close_matches(word, _KEYS, n=1)
    if matches:
        return f"; did you mean '{matches[0]}'?"
    return f" (expected one of: {', '.join(_KEYS)})"
