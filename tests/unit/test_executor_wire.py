"""The executor pipe: plain JSON values only, framed, and what it refuses."""

from __future__ import annotations

import struct

import pytest
from engine_support import running_record

from reflow.domain.executions import ExecutionStatus, StepRecord, StepStatus
from reflow.executor.wire import (
    Channel,
    Message,
    WireError,
    apply_progress,
    decode,
    encode,
    progress_to_wire,
    step_from_wire,
    step_to_wire,
)


def test_a_step_and_an_executions_progress_cross_the_pipe_unchanged() -> None:
    step = StepRecord(3, "fetch", StepStatus.FAILED, 2, 10, 20, b'{"url":"x"}', None,
                      "boom", reused=False, truncated=True)
    assert step_from_wire(decode(encode(["save", step_to_wire(step)])[4:])[1]) == step
    record = running_record({"n": 1})
    record.status, record.output, record.error = (ExecutionStatus.SUCCEEDED, b'{"ok":1}',
                                                  None)
    copy = running_record({"n": 1})
    apply_progress(copy, decode(encode(["p", progress_to_wire(record)])[4:])[1])
    assert (copy.status, copy.output, copy.error) == (ExecutionStatus.SUCCEEDED,
                                                      b'{"ok":1}', None)


@pytest.mark.parametrize("body", [b"\x80\x04K\x01.", b"{}", b"[]", b"[1, 2]", b"not json"])
def test_anything_but_a_json_array_naming_its_kind_is_refused(body: bytes) -> None:
    with pytest.raises(WireError):
        decode(body)


def test_a_channel_hands_over_whole_frames_and_drops_the_connection_on_a_bad_one() -> None:
    received: list[Message] = []
    lost: list[Exception | None] = []
    channel = Channel(received.append, lost.append)
    frame = encode(["beat"])
    channel.data_received(frame + frame[:3])  # a frame and a half
    assert received == [["beat"]]
    channel.data_received(frame[3:] + struct.pack("!I", 5) + b"{bad}")
    assert received == [["beat"], ["beat"]]
    assert channel.closed and isinstance(lost[0], WireError)
