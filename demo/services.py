"""The demo's processes: the Temporal dev server, the Moodle simulator and the worker, and the lock on its state
directory.

The processes are `devtools.processes`' (the supervisor of the tests and the benchmarks too). Each runs in its
own session (so Ctrl-C reaches only the demo, which then stops them in order) and logs to
``<state dir>/<name>.log``, started afresh by each demo. `Services` is a context manager: entering it takes the
state directory's lock (a second demo on the same directory is refused, naming the running one); leaving it
stops every process it started and releases the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from devtools.processes import ROOT, FakeMoodleProc, Proc, Processes, TemporalProc

DEMO_DIR = ROOT / ".demo"
STOP_SECONDS = 15.0
LOCK_FILE = "demo.lock"
"""In the state directory: held (flock) by the demo using it, with its pid and addresses as JSON."""


class ServiceError(RuntimeError):
    """The demo cannot start; the message says why and what to do."""


class StateDirInUse(ServiceError):
    """Another demo holds the state directory; the message names it."""


def installed(command: str) -> Path | None:
    """The console script ``command`` installed beside this interpreter (``.venv/bin``), if it is."""
    path = Path(sys.executable).parent / command
    return path if path.is_file() and os.access(path, os.X_OK) else None


@dataclass
class Services:
    """Starts processes and stops them all (newest first) when the `with` block ends, however it ends."""

    state_dir: Path = DEMO_DIR
    processes: Processes = field(init=False)
    _lock: IO[str] | None = None

    def __post_init__(self) -> None:
        self.processes = Processes(self.state_dir, own_session=True, fresh_log=True, stop_timeout=STOP_SECONDS)

    def __enter__(self) -> Services:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.processes.stop_all()
        finally:
            if self._lock is not None:
                self._lock.close()  # releases the flock; the file stays (deleting it would race a new demo)
                self._lock = None

    # --- the state directory's lock -----------------------------------------------------------------

    def _take_lock(self) -> None:
        """Hold the state directory's lock while this demo runs. The kernel releases it when the process ends,
        however it ends, so a lock left by a killed demo never blocks the next one."""
        lock = (self.state_dir / LOCK_FILE).open("a+", encoding="utf-8")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read()
            lock.close()
            raise StateDirInUse(self._in_use(holder)) from None
        self._lock = lock
        self.record(pid=os.getpid(), started=time.strftime("%H:%M:%S"))

    def record(self, **facts: Any) -> None:
        """Add facts about this demo (its pid, its addresses) to the lock file, for a second demo to name it."""
        assert self._lock is not None
        self._lock.seek(0)
        try:
            held = json.loads(self._lock.read() or "{}")
        except json.JSONDecodeError:
            held = {}
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(json.dumps({**held, **facts}))
        self._lock.flush()

    def _in_use(self, holder: str) -> str:
        try:
            facts = json.loads(holder)
        except json.JSONDecodeError:
            facts = {}
        pid = facts.get("pid")
        who = f"pid {pid}" if pid else "another process"
        where = ", ".join(part for part in (
            f"started at {facts['started']}" if facts.get("started") else "",
            f"Temporal {facts['temporal']}" if facts.get("temporal") else "",
            f"Web UI {facts['ui']}" if facts.get("ui") else "",
        ) if part)
        stop = f"Ctrl-C in its terminal or `kill {pid}`" if pid else "Ctrl-C in its terminal"
        return (f"another demo is running with the state directory {self.shown('')} ({who}"
                + (f", {where}" if where else "") + f"). Stop it first ({stop}), or give this one its own "
                "directory: make demo DEMO_ARGS=\"--state-dir DIR\".")

    def shown(self, name: str) -> str:
        """How the demo names a file of its state directory (relative to the repository when inside it)."""
        path = self.state_dir / name
        try:
            return str(path.relative_to(ROOT))
        except ValueError:
            return str(path)

    # --- the three services -------------------------------------------------------------------------

    def start_temporal(self, port: int, ui_port: int) -> TemporalProc:
        """The dev server with its Web UI, its state in ``temporal.db``; the caller waits until it serves."""
        return self.processes.temporal(self.state_dir / "temporal.db", port=port, ui_port=ui_port, wait=False)

    def start_moodle(self, port: int, token: str, latency_ms: float) -> FakeMoodleProc:
        return self.processes.fake_moodle(token, latency_ms=latency_ms, port=port)

    def start_worker(self, env: dict[str, str], worker: Proc | None = None) -> Proc:
        """The worker as an operator runs it (the installed ``openvle-moodle-sync-worker``); ``worker`` given: that
        worker stopped and started again with ``env`` (its log goes on). The caller waits until it polls."""
        if worker is not None:
            worker.stop()
            worker.env = env
            return worker.start()
        script = installed("openvle-moodle-sync-worker")
        args = [str(script)] if script else [sys.executable, str(ROOT / "worker.py")]
        return self.processes.worker(env, args=args, wait=False, cwd=ROOT)
