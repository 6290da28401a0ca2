"""Due times of a schedule (reflow.domain.schedules): cron in a time zone, DST, and the
missed-runs policies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reflow.domain.schedules import (
    MAX_CATCH_UP,
    MissedRuns,
    Schedule,
    cron_problem,
    timezone_problem,
)

MINUTE = 60_000


def ms(*fields: int) -> int:
    """Epoch milliseconds of a UTC time."""
    return int(datetime(*fields, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def forward(schedule: Schedule, start: int, end: int) -> list[int]:
    """Every due time in (start, end], by next_after."""
    found, at = [], start
    while (due := schedule.next_after(at)) is not None and due <= end:
        found.append(due)
        at = due
    return found


def local_times(schedule: Schedule, times: list[int]) -> list[str]:
    return [schedule.local(t).strftime("%d %H:%M%z") for t in times]


# -- next and latest -----------------------------------------------------------------------


def test_next_due_time_is_strictly_after_and_latest_includes_the_instant_itself() -> None:
    schedule = Schedule("*/5 * * * *")
    due = ms(2026, 1, 1, 10, 5)
    assert schedule.next_after(due - 1) == due
    assert schedule.next_after(due) == due + 5 * MINUTE
    assert schedule.latest_until(due) == [due]
    assert schedule.latest_until(due + 999) == [due]
    assert schedule.latest_until(due - 1) == [due - 5 * MINUTE]
    assert schedule.latest_until(due, 3) == [due, due - 5 * MINUTE, due - 10 * MINUTE]


def test_cron_fields_are_read_on_the_wall_clock_of_the_time_zone() -> None:
    paris = Schedule("0 9 * * MON-FRI", "Europe/Paris")
    # Friday 2026-01-02 08:00 UTC is 09:00 in Paris (winter, UTC+1).
    assert paris.next_after(ms(2026, 1, 2, 7, 0)) == ms(2026, 1, 2, 8, 0)
    # The next one is Monday: the weekend is skipped.
    assert paris.next_after(ms(2026, 1, 2, 8, 0)) == ms(2026, 1, 5, 8, 0)
    # In summer (UTC+2) the same wall-clock time is an hour earlier in UTC.
    assert paris.next_after(ms(2026, 7, 1, 0, 0)) == ms(2026, 7, 1, 7, 0)


def test_a_cron_that_matches_nothing_for_fifty_years_has_no_next_due_time() -> None:
    assert Schedule("* * */20 * 1L").next_after(ms(2026, 1, 1)) is None


# -- daylight saving time ------------------------------------------------------------------
# Paris, 2026: clocks go from 02:00 to 03:00 on March 29 and from 03:00 to 02:00 on
# October 25.


def test_a_fixed_time_in_the_skipped_hour_runs_once_right_after_the_jump() -> None:
    schedule = Schedule("30 2 * * *", "Europe/Paris")
    times = forward(schedule, ms(2026, 3, 28, 0), ms(2026, 3, 31, 0))
    assert local_times(schedule, times) == ["28 02:30+0100", "29 03:00+0200", "30 02:30+0200"]


def test_a_fixed_time_in_the_repeated_hour_runs_once_at_its_first_occurrence() -> None:
    schedule = Schedule("30 2 * * *", "Europe/Paris")
    times = forward(schedule, ms(2026, 10, 24, 0), ms(2026, 10, 27, 0))
    assert local_times(schedule, times) == ["24 02:30+0200", "25 02:30+0200", "26 02:30+0100"]


def test_a_wildcard_hour_follows_real_time_through_both_changes() -> None:
    schedule = Schedule("0,30 * * * *", "Europe/Paris")
    spring = forward(schedule, ms(2026, 3, 29, 0, 0), ms(2026, 3, 29, 2, 0))
    # 01:00 local (00:00 UTC) is not after the start; 02:xx does not exist.
    assert local_times(schedule, spring) == ["29 01:30+0100", "29 03:00+0200",
                                             "29 03:30+0200", "29 04:00+0200"]
    autumn = forward(schedule, ms(2026, 10, 24, 23, 30), ms(2026, 10, 25, 1, 30))
    # The repeated hour runs at each of its times twice: different instants.
    assert local_times(schedule, autumn) == ["25 02:00+0200", "25 02:30+0200",
                                             "25 02:00+0100", "25 02:30+0100"]
    assert spring == sorted(set(spring)) and autumn == sorted(set(autumn))


@pytest.mark.parametrize("cron", ["30 2 * * *", "0,30 * * * *", "*/7 1-3 * * *",
                                  "0 3 * * SUN", "15 2 25 10 *"])
@pytest.mark.parametrize("window", [(ms(2026, 3, 27), ms(2026, 3, 31)),
                                    (ms(2026, 10, 23), ms(2026, 10, 27))])
def test_going_back_from_now_finds_the_same_due_times_as_going_forward(
    cron: str, window: tuple[int, int]
) -> None:
    schedule = Schedule(cron, "Europe/Paris")
    start, end = window
    ahead = forward(schedule, start, end)
    behind = [t for t in schedule.latest_until(end, len(ahead) + 5) if t > start]
    assert behind == list(reversed(ahead))


# -- missed runs ---------------------------------------------------------------------------


def test_missed_latest_fires_only_the_latest_due_time() -> None:
    schedule = Schedule("*/5 * * * *", missed=MissedRuns.LATEST)
    since = ms(2026, 1, 1, 10, 0)
    assert schedule.missed_times(since, since + 61 * MINUTE, MINUTE) == [since + 60 * MINUTE]
    assert schedule.missed_times(since, since, MINUTE) == [since]


def test_missed_skip_fires_a_due_time_only_when_it_was_reached_in_time() -> None:
    schedule = Schedule("*/5 * * * *", missed=MissedRuns.SKIP)
    since = ms(2026, 1, 1, 10, 0)
    assert schedule.missed_times(since, since + 30_000, MINUTE) == [since]
    assert schedule.missed_times(since, since + 2 * MINUTE, MINUTE) == []
    # Down for an hour, up just after a due time: that one is on time.
    assert schedule.missed_times(since, since + 60 * MINUTE + 1000, MINUTE) == [
        since + 60 * MINUTE]


def test_missed_all_fires_each_oldest_first_and_at_most_the_most_recent_hundred() -> None:
    schedule = Schedule("* * * * *", missed=MissedRuns.ALL)
    since = ms(2026, 1, 1, 10, 0)
    assert schedule.missed_times(since, since + 3 * MINUTE, MINUTE) == [
        since, since + MINUTE, since + 2 * MINUTE, since + 3 * MINUTE]
    day = schedule.missed_times(since, since + 24 * 60 * MINUTE, MINUTE)
    assert len(day) == MAX_CATCH_UP
    assert day[-1] == since + 24 * 60 * MINUTE
    assert day == sorted(day)


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("cron", "problem"), [
    ("* * *", "must have 5 fields: minute hour day-of-month month day-of-week"),
    ("0 24 * * *", "hour field '24' is not valid (values 0-23, with *, lists, ranges "
                   "and /steps)"),
    ("0 0 0 * *", "day-of-month field '0' is not valid (values 1-31, with *, lists, "
                  "ranges and /steps)"),
    ("0 0 * 13 *", "month field '13' is not valid (values 1-12, with *, lists, ranges "
                   "and /steps)"),
    ("*/0 * * * *", "minute field '*/0' is not valid (values 0-59, with *, lists, ranges "
                    "and /steps)"),
    ("0 0 30 2 *", "day-of-month field '30' never falls in month field '2'"),
    ("* * */20 * 1L", "matches no date in the next 50 years"),
])
def test_invalid_cron_expressions_say_which_field_is_wrong(cron: str, problem: str) -> None:
    assert cron_problem(cron) == problem


@pytest.mark.parametrize("cron", ["0 0 L * *", "0 9 * * MON#1", "0 0 * * 5L", "0 0 LW * *",
                                  "0 0 29 2 *"])
def test_cron_extensions_are_accepted(cron: str) -> None:
    assert cron_problem(cron) is None


def test_time_zones_are_iana_names_the_same_on_every_host() -> None:
    assert timezone_problem("Europe/Paris") is None
    assert timezone_problem("UTC") is None
    assert timezone_problem("America/Argentina/Buenos_Aires") is None
    assert timezone_problem("Europe/Pari") == (
        "unknown time zone 'Europe/Pari'; did you mean 'Europe/Paris'?")
    # A host's own alias names a different zone on each host.
    assert timezone_problem("localtime") is not None
    assert timezone_problem("Nowhere") == (
        "unknown time zone 'Nowhere' (an IANA name such as Europe/Paris)")

