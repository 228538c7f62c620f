"""Real processes for the crash and secrets tests: the Moodle simulator, a Temporal dev server and the
worker, each a subprocess with its output in a log file, always stopped at the end of the test.

`Processes` keeps every process it started and ends each of them by its pid (never by name); the
`processes` fixture calls `Processes.stop_all` in its finaliser, so nothing survives a failed test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from openvle_moodle_sync.devserver import DEV_SERVER_ARGS, temporal_cli
from openvle_moodle_sync.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: the worker runs from here, as an operator runs it (``python worker.py``)."""

PYTHON = sys.executable


def free_port() -> int:
    """A TCP port that is free now (bound to port 0 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class ProcessFailed(AssertionError):
    """A subprocess ended, or did not get ready, when the test needed it; the message holds its log's tail."""


class Proc:
    """One subprocess whose stdout and stderr go to ``log_path`` (appended to across restarts)."""

    def __init__(self, name: str, args: list[str], *, log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path = ROOT) -> None:
        self.name, self.args, self.log_path, self.cwd = name, args, log_path, cwd
        self.env = dict(env) if env is not None else dict(os.environ)
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> Proc:
        assert not self.alive(), f"{self.name} is already running"
        self._close_log()
        self._log = self.log_path.open("ab")
        self._log.write(f"\n=== start {self.starts + 1}: {' '.join(self.args)}\n".encode())
        self._log.flush()
        self.popen = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT)
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (a crash, an OOM kill, a pulled plug)."""
        self.signal(signal.SIGKILL)
        self.wait(10)

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not ended within ``timeout``; the exit status (None if never run)."""
        if self.alive():
            self.signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.kill()
        self._close_log()
        return self.popen.returncode if self.popen else None

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def output(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def fail(self, why: str) -> ProcessFailed:
        state = "running" if self.alive() else f"exited with {self.popen.returncode if self.popen else None}"
        return ProcessFailed(f"{self.name} ({state}): {why}\n--- {self.log_path} (tail) ---\n{self.tail()}")

    def wait_for_output(self, text: str, timeout: float, *, after: int = 0) -> None:
        """Until ``text`` appears in the log after character ``after``; fails if the process ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output()[after:]:
                return
            if not self.alive():
                raise self.fail(f"ended before printing {text!r}")
            time.sleep(0.05)
        raise self.fail(f"did not print {text!r} within {timeout}s")

    def wait_for_port(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(port):
                return
            if not self.alive():
                raise self.fail(f"ended before listening on port {port}")
            time.sleep(0.05)
        raise self.fail(f"did not listen on port {port} within {timeout}s")


class Processes:
    """The processes of one test; `stop_all` ends each one it started, by pid."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Proc] = []

    def add(self, name: str, args: list[str], **kwargs: Any) -> Proc:
        proc = Proc(name, args, log_path=self.directory / f"{name}.log", **kwargs)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            with contextlib.suppress(Exception):
                proc.stop(timeout=5)

    # -- the three kinds of process ------------------------------------------------------------------

    def fake_moodle(self, token: str, *, latency_ms: float = 20, name: str = "fake_moodle",
                    limited_token: str | None = None, extended_token: str | None = None) -> FakeMoodleProc:
        port = free_port()
        more = [*(["--limited-token", limited_token] if limited_token else []),
                *(["--extended-token", extended_token] if extended_token else [])]
        proc = FakeMoodleProc(name, [PYTHON, "-m", "fake_moodle", "--port", str(port), "--token", token,
                                     "--latency-ms", str(latency_ms), *more],
                              log_path=self.directory / f"{name}.log", port=port)
        self.started.append(proc)
        proc.start()
        proc.wait_for_output("fake Moodle listening", 20)
        return proc

    def temporal(self, db_file: Path, *, name: str = "temporal") -> TemporalProc:
        proc = TemporalProc(name, db_file, log_path=self.directory / f"{name}.log")
        self.started.append(proc)
        proc.start()
        proc.wait_until_serving(60)
        return proc

    def worker(self, env: Mapping[str, str], *, name: str = "worker") -> Proc:
        proc = self.add(name, [PYTHON, str(ROOT / "worker.py")], env=env, cwd=worker_cwd(self.directory))
        start_worker(proc)
        return proc


class FakeMoodleProc(Proc):
    """``python -m fake_moodle`` with its control endpoints."""

    def __init__(self, name: str, args: list[str], *, log_path: Path, port: int) -> None:
        super().__init__(name, args, log_path=log_path)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def state(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_fake/state", timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def faults(self, **changes: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/_fake/faults", json=changes, timeout=30)
        response.raise_for_status()
        return dict(response.json())


class TemporalProc(Proc):
    """``temporal server start-dev`` on fixed free ports with its state in ``db_file``, so that a restart
    (same file, same port) continues where the killed server stopped."""

    def __init__(self, name: str, db_file: Path, *, log_path: Path) -> None:
        self.port, self.ui_port, self.http_port, self.metrics_port = (free_port() for _ in range(4))
        super().__init__(name, [
            temporal_cli(), "server", "start-dev", "--headless", "--db-filename", str(db_file),
            "--ip", "127.0.0.1", "--port", str(self.port), "--ui-port", str(self.ui_port),
            "--http-port", str(self.http_port), "--metrics-port", str(self.metrics_port), "--log-level", "error",
            *DEV_SERVER_ARGS,
        ], log_path=log_path)
        self.address = f"127.0.0.1:{self.port}"

    def wait_until_serving(self, timeout: float) -> None:
        """Wait for the port, then for the frontend to answer: it listens a moment before it is healthy, and a
        client connecting then gets "Frontend is not healthy yet"."""
        deadline = time.monotonic() + timeout
        self.wait_for_port(self.port, timeout)
        while time.monotonic() < deadline:
            # A call through the frontend, as a client's first call goes.
            answer = subprocess.run([temporal_cli(), "operator", "namespace", "describe", "--namespace", "default",
                                     "--address", self.address], capture_output=True, text=True, timeout=30)
            if answer.returncode == 0:
                return
            if not self.alive():
                raise self.fail("ended before its frontend was healthy")
            time.sleep(0.2)
        raise self.fail(f"its frontend was not healthy within {timeout}s")


def start_worker(proc: Proc, timeout: float = 60) -> None:
    """(Re)start a worker process and wait until it polls its task queue."""
    mark = len(proc.output())
    proc.start()
    proc.wait_for_output("worker polling task queue", timeout, after=mark)


def worker_cwd(fallback: Path) -> Path:
    """The repository root, unless a ``.env`` there sets a variable the environment cannot unset (then a
    directory without ``.env``: the settings read ``.env`` from the working directory)."""
    dotenv = ROOT / ".env"
    if not dotenv.exists():
        return ROOT
    unsettable = [name.upper() for name, field in Settings.model_fields.items() if field.default is None]
    text = dotenv.read_text("utf-8", "replace").upper()
    return fallback if any(name in text for name in unsettable) else ROOT


def worker_env(*, moodle_url: str, token: str, temporal_address: str, task_queue: str,
               **overrides: str) -> dict[str, str]:
    """The worker's whole configuration, explicitly: every setting is given (so ``.env`` changes nothing),
    and no setting leaks in from the environment of the test run."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    for name, field in Settings.model_fields.items():
        default = field.default
        if default is None:
            continue
        value = default.get_secret_value() if hasattr(default, "get_secret_value") else default
        env[name.upper()] = str(value)
    env.update({
        "MOODLE_ENABLED": "True",
        "MOODLE_URL": moodle_url,
        "MOODLE_TOKEN": token,
        "MOODLE_USER_AUTH": "manual",
        "MOODLE_RETRY_MAX_INTERVAL": "1",
        "MOODLE_SYNC_TIMEOUT": "3",
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_TASK_QUEUE": task_queue,
        "PYTHONUNBUFFERED": "1",
    })
    env.update({k.upper(): v for k, v in overrides.items()})
    return env


@contextlib.contextmanager
def processes_in(directory: Path) -> Iterator[Processes]:
    procs = Processes(directory)
    try:
        yield procs
    finally:
        procs.stop_all()


# -- the simulator's end state, from GET /_fake/state -------------------------------------------------

ROLE_IDS = {"student": 5, "instructor": 3}


def people(event_id: str, count: int, *, instructors: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": f"p-{i}", "username": f"{event_id}-user{i}", "email": f"{event_id}-user{i}@example.com",
         "first_name": f"First{i}", "last_name": f"Last{i}",
         "role": "instructor" if i < instructors else "student"}
        for i in range(count)
    ]


def assert_deployed(state: dict[str, Any], event: dict[str, Any],
                    participants: list[dict[str, Any]] | None = None) -> int:
    """The event has exactly one course holding exactly ``participants`` (default: the event's), each with
    one account, one enrolment with the right role, and no person got a second message. Returns the course id."""
    participants = event["participants"] if participants is None else participants
    courses = [c for c in state["courses"] if c["shortname"] == event["slug"] or event["id"] in c["shortname"]]
    assert [c["shortname"] for c in courses] == [event["slug"]], courses
    course_id = courses[0]["id"]
    accounts: dict[str, list[int]] = {}
    for user in state["users"]:
        accounts.setdefault(user["username"], []).append(user["id"])
    missing = [p["username"] for p in participants if p["username"].lower() not in accounts]
    assert not missing, f"{len(missing)} participants have no account, e.g. {missing[:5]}"
    doubled = {name: ids for name, ids in accounts.items() if name.startswith(event["id"].lower()) and len(ids) > 1}
    assert not doubled, f"accounts made twice: {doubled}"
    emails: dict[str, int] = {}
    for user in state["users"]:
        emails[user["email"].lower()] = emails.get(user["email"].lower(), 0) + 1
    assert all(emails[p["email"].lower()] == 1 for p in participants)
    enrolled = {e["userid"]: e["roles"] for e in state["enrolments"] if e["courseid"] == course_id}
    expected = {accounts[p["username"].lower()][0]: [ROLE_IDS[p["role"]]] for p in participants}
    wrong = {uid: (enrolled.get(uid), roles) for uid, roles in expected.items() if enrolled.get(uid) != roles}
    assert not wrong, f"{len(wrong)} enrolments wrong (have, want), e.g. {list(wrong.items())[:5]}"
    assert set(enrolled) == set(expected), f"enrolled but not participants: {set(enrolled) - set(expected)}"
    mails: dict[tuple[str, int], int] = {}
    for m in state["messages"]:
        mails[(m["kind"], m["user_id"])] = mails.get((m["kind"], m["user_id"]), 0) + 1
    twice = {key: n for key, n in mails.items() if n > 1}
    assert not twice, f"messages sent more than once: {twice}"
    return int(course_id)
