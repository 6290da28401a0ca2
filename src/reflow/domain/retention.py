"""How long finished executions are kept (docs/operations.md "Retention").

The window that applies to an execution is the most specific one set: its workflow's own
(the definition's ``retention``), else its team's (``PUT /settings/retention``), else the
deployment's ``REFLOW_LOG_RETENTION``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# A window at most ten years: beyond, "keep forever" is meant, and integer milliseconds
# stay far from any overflow.
MAX_WINDOW_SECONDS = 10 * 365 * 86_400.0
MAX_KEEP = 100_000_000


class KeepSteps(StrEnum):
    """Which finished executions keep their step data (the row is always kept)."""

    ALL = "all"
    FAILED = "failed"  # a succeeded execution's steps are dropped by the next purge


@dataclass(frozen=True, slots=True)
class Retention:
    """A workflow's own retention (every part optional: None defers to the team's)."""

    window: float | None = None  # seconds
    keep: int | None = None  # at most this many newest executions of the workflow
    keep_steps: KeepSteps = KeepSteps.ALL

    @property
    def is_default(self) -> bool:
        """True when it changes nothing (the team's window applies, steps are kept)."""
        return self.window is None and self.keep is None and self.keep_steps is KeepSteps.ALL


@dataclass(frozen=True, slots=True)
class WorkflowRetention:
    """A workflow's retention as the purge reads it, with where its step pass stopped."""

    team_id: str
    workflow_id: str
    retention: Retention
    steps_cursor: int | None  # steps of succeeded executions stopped before it are gone


@dataclass(frozen=True, slots=True)
class TeamWindow:
    """A team and its own window (None: the deployment's)."""

    team_id: str
    window: float | None
