"""Shows the JSONata conformance figures in the terminal summary of every pytest run."""

from __future__ import annotations

import pytest

_REPORT = pytest.StashKey[list[str]]()


@pytest.fixture
def conformance_report(request: pytest.FixtureRequest) -> list[str]:
    """Lines appended here are printed in pytest's terminal summary (``-q`` included)."""
    return request.config.stash.setdefault(_REPORT, [])


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash.get(_REPORT, [])
    if lines:
        terminalreporter.write_sep("-", "JSONata conformance")
        for line in lines:
            terminalreporter.write_line(line)
