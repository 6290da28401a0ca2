"""Start and stop reflow as a real server process on a fresh database, and read its figures."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.client import Connection

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_FILE = ROOT / "examples" / "order-summary.yaml"
API_KEY = "rf_bench_key_0123456789abcdef0123"
API_VERSION = "2025-09"
HEADERS = {"authorization": f"bearer {API_KEY}", "x-api-version": API_VERSION}
_START_SECONDS = 30.0
_STOP_SECONDS = 15.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# What `reflow worker` prints on stdout once it runs.
_WORKER_READY = b"reflow worker running:"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fresh_secret_key() -> str:
    """A new REFLOW_SECRET_KEY."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@dataclass
class Server:
    """``reflow serve`` on one SQLite file, on 127.0.0.1, with the benchmark workflow applied.

    Run as a user runs it (``python -m reflow serve --apply <file>``, production settings),
    so what is measured includes whatever ``serve`` sets up (uvloop, httptools, GC tuning).
    With ``database_url`` it runs on that database instead; ``role="worker"`` runs
    ``reflow worker`` (no API), ``no_worker`` runs ``serve --no-worker`` (API only).
    """

    folder: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    # REFLOW_EXECUTOR_PROCESSES for the server; None keeps reflow's default.
    executor_processes: int | None = None
    # A PostgreSQL URL; None: the SQLite file in ``folder``.
    database_url: str | None = None
    role: str = "serve"  # or "worker"
    no_worker: bool = False
    name: str = "server"  # of the log file; one per process sharing ``folder``
    # Processes sharing a database must share the key that seals trigger secrets.
    secret_key: str = field(default_factory=fresh_secret_key)
    # More REFLOW_* settings (the caller's own environment's are not passed on).
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def db_path(self) -> Path:
        """The SQLite file."""
        return self.folder / "reflow.db"

    @property
    def log_path(self) -> Path:
        """Where the server's stdout and stderr go."""
        return self.folder / f"{self.name}.log"

    @property
    def pid(self) -> int:
        """The server's process id."""
        if self.process is None:
            raise RuntimeError("server is not running")
        return self.process.pid

    def command(self) -> list[str]:
        """The command line that starts the server."""
        if self.role == "worker":
            return [sys.executable, "-m", "reflow", "worker"]
        command = [sys.executable, "-m", "reflow", "serve", "--apply", str(WORKFLOW_FILE)]
        return [*command, "--no-worker"] if self.no_worker else command

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REFLOW_")}
        env.update({
            "REFLOW_ENV": "production",
            "REFLOW_DATABASE_URL": self.database_url or f"sqlite:///{self.db_path}",
            "REFLOW_HOST": "127.0.0.1",
            "REFLOW_PORT": str(self.port),
            "REFLOW_BOOTSTRAP_KEY": API_KEY,
            "REFLOW_DEV_KEY_FILE": str(self.folder / "dev-key"),
            # Production refuses to start without a key for trigger secrets: a fresh one.
            "REFLOW_SECRET_KEY": self.secret_key,
        })
        if self.executor_processes is not None:
            env["REFLOW_EXECUTOR_PROCESSES"] = str(self.executor_processes)
        env.update(self.settings)
        return env

    async def start(self) -> None:
        """Start the process and wait until ``/health`` answers (a worker: until it runs)."""
        self.port = self.port or _free_port()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.folder, env=self._environment(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.tail()}")
            if self.role == "worker":
                if _WORKER_READY in self.log_path.read_bytes():
                    return
                await asyncio.sleep(0.05)
                continue
            with contextlib.suppress(OSError):
                async with Connection("127.0.0.1", self.port, HEADERS) as conn:
                    if (await conn.request("GET", "/health")).status == 200:
                        return
            await asyncio.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready in {_START_SECONDS:g} s:\n{self.tail()}")

    def stop(self) -> int | None:
        """Ask the process to stop (SIGINT, as Ctrl-C), kill it if it does not; its exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(_STOP_SECONDS)
        return process.returncode

    def tail(self, lines: int = 30) -> str:
        """The end of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def memory_kib(self) -> dict[str, int]:
        """VmHWM (peak resident) and VmRSS of the server process, in KiB."""
        return _memory_kib(self.pid)

    def executor_pids(self) -> list[int]:
        """The server's executor processes (its children)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if int(_stat_fields(entry / "stat")[1]) == self.pid:
                        pids.append(int(entry.name))
        return pids

    def executor_memory_kib(self) -> int:
        """The peak resident memory (VmHWM) of the executor processes, summed, in KiB."""
        return sum(_memory_kib(pid).get("VmHWM", 0) for pid in self.executor_pids())

    def executor_cpu_seconds(self) -> float:
        """CPU time the executor processes have used (they run the engine)."""
        total = 0.0
        for pid in self.executor_pids():
            with contextlib.suppress(OSError):
                total += _cpu_seconds(Path(f"/proc/{pid}/stat"))
        return total

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time (user plus system) the server has used: its main thread, other threads.

        The main thread runs the event loop; the others are thread pools (a request that
        hops to one shows up there).
        """
        main = others = 0.0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread may end while being read
                seconds = _cpu_seconds(task / "stat")
                if task.name == str(self.pid):
                    main += seconds
                else:
                    others += seconds
        return main, others


def _memory_kib(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            found[name] = int(value.split()[0])
    return found


def _stat_fields(stat: Path) -> list[str]:
    # Field 2 (comm) may hold spaces; the fields after its closing parenthesis are fixed.
    return stat.read_text().rpartition(")")[2].split()


def _cpu_seconds(stat: Path) -> float:
    fields = _stat_fields(stat)
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
