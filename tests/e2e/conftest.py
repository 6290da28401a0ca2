"""What the end-to-end tests (real processes) share: the counting target's tally."""

from __future__ import annotations

import pytest

from support import CallCounter


@pytest.fixture
def counter() -> CallCounter:
    """Calls per Idempotency-Key seen by a test's side-effect target."""
    return CallCounter()
