"""What crosses the pipe between reflow and its executor processes, and how it is framed.

A message is a JSON array whose first item names its kind, encoded by orjson: JSON
carries no code and no objects, so an executor that an expression managed to corrupt
still cannot make its parent build anything but plain values (and orjson is the fastest
encoder at hand: the pipe's cost is paid by the serving process on every run). Stored
JSON (a step's input and output, an execution's output) travels as text and is stored
as the same bytes. Frames are a 4-byte length, then the JSON. A message is written at
once, except the ``finish`` of runs that end in the same loop turn of an executor: those
leave in one write, so the parent commits them in one group commit (one message per
write made a transaction per execution, which cost the parent more than the pipe).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any, Final

import orjson

from reflow.domain.executions import ExecutionRecord, ExecutionStatus, StepRecord, StepStatus

_HEADER: Final = struct.Struct("!I")
MAX_FRAME: Final = 256 * 1024 * 1024  # a step is capped far below this; guards a bad length

Message = list[Any]


class WireError(Exception):
    """A frame that is not a message this protocol sends."""


def encode(message: Message) -> bytes:
    """One framed message."""
    body = orjson.dumps(message)
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> Message:
    """A message from a frame's body; raises WireError for anything else."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"unreadable executor message: {exc}") from exc
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise WireError("an executor message must be an array starting with its kind")
    return message


class Channel(asyncio.Protocol):
    """A framed, batched message pipe over a stream socket (one per executor process)."""

    def __init__(
        self,
        on_message: Callable[[Message], None],
        on_lost: Callable[[Exception | None], None] | None = None,
    ) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._batch: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport for sending."""
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        """Hand every complete frame to ``on_message``."""
        buffer = self._buffer
        buffer += data
        start = 0
        size = len(buffer)
        while size - start >= 4:
            (length,) = _HEADER.unpack_from(buffer, start)
            if length > MAX_FRAME:
                self._fail(WireError(f"executor message of {length} bytes is over the limit"))
                return
            end = start + 4 + length
            if end > size:
                break
            body = bytes(buffer[start + 4 : end])
            start = end
            try:
                message = decode(body)
            except WireError as exc:
                self._fail(exc)
                return
            self._on_message(message)
        del buffer[:start]

    def _fail(self, exc: Exception) -> None:
        if self._transport is not None:
            self._transport.abort()
        self.connection_lost(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the owner once."""
        if self.closed:
            return
        self.closed = True
        if self._on_lost is not None:
            self._on_lost(exc)

    def send(self, message: Message, *, batch: bool = False) -> None:
        """Write a message now; with ``batch``, with the others batched in this loop turn."""
        if self.closed or self._transport is None:
            return
        if batch:
            if not self._batch:
                asyncio.get_running_loop().call_soon(self._flush)
            self._batch.append(encode(message))
            return
        if self._batch:
            self._flush()  # keep the order
        self._transport.write(encode(message))

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if batch and self._transport is not None and not self.closed:
            self._transport.write(b"".join(batch))

    def close(self) -> None:
        """Close once what was sent is written."""
        if self._transport is not None:
            self._transport.close()


# --- records as plain values ----------------------------------------------------------------


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode()


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def step_to_wire(s: StepRecord) -> list[Any]:
    """A step as plain values."""
    return [s.seq, s.block_id, s.status.value, s.attempts, s.started_at, s.stopped_at,
            s.input.decode(), _text(s.output), s.error, s.reused, s.truncated, s.item]


def step_from_wire(t: list[Any]) -> StepRecord:
    """The step ``step_to_wire`` gave."""
    return StepRecord(t[0], t[1], StepStatus(t[2]), t[3], t[4], t[5], t[6].encode(),
                      _bytes(t[7]), t[8], bool(t[9]), bool(t[10]), t[11])


def progress_to_wire(e: ExecutionRecord) -> list[Any]:
    """The fields of an execution that running it changes."""
    return [e.status.value, e.started_at, e.stopped_at, _text(e.output), e.response_status,
            _text(e.error), e.wake_at]


def apply_progress(e: ExecutionRecord, t: list[Any]) -> None:
    """Copy the fields ``progress_to_wire`` gave onto the parent's copy of the record."""
    e.status = ExecutionStatus(t[0])
    e.started_at, e.stopped_at, e.response_status = t[1], t[2], t[4]
    e.output, e.error = _bytes(t[3]), _bytes(t[5])
    e.wake_at = t[6]
