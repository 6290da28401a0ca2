"""Named SQL queries, loaded from .sql files (``-- name: <query>`` starts each one)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def load_queries(folder: Path) -> dict[str, str]:
    """Every query of the folder's .sql files (one file per resource) by its name; a name
    defined twice, in one file or two, is an error."""
    queries: dict[str, str] = {}
    for path in sorted(folder.glob("*.sql")):
        parts = _NAME.split(path.read_text())
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise ValueError(f"{path.name}: query {name!r} is defined twice")
            queries[name] = body.strip().rstrip(";")
    return queries


def statement_runs(
    statements: Sequence[tuple[str, Sequence[Any]]],
) -> Iterator[tuple[str, list[Sequence[Any]]]]:
    """Named statements in order, each run of the same name as one (name, [params...]):
    what a store sends as one execute, or one executemany for a run of several."""
    index, size = 0, len(statements)
    while index < size:
        name = statements[index][0]
        end = index + 1
        while end < size and statements[end][0] == name:
            end += 1
        yield name, [params for _, params in statements[index:end]]
        index = end


def sealed_kind(kind: str) -> str:
    """A kind of sealed value ``Store.sealed_batch`` knows (checked: it names a query)."""
    if kind not in ("credentials", "error_stream", "triggers", "installations"):
        raise ValueError(f"no sealed values of kind {kind!r}")
    return kind
