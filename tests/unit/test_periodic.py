"""The injectable clock and the periodic jobs that run on it."""

from __future__ import annotations

import asyncio

import pytest

from reflow.clock import ManualClock
from reflow.periodic import Periodic

pytestmark = pytest.mark.anyio


async def test_a_manual_clock_stands_still_until_advanced_and_wakes_only_the_due_sleepers(
) -> None:
    clock = ManualClock(1_000_000)
    woken: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woken.append(name)

    tasks = [asyncio.create_task(sleeper("short", 5)), asyncio.create_task(sleeper("long", 60))]
    await asyncio.sleep(0)
    assert clock.now_ms() == 1_000_000
    clock.advance(10)
    await asyncio.sleep(0.01)
    assert (clock.now_ms(), woken) == (1_010_000, ["short"])
    clock.advance(50)
    await asyncio.gather(*tasks)
    assert woken == ["short", "long"]


async def test_a_periodic_job_runs_at_start_then_each_time_its_interval_passes_on_the_clock(
) -> None:
    clock = ManualClock(0)
    periodic = Periodic(clock)
    runs: list[int] = []

    async def job() -> int:
        runs.append(clock.now_ms())
        return 1

    periodic.add("count", 30, job)
    periodic.start()
    try:
        await asyncio.sleep(0.01)
        assert runs == [0]
        clock.advance(29)
        await asyncio.sleep(0.01)
        assert runs == [0]
        clock.advance(1)
        await asyncio.sleep(0.01)
        assert runs == [0, 30_000]
        periodic.wake("count")
        await asyncio.sleep(0.01)
        assert runs == [0, 30_000, 30_000]
    finally:
        await periodic.stop()


async def test_a_failing_periodic_run_is_logged_and_the_job_runs_again_next_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(0)
    periodic = Periodic(clock)
    calls: list[int] = []

    async def flaky() -> int:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("database away")
        return 0

    periodic.add("flaky", 1, flaky)
    periodic.start()
    try:
        await asyncio.sleep(0.01)
        clock.advance(1)
        await asyncio.sleep(0.01)
        assert calls == [0, 1]
        assert "periodic job flaky failed" in caplog.text
    finally:
        await periodic.stop()


async def test_a_job_name_is_registered_once() -> None:
    periodic = Periodic(ManualClock(0))

    async def nothing() -> int:
        return 0

    periodic.add("purge", 1, nothing)
    with pytest.raises(ValueError, match="registered twice"):
        periodic.add("purge", 1, nothing)
    assert periodic.names == ["purge"]


async def test_run_once_never_overlaps_the_loops_run_it_waits_for_it_then_runs_its_own(
) -> None:
    clock = ManualClock(0)
    periodic = Periodic(clock)
    gate = asyncio.Event()
    events: list[str] = []

    async def job() -> int:
        events.append("start")
        await gate.wait()
        events.append("end")
        return len(events)

    periodic.add("purge", 60, job)
    periodic.start()
    try:
        await asyncio.sleep(0.01)
        assert events == ["start"]  # the loop's first run, held at the gate
        explicit = asyncio.create_task(periodic.run_once("purge"))
        await asyncio.sleep(0.01)
        assert (events, explicit.done()) == (["start"], False)
        gate.set()
        assert await explicit == 4  # its own run, begun after the loop's had ended
        assert events == ["start", "end", "start", "end"]
        # The other way round: the loop, woken by the clock, waits for an explicit run.
        gate.clear()
        explicit = asyncio.create_task(periodic.run_once("purge"))
        await asyncio.sleep(0.01)
        clock.advance(60)
        await asyncio.sleep(0.01)
        assert events[4:] == ["start"]
        gate.set()
        assert await explicit == 6
        await asyncio.sleep(0.01)
        assert events[4:] == ["start", "end", "start", "end"]
    finally:
        await periodic.stop()
