"""What the end-to-end tests (real processes) share: the counting target and its tally."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import CallCounter, json_handler, serving


@pytest.fixture
def counter() -> CallCounter:
    """Calls per Idempotency-Key seen by a test's side-effect target."""
    return CallCounter()


@pytest.fixture
def target_delay() -> float:
    """Seconds the target takes to answer; a module that kills a process mid-call
    overrides this fixture with a longer one."""
    return 0.0


@pytest.fixture
def target(counter: CallCounter, target_delay: float) -> Iterator[str]:
    """The counting side-effect target on 127.0.0.1: its base URL."""
    with serving(json_handler(counter.handler(target_delay))) as base:
        yield base
