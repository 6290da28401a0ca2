"""The schema revision this code expects (for ``/readyz`` and a store's ``ping``)."""

from __future__ import annotations

import functools
from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"


@functools.cache
def head_revision() -> str:
    """The newest migration's revision id."""
    from alembic.script import ScriptDirectory  # only when asked: not on the hot path

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision this code's migrations know."""
    from alembic.script import ScriptDirectory

    return frozenset(r.revision for r in ScriptDirectory(str(MIGRATIONS)).walk_revisions())


def schema_problem(current: str | None) -> str | None:
    """Why a database at revision ``current`` cannot serve this code; None when it can.

    A revision this code does not know is newer (another host ran a later release's
    `reflow db upgrade`): migrations are additive, so this code still works on it and a
    rolling upgrade keeps the old processes ready.
    """
    head = head_revision()
    if current == head or (current is not None and current not in known_revisions()):
        return None
    return (f"the database schema is at {current or 'nothing (not migrated)'}, "
            f"not {head}: run `reflow db upgrade`")
