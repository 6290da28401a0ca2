"""Ids: execution ids are short, time-ordered and tell when they were minted."""

from __future__ import annotations

import string
import time

import pytest

from reflow.ids import (
    EXECUTION_ID_LENGTH,
    execution_id_time_ms,
    is_object_id,
    new_execution_id,
    new_object_id,
)

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ALPHANUMERIC = set(string.ascii_letters + string.digits)
# Times across base-62 digit boundaries, where a naive encoding would misorder.
TIMES_MS = [0, 1, 61, 62, 63, 3843, 3844, 10**9, NOW_MS - 1, NOW_MS, NOW_MS + 1, 62**8 - 1]


def test_execution_id_is_21_alphanumeric_characters() -> None:
    execution_id = new_execution_id()
    assert EXECUTION_ID_LENGTH == 21
    assert len(execution_id) == 21
    assert set(execution_id) <= ALPHANUMERIC


def test_execution_ids_sort_as_their_creation_times() -> None:
    ids = [new_execution_id(ms) for ms in TIMES_MS]
    assert sorted(ids) == ids
    assert sorted(reversed(ids)) == ids


def test_execution_ids_minted_later_sort_after_earlier_ones() -> None:
    first = new_execution_id()
    time.sleep(0.002)
    assert new_execution_id() > first


def test_execution_ids_of_the_same_millisecond_differ() -> None:
    ids = {new_execution_id(NOW_MS) for _ in range(1000)}
    assert len(ids) == 1000


@pytest.mark.parametrize("ms", TIMES_MS)
def test_execution_id_time_ms_round_trips(ms: int) -> None:
    assert execution_id_time_ms(new_execution_id(ms)) == ms


def test_execution_id_minted_now_tells_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    minted = execution_id_time_ms(new_execution_id())
    after = time.time_ns() // 1_000_000
    assert minted is not None
    assert before <= minted <= after


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        "0" * 20,  # one short
        "0" * 22,  # one long
        "00000000-000000000000",  # right length, not alphanumeric
        "0000000000000000000é0",
        "65a1f0c2b3d4e5f6a7b8c9d0",  # an object id
        "0" * 21 + "\n",  # `$` alone would let a trailing newline through
    ],
)
def test_execution_id_time_ms_rejects_what_is_not_an_execution_id(value: str) -> None:
    assert execution_id_time_ms(value) is None


def test_object_id_is_24_lowercase_hex_characters() -> None:
    object_id = new_object_id()
    assert len(object_id) == 24
    assert set(object_id) <= set("0123456789abcdef")
    assert is_object_id(object_id)


def test_object_id_starts_with_its_creation_second() -> None:
    before = int(time.time())
    seconds = int(new_object_id()[:8], 16)
    assert before <= seconds <= int(time.time())


def test_object_ids_differ() -> None:
    assert len({new_object_id() for _ in range(1000)}) == 1000


@pytest.mark.parametrize(
    "value",
    ["", "65a1f0c2b3d4e5f6a7b8c9d", "65a1f0c2b3d4e5f6a7b8c9d0a", "65A1F0C2B3D4E5F6A7B8C9D0",
     "65a1f0c2b3d4e5f6a7b8c9dg", "ann@example.com", "65a1f0c2b3d4e5f6a7b8c9d0\n"],
)
def test_is_object_id_rejects_other_shapes(value: str) -> None:
    assert not is_object_id(value)
