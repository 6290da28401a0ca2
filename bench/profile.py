"""Sample the server with py-spy under load and say where its CPU goes.

py-spy (``--native --threads``) writes collapsed stacks ("thread;frame;...;leaf count",
root first) that include C frames: SQLite, the garbage collector, system calls. Only the
main thread's samples are read: it runs the event loop and does nearly all the work (the
bench measures each thread's CPU from /proc), while py-spy counts thread-pool threads
waiting on their queue as busy. Samples whose leaf is the event loop's epoll wait are
idle and left out. Each other sample is charged to the leaf-most frame that belongs to a
known layer, so the layers add up to 100%: a pydantic validation called by FastAPI counts
as pydantic, a garbage collection triggered anywhere as the garbage collector.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (layer, fragments of a frame's text); the first matching layer names a frame.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Python garbage collector", ("gc_collect",)),
    ("thread-pool hop (anyio worker threads)",
     ("anyio/", "threading.py", "concurrent/futures", "sem_post", "pthread_cond")),
    ("JSONata (reflow/expressions.py, jsonata-rs)", ("reflow/expressions.py", "jsonata")),
    ("SQLite (reflow/store, sqlite3)", ("reflow/store/", "sqlite")),
    ("reflow engine, blocks, worker", ("reflow/engine/", "reflow/blocks/", "reflow/worker.py")),
    ("reflow services", ("reflow/services/",)),
    ("reflow API (routes, deps, middleware)", ("reflow/api/",)),
    ("pydantic", ("pydantic",)),
    ("FastAPI telemetry check (OpenTelemetry)", ("fastapi/telemetry", "opentelemetry")),
    ("FastAPI and Starlette", ("fastapi/", "starlette/")),
    ("uvicorn and httptools (incl. socket I/O)", ("uvicorn/", "httptools")),
    ("JSON (orjson, json)", ("orjson", "json/")),
    ("logging", ("logging/",)),
    ("asyncio and uvloop", ("asyncio/", "uvloop", "_asyncio")),
)
OTHER = "other"
IDLE_LEAVES = ("epoll_wait", "epoll_pwait")
_TOP = 15
# Frames under which every sample sits: they say nothing.
_ENTRY_POINTS = ("(reflow/cli/", "(reflow/__main__.py:")


def _layer(frame: str) -> str | None:
    for name, fragments in LAYERS:
        if any(fragment in frame for fragment in fragments):
            return name
    return None


Shares = list[tuple[str, float]]


@dataclass(frozen=True, slots=True)
class Summary:
    """Where the sampled CPU of the event loop went."""

    samples: int
    idle: int  # samples in the epoll wait, left out of the shares
    layers: Shares  # (layer, share of samples), largest first
    leaves: Shares  # (frame, share): where the CPU was, C frames included
    python_lines: Shares  # (frame, share): the leaf-most Python line of each sample
    reflow_inclusive: Shares  # reflow functions with everything they call
    us_per_execution: float | None = None  # the main thread's CPU per execution

    def as_json(self) -> dict[str, Any]:
        """For the results file."""
        return {"samples": self.samples, "idleSamples": self.idle,
                "mainThreadCpuUsPerExecution": self.us_per_execution,
                "layers": dict(self.layers), "leaves": dict(self.leaves),
                "pythonLines": dict(self.python_lines),
                "reflowInclusive": dict(self.reflow_inclusive)}

    def lines(self) -> list[str]:
        """A human-readable report."""
        cost = self.us_per_execution
        per = f", {cost:.0f} µs of CPU per execution" if cost else ""
        out = [f"profile: {self.samples} busy samples of the event loop thread{per}"]
        for title, shares in (("by layer:", self.layers),
                              ("hottest frames (self time, C included):", self.leaves),
                              ("hottest Python lines (self time):", self.python_lines),
                              ("reflow functions (inclusive):", self.reflow_inclusive)):
            out.append(title)
            out += [f"  {share:6.1%}{_us(share, cost)}  {name}" for name, share in shares]
        return out


def _us(share: float, cost: float | None) -> str:
    return f" {share * cost:5.0f} µs" if cost else ""


def _stacks(collapsed: str, thread: int) -> Iterator[tuple[list[str], int]]:
    root = f"thread ({thread})"
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack.startswith(root) and count.isdigit():
            yield stack.split(";")[1:], int(count)


def summarize(collapsed: str, thread: int, us_per_execution: float | None = None) -> Summary:
    """Read py-spy's raw output (recorded with ``--threads``) for one thread id."""
    counters: dict[str, Counter[str]] = {
        name: Counter() for name in ("layers", "leaves", "python", "inclusive")
    }
    total = idle = 0
    for frames, count in _stacks(collapsed, thread):
        if frames[-1].startswith(IDLE_LEAVES):
            idle += count
            continue
        total += count
        counters["leaves"][frames[-1]] += count
        python = [frame for frame in frames if ".py:" in frame]
        counters["python"][python[-1] if python else OTHER] += count
        named = (_layer(frame) for frame in reversed(frames))
        counters["layers"][next((name for name in named if name), OTHER)] += count
        # Line numbers dropped so a function's lines add up; once per sample (recursion).
        for function in {f.split(":")[0] + ")" for f in frames
                         if "reflow/" in f and not any(e in f for e in _ENTRY_POINTS)}:
            counters["inclusive"][function] += count

    def shares(name: str) -> Shares:
        counter = counters[name]
        top = counter.most_common() if name == "layers" else counter.most_common(_TOP)
        return [(key, value / total) for key, value in top] if total else []

    return Summary(total, idle, shares("layers"), shares("leaves"), shares("python"),
                   shares("inclusive"), us_per_execution)


class Profiler:
    """py-spy recording one process (native frames, per thread) until stopped."""

    def __init__(self, pid: int, output: Path, rate: int = 200) -> None:
        self.pid = pid
        self.output = output
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
        self._process = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
             "--native", "--threads", "--output", str(output)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def stop(self, us_per_execution: float | None = None) -> Summary:
        """Stop sampling (py-spy writes its file on SIGINT) and summarize the main thread."""
        self._process.send_signal(signal.SIGINT)
        try:
            _, stderr = self._process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            raise RuntimeError("py-spy did not stop within 30 s") from None
        if not self.output.exists():
            raise RuntimeError(f"py-spy wrote no profile: {stderr.decode(errors='replace')}")
        return summarize(self.output.read_text(), self.pid, us_per_execution)
