"""An executor process: runs the engine for the jobs its parent sends, and nothing else.

Started by ``ProcessExecutor`` as ``python -m reflow.executor``, with its end of a socket
pair, the path of its marker file and a memory limit. It has no database connection: each
commit goes to the parent as a ``save`` message and waits for its ``ack``, so a step is
committed exactly when it would be in one process. Whatever kills this process (a native
crash in the expression engine, an allocation past ``RLIMIT_AS``, the parent's watchdog
after a hang) ends it alone; the marker tells the parent which execution was evaluating.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import mmap
import os
import pickle
import resource
import signal
import socket
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from reflow.blocks import block_specs, load_blocks
from reflow.domain.definitions import validate_definition
from reflow.domain.executions import ExecutionRecord, ExecutionStatus, TriggerMode
from reflow.engine import Engine, Recorder, RunState
from reflow.engine.compiled import CompiledWorkflow, compile_workflow
from reflow.errors import Conflict, StoreError
from reflow.executor import WriteThrough
from reflow.executor.engine import build_engine, close_engine
from reflow.executor.wire import (
    Channel,
    Message,
    progress_to_wire,
    step_from_wire,
    step_to_wire,
)
from reflow.expressions import compile_template_problems
from reflow.settings import Settings

log = logging.getLogger(__name__)

BEAT_SECONDS = 0.25  # the parent's watchdog reads silence longer than its limit as a hang
# Twice what the parent remembers having sent (SENT_VERSIONS): a version it does not send
# again is always still here.
COMPILED_CACHE = 1024
SENT_VERSIONS = COMPILED_CACHE // 2
MARKER_SIZE = 256


class MmapMarker:
    """The engine's marker, kept in a file the parent maps too: ``len, "id block"``."""

    def __init__(self, path: str) -> None:
        with open(path, "r+b") as handle:
            self._map = mmap.mmap(handle.fileno(), MARKER_SIZE)

    def enter(self, execution_id: str, block_id: str) -> None:
        """Say which execution's block is now evaluating."""
        data = f"{execution_id} {block_id}".encode()[: MARKER_SIZE - 1]
        self._map[1 : 1 + len(data)] = data
        self._map[0] = len(data)

    def leave(self) -> None:
        """Nothing is evaluating."""
        self._map[0] = 0


def read_marker(path: str) -> tuple[str, str] | None:
    """The execution and block a dead executor was evaluating, if it was."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MARKER_SIZE)
    except OSError:
        return None
    if not data or data[0] == 0:
        return None
    execution_id, _, block_id = data[1 : 1 + data[0]].decode(errors="replace").partition(" ")
    return execution_id, block_id


class Child:
    """The executor's state: the engine, compiled versions, running executions."""

    def __init__(self, settings: Settings, marker: MmapMarker) -> None:
        self.engine: Engine = build_engine(settings, marker)
        self.registry = load_blocks()
        self.channel: Channel | None = None
        self._compiled: OrderedDict[tuple[str, int], CompiledWorkflow] = OrderedDict()
        self._states: dict[str, RunState] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._renewals: dict[int, asyncio.Future[Mapping[str, Any]]] = {}
        # A finished execution's last commit, sent with its ``finish``.
        self._final: dict[str, tuple[list[Any], list[Any]]] = {}
        self._seq = 0
        self.stopped = asyncio.Event()

    # -- messages from the parent -----------------------------------------------------------

    def on_message(self, message: Message) -> None:
        """Dispatch one message from the parent."""
        kind = message[0]
        if kind == "run":
            self._run(message)
        elif kind == "ack":
            future = self._acks.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == "nack":
            future = self._acks.pop(message[1], None)
            if future is not None and not future.done():
                error = Conflict if message[2] == "conflict" else StoreError
                future.set_exception(error(message[3]))
        elif kind == "renewed":
            self._renewed(message)
        elif kind == "cancel":
            state = self._states.get(message[1])
            if state is not None:
                state.cancel_requested = True
        elif kind == "stop":
            asyncio.get_running_loop().create_task(self._stop(float(message[1])))

    def _renewed(self, message: Message) -> None:
        """The parent's answer to ``renew``: the binding to send again with."""
        renewal = self._renewals.pop(message[1], None)
        if renewal is not None and not renewal.done():
            renewal.set_result(message[2])

    def on_lost(self, exc: Exception | None) -> None:
        """The parent is gone: nothing this process does can be committed any more."""
        os._exit(0)

    def _workflow(self, key: tuple[str, int], source: Any) -> CompiledWorkflow:
        compiled = self._compiled.get(key)
        if compiled is not None:
            self._compiled.move_to_end(key)
        else:
            if source is None:
                raise StoreError(f"the parent sent no definition for {key}")
            # Validated when it was stored; validating again builds the parsed form.
            definition = validate_definition(source, block_specs(), compile_template_problems)
            compiled = compile_workflow(key[0], key[1], definition, self.registry)
            self._compiled[key] = compiled
            if len(self._compiled) > COMPILED_CACHE:
                self._compiled.popitem(last=False)
        return compiled

    def _run(self, message: Message) -> None:
        (_, meta, key, source, trigger, unwritten, recorded, persisted, env,
         credentials, config, config_secrets) = message
        (execution_id, team_id, workflow_id, installation_id, user_id, version, mode,
         created_at, started_at, rerun_of, resumes, cancel_requested, clock_offset) = meta
        record = ExecutionRecord(
            id=execution_id, team_id=team_id, workflow_id=workflow_id,
            installation_id=installation_id, user_id=user_id, version=version,
            mode=TriggerMode(mode), trigger=b"", status=ExecutionStatus.RUNNING,
            created_at=created_at, started_at=started_at, rerun_of=rerun_of,
            resumes=resumes, cancel_requested=cancel_requested,
            steps=[step_from_wire(s) for s in unwritten],
        )
        task = asyncio.get_running_loop().create_task(
            self._execute(record, (key[0], key[1]), source, trigger,
                          [step_from_wire(s) for s in recorded], persisted, env,
                          credentials, config, tuple(config_secrets), clock_offset),
            name=f"execution {execution_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(
        self, record: ExecutionRecord, key: tuple[str, int], source: Any,
        trigger: Any, recorded: list[Any], persisted: bool,
        env: Mapping[str, Any] | None, credentials: Mapping[str, Any] | None,
        config: Mapping[str, Any] | None = None, config_secrets: tuple[str, ...] = (),
        clock_offset: int = 0,
    ) -> None:
        execution_id = record.id
        error: str | None = None
        response: str | None = None
        try:
            workflow = self._workflow(key, source)
            recorder = Recorder(WriteThrough(self.save), record, persisted=persisted)
            state = self.engine.new_state(recorder, workflow, trigger, recorded, env=env,
                                          credentials=credentials, config=config,
                                          config_secrets=config_secrets,
                                          clock_offset=clock_offset)
            state.cancel_requested = record.cancel_requested
            state.renew = functools.partial(self.renew, execution_id)
            self._states[execution_id] = state
            await self.engine.run(state)
            if state.responded:
                response = orjson.dumps(state.response).decode()
        except Exception as exc:  # the parent logs it; the lease brings the execution back
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self._states.pop(execution_id, None)
        progress, steps = self._final.pop(execution_id, (None, []))
        if self.channel is not None:
            self.channel.send(["finish", execution_id, progress, steps, response, error],
                              batch=True)

    async def save(self, record: ExecutionRecord, steps: Sequence[Any]) -> None:
        """Send a commit to the parent and wait until it is committed.

        The last commit of a finished execution is kept for the ``finish`` message that
        ends the run: the parent commits it, then answers (one message, not three).
        """
        if record.finished:
            self._final[record.id] = (progress_to_wire(record),
                                      [step_to_wire(s) for s in steps])
            return
        self._seq += 1
        seq = self._seq
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[seq] = future
        self._send(["save", seq, record.id, progress_to_wire(record),
                    [step_to_wire(s) for s in steps]])
        await future

    async def renew(self, execution_id: str, app: str, used: Mapping[str, Any]
                    ) -> Mapping[str, Any]:
        """Ask the parent to renew an OAuth binding a target refused; its answer."""
        self._seq += 1
        seq = self._seq
        future: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        self._renewals[seq] = future
        self._send(["renew", seq, execution_id, app, dict(used)])
        return await future

    def _send(self, message: Message) -> None:
        if self.channel is not None:
            self.channel.send(message)

    async def beat(self) -> None:
        """Tell the parent this loop is alive, until stopped."""
        while not self.stopped.is_set():
            self._send(["beat"])
            await asyncio.sleep(BEAT_SECONDS)

    async def _stop(self, grace: float) -> None:
        if self._tasks:
            _, still = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in still:
                task.cancel()
        self.stopped.set()


def _not_preempting() -> None:
    # A message from the parent wakes this process; under the default policy the kernel
    # lets it preempt the parent on the parent's CPU at once, so every send cost the parent
    # the executor's whole reaction (~250 us measured). SCHED_BATCH wakes without
    # preempting: the executor runs on the other core, or when the parent yields.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def _limit_memory(limit: int) -> None:
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


async def _serve(fd: int, settings: Settings, marker_path: str) -> None:
    loop = asyncio.get_running_loop()
    child = Child(settings, MmapMarker(marker_path))
    sock = socket.socket(fileno=fd)
    _, channel = await loop.create_connection(
        lambda: Channel(child.on_message, child.on_lost), sock=sock
    )
    child.channel = channel
    beat = loop.create_task(child.beat())
    child._send(["ready", os.getpid()])
    await child.stopped.wait()
    beat.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await beat
    channel.close()
    await close_engine(child.engine)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m reflow.executor``."""
    parser = argparse.ArgumentParser(prog="reflow-executor")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--marker", required=True)
    parser.add_argument("--settings", required=True, help="file with the pickled Settings")
    parser.add_argument("--memory", type=int, default=0)
    args = parser.parse_args(argv)
    # The parent stops its executors (a "stop" message, then SIGKILL after the grace): a
    # SIGTERM or Ctrl+C sent to the whole process group (systemd, a terminal) must not
    # cut the grace of the executions they run short.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="executor %(process)d: %(levelname)s %(name)s: %(message)s")
    with open(args.settings, "rb") as handle:
        settings = pickle.load(handle)  # written by the parent, readable by its owner only
    _limit_memory(args.memory)
    _not_preempting()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(_serve(args.fd, settings, args.marker))
    else:
        uvloop.run(_serve(args.fd, settings, args.marker))
