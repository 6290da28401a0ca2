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
