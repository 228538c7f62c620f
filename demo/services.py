"""The demo's processes: the Temporal dev server, the Moodle simulator and the worker.

Each runs in its own session (so Ctrl-C reaches only the demo, which then stops them in order) and logs to
``.demo/<name>.log``. `Services` is a context manager: leaving it stops every process it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from openvle_moodle_sync.devserver import DEV_SERVER_ARGS, temporal_cli

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / ".demo"
STOP_SECONDS = 15.0


class ServiceError(RuntimeError):
    """A process did not come up; the message says which and quotes the end of its log."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def died(self) -> ServiceError:
        return ServiceError(f"the {self.name} exited with code {self.popen.returncode}; "
                            f"the end of {self.log}:\n{log_tail(self.log)}")


@dataclass
class Services:
    """Starts processes and stops them all (newest first) when the `with` block ends, however it ends."""

    state_dir: Path = DEMO_DIR
    processes: list[Process] = field(default_factory=list)
    _logs: set[Path] = field(default_factory=set)

    def __enter__(self) -> Services:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return self

    def shown(self, name: str) -> str:
        """How the demo names a file of its state directory (relative to the repository when inside it)."""
        path = self.state_dir / name
        try:
            return str(path.relative_to(ROOT))
        except ValueError:
            return str(path)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()

    def start(self, name: str, args: list[str], *, env: dict[str, str] | None = None, log_name: str) -> Process:
        log = self.state_dir / f"{log_name}.log"
        # Each demo starts its logs afresh; a restarted process (the worker) appends to its log.
        with log.open("ab" if log in self._logs else "wb") as out:
            popen = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        process = Process(name, popen, log)
        self.processes.append(process)
        self._logs.add(log)
        return process

    def stop(self, process: Process) -> None:
        if process.alive():
            process.popen.send_signal(signal.SIGTERM)
            try:
                process.popen.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.processes)):
            try:
                self.stop(process)
            except KeyboardInterrupt:  # a second Ctrl-C: stop the rest without waiting
                for rest in self.processes:
                    if rest.alive():
                        rest.popen.kill()
                raise

    # --- the three services -------------------------------------------------------------------------

    def start_temporal(self, port: int, ui_port: int) -> Process:
        return self.start("Temporal dev server", [
            temporal_cli(), "server", "start-dev", "--db-filename", str(self.state_dir / "temporal.db"),
            "--port", str(port), "--ui-port", str(ui_port), "--log-level", "error", *DEV_SERVER_ARGS,
        ], log_name="temporal")

    def start_moodle(self, port: int, token: str, latency_ms: float) -> Process:
        process = self.start("Moodle simulator", [
            sys.executable, "-m", "fake_moodle", "--port", str(port), "--token", token,
            "--latency-ms", str(latency_ms),
        ], log_name="fake_moodle")
        url = f"http://127.0.0.1:{port}/_fake/state"

        def ready() -> bool:
            try:
                return httpx.get(url, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, process, timeout=20)
        return process

    def start_worker(self, env: dict[str, str]) -> Process:
        return self.start("worker", [sys.executable, str(ROOT / "worker.py")],
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, log_name="worker")


def wait_until(ready: Callable[[], bool], process: Process, *, timeout: float) -> None:
    """Poll `ready` until it holds; fail early, with the process's log, if the process dies."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not process.alive():
            raise process.died()
        if time.monotonic() > deadline:
            raise ServiceError(f"the {process.name} did not become ready within {timeout:.0f} s; the end of "
                               f"{process.log}:\n{log_tail(process.log)}")
        time.sleep(0.1)
