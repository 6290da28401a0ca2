"""Schedules: a cron expression in a time zone, its due times, and the policy for missed ones.

Due times come from cronsim (the cron evaluator Healthchecks.io maintains), which follows
Debian's cron, daylight saving time included:

- A job at a fixed time of day (minute and hour both fixed, e.g. ``30 2 * * *``) is placed
  on the local wall clock. When the clocks go forward, a time in the skipped hour runs at
  the first minute after the jump (02:30 runs at 03:00); when they go back, a time in the
  repeated hour runs once, at its first occurrence.
- A job with a wildcard or step in the minute or hour (``*/5 * * * *``, ``0 * * * *``)
  follows real time: the skipped hour has no runs, and the repeated hour runs at each of
  its times twice (once per occurrence, two different instants).

Every due time is an instant, kept as epoch milliseconds (UTC) like every timestamp.
Pure code: no I/O beyond reading the time zone database.
"""

from __future__ import annotations

import difflib
import functools
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources

from cronsim import CronSim, CronSimError

from reflow.domain.executions import ExecutionRecord
from reflow.domain.records import Installation

DEFAULT_TIMEZONE = "UTC"
# With ``missed: all``, at most this many missed due times fire (the most recent ones).
MAX_CATCH_UP = 100
# A due time reached later than this (or than two scheduler intervals, if longer) counts
# as missed for ``missed: skip``.
MISSED_AFTER_MS = 60_000

# Labels (cronsim's names for the fields too) and the values each field takes.
_CRON_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
# Any instant will do: cronsim only needs one to parse against.
_REFERENCE = datetime(2026, 1, 1, tzinfo=UTC)


class MissedRuns(StrEnum):
    """What a schedule does about due times that passed while no scheduler ran."""

    LATEST = "latest"  # fire the latest missed due time once
    SKIP = "skip"  # fire none; wait for the next due time
    ALL = "all"  # fire each, oldest first (at most MAX_CATCH_UP, the most recent)


def cron_problem(expression: str) -> str | None:
    """Why a five-field cron expression is not valid, or None when it is."""
    fields = expression.split()
    if len(fields) != len(_CRON_FIELDS):
        return "must have 5 fields: minute hour day-of-month month day-of-week"
    try:
        times = CronSim(expression, _REFERENCE)
    except CronSimError as exc:
        return _field_problem(fields, str(exc))
    if _first(times) is None:
        return "matches no date in the next 50 years"
    return None


def _field_problem(fields: list[str], reason: str) -> str:
    """Our message for cronsim's "Bad <field>": which field, what it held, what it takes."""
    for text, (label, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        if reason != f"Bad {label}":
            continue
        if label == "day-of-month" and _parses(f"* * {text} * *"):
            return f"day-of-month field '{text}' never falls in month field '{fields[3]}'"
        return (f"{label} field '{text}' is not valid (values {low}-{high}, "
                f"with *, lists, ranges and /steps)")
    return f"is not valid: {reason}"


def _parses(expression: str) -> bool:
    try:
        CronSim(expression, _REFERENCE)
    except CronSimError:
        return False
    return True


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone (such as Europe/Paris), or None when it is."""
    if name in _zone_names():
        return None
    close = difflib.get_close_matches(name, sorted(_zone_names()), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else " (an IANA name such as Europe/Paris)"
    return f"unknown time zone '{name}'{hint}"


@functools.cache
def _zone_names() -> frozenset[str]:
    # The tzdata package's list (a dependency): the same on every host, unlike the
    # system's, which may add names such as "localtime" that mean a different zone per host.
    return frozenset(resources.files("tzdata").joinpath("zones").read_text().split())


def _first(times: Iterator[datetime]) -> datetime | None:
    try:
        return next(times)
    except StopIteration:  # cronsim looks 50 years ahead at most
        return None


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated schedule trigger: when it is due, and what it does about missed times."""

    cron: str
    timezone: str = DEFAULT_TIMEZONE
    missed: MissedRuns = MissedRuns.LATEST

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The time zone the cron fields are read in."""
        return zoneinfo.ZoneInfo(self.timezone)

    def local(self, ms: int) -> datetime:
        """An instant on this schedule's wall clock."""
        return datetime.fromtimestamp(ms / 1000, tz=self.zone)

    def next_after(self, ms: int) -> int | None:
        """The first due time strictly after ``ms``; None when none comes in 50 years."""
        # cronsim counts whole seconds and moves at least one forward before matching.
        found = _first(CronSim(self.cron, self.local(ms - ms % 1000)))
        return None if found is None else _ms(found)

    def latest_until(self, ms: int, count: int = 1) -> list[int]:
        """The last ``count`` due times at or before ``ms``, newest first."""
        # Going backwards, cronsim strips the sub-second part as its first step, or moves
        # one second back when there is none: starting 1 ms later includes ``ms`` itself.
        times = CronSim(self.cron, self.local(ms + 1), reverse=True)
        found: list[int] = []
        while len(found) < count:
            due = _first(times)
            if due is None:
                break
            found.append(_ms(due))
        return found

    def missed_times(self, since: int, now: int, grace_ms: int) -> list[int]:
        """Which due times from ``since`` (the first one not fired yet) to ``now`` fire now,
        oldest first, by the missed-runs policy.

        A due time reached within ``grace_ms`` is on time, not missed: it fires under
        every policy.
        """
        if self.missed is MissedRuns.ALL:
            return sorted(t for t in self.latest_until(now, MAX_CATCH_UP) if t >= since)
        latest = [t for t in self.latest_until(now) if t >= since]
        if self.missed is MissedRuns.SKIP:
            return [t for t in latest if now - t <= grace_ms]
        return latest


def _ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


# -- what the store keeps --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """The scheduler's view of one installation, as of the installation's ``updated_at``.

    ``cron`` is None when the installed version is not a schedule workflow, and
    ``next_due_at`` None when nothing is due (that, or the installation is inactive).
    """

    installation_id: str
    team_id: str
    installation_updated_at: int
    version: int
    cron: str | None = None
    timezone: str | None = None
    missed: MissedRuns | None = None
    next_due_at: int | None = None

    @property
    def schedule(self) -> Schedule | None:
        """The schedule, when the installed version has one."""
        if self.cron is None:
            return None
        return Schedule(self.cron, self.timezone or DEFAULT_TIMEZONE,
                        self.missed or MissedRuns.LATEST)


@dataclass(frozen=True, slots=True)
class InstallationChange:
    """An installation changed since its state was computed (``state`` None: never)."""

    installation: Installation
    state: ScheduleState | None


@dataclass(frozen=True, slots=True)
class DueSchedule:
    """A state whose next due time has come, with its installation as it is now (None
    when the installation is gone) and whether its user was deleted."""

    state: ScheduleState
    installation: Installation | None
    user_deleted: bool


@dataclass(frozen=True, slots=True)
class Fire:
    """A due time to fire: the execution that is inserted with its claim."""

    due_at: int
    execution: ExecutionRecord


class Advance(StrEnum):
    """What ``Store.advance_schedule`` did."""

    FIRED = "fired"  # moved, claimed the due time, inserted the execution
    MOVED = "moved"  # moved; nothing to fire, or the due time was claimed already
    LOST = "lost"  # another scheduler moved it first, or the installation changed: nothing


@dataclass(frozen=True, slots=True)
class ScheduleListing:
    """An active schedule of a team, as ``reflow schedules list`` shows it."""

    installation_id: str
    workflow_id: str
    workflow_name: str
    user_id: str
    username: str
    schedule: Schedule
    next_due_at: int
    last_fired_at: int | None
