"""The one process supervisor of the tests, the demo and the benchmarks: the Temporal dev server, the Moodle
simulator and the worker (and any other command), each a subprocess with its output in a log file.

`Processes` keeps every process it started and ends each of them by its pid, newest first (never by name);
used as a context manager (or through `processes_in`), nothing it started survives the block, however the
block ends. A second Ctrl-C while it stops them kills the rest without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import httpx

from openvle_moodle_sync.devserver import DEV_SERVER_ARGS, file_storage_args, temporal_cli
from openvle_moodle_sync.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: processes run from here, as an operator runs them (``python worker.py``)."""

PYTHON = sys.executable
WORKER_READY = "worker polling task queue"
"""What the worker logs once it polls its task queue."""
MOODLE_READY = "fake Moodle listening"
"""What the Moodle simulator prints once it serves."""


def free_port() -> int:
    """A TCP port that is free now (bound to port 0 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Something listens on the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """The port can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class ProcessFailed(RuntimeError):
    """A process ended, or did not get ready, when it was needed; the message holds its log's tail."""


class Proc:
    """One subprocess whose stdout and stderr go to ``log_path``.

    ``fresh_log``: the first start empties the log (restarts append); otherwise every start appends.
    ``own_session``: the process gets its own session, so a Ctrl-C in the terminal reaches only the parent,
    which then stops it in order. ``measure`` (the benchmarks): its resident set size is sampled every 50 ms
    while it runs, for `peak_rss` (psutil, a dev dependency)."""

    def __init__(self, name: str, args: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path = ROOT, fresh_log: bool = False, own_session: bool = False,
                 stop_timeout: float = 10.0, measure: bool = False) -> None:
        self.name, self.args, self.log_path, self.cwd = name, list(args), log_path, cwd
        self.env = dict(env) if env is not None else dict(os.environ)
        self.fresh_log, self.own_session, self.stop_timeout = fresh_log, own_session, stop_timeout
        self.measure = measure
        self.peak_rss = 0
        self._stop_sampling = threading.Event()
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> Proc:
        assert not self.alive(), f"{self.name} is already running"
        self._close_log()
        self._log = self.log_path.open("wb" if self.fresh_log and not self.starts else "ab")
        self._log.write(f"\n=== start {self.starts + 1}: {' '.join(self.args)}\n".encode())
        self._log.flush()
        self.popen = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT, start_new_session=self.own_session)
        self.starts += 1
        if self.measure:
            self._stop_sampling.clear()
            threading.Thread(target=self._sample, args=(self.popen.pid,), daemon=True).start()
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

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

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL if it has not ended within ``timeout`` (default: the process's
        ``stop_timeout``); the exit status (None if never run)."""
        self._stop_sampling.set()
        if self.alive():
            self.signal(signal.SIGTERM)
            if self.wait(self.stop_timeout if timeout is None else timeout) is None:
                self.kill()
        self._close_log()
        return self.popen.returncode if self.popen else None

    # -- measures (the benchmarks) --------------------------------------------------------------------

    def _sample(self, pid: int) -> None:
        import psutil

        try:
            ps = psutil.Process(pid)
            while not self._stop_sampling.is_set():
                self.peak_rss = max(self.peak_rss, ps.memory_info().rss)
                self._stop_sampling.wait(0.05)
        except psutil.Error:
            return

    def hwm_bytes(self) -> int:
        """The kernel's peak resident set size of the process (VmHWM), or the sampled peak."""
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return max(int(line.split()[1]) * 1024, self.peak_rss)
        return self.peak_rss

    def cpu_s(self) -> float:
        """CPU seconds the process and its waited-for children used so far (0 once it has ended)."""
        import psutil

        try:
            t = psutil.Process(self.pid).cpu_times()
            return float(t.user + t.system + t.children_user + t.children_system)
        except (psutil.Error, ValueError, TypeError):
            return 0.0

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
        state = "running" if self.alive() else f"exited with {self.returncode}"
        return ProcessFailed(f"{self.name} ({state}): {why}\n--- {self.log_path} (tail) ---\n{self.tail()}")

    def _ready_or_fail(self, text: str, after: int, started: float, timeout: float) -> bool:
        if text in self.output()[after:]:
            return True
        if not self.alive():
            raise self.fail(f"ended before printing {text!r}")
        if time.monotonic() - started > timeout:
            raise self.fail(f"did not print {text!r} within {timeout:g} s")
        return False

    def wait_for_output(self, text: str, timeout: float, *, after: int = 0) -> None:
        """Until ``text`` appears in the log after character ``after``; fails if the process ends first."""
        started = time.monotonic()
        while not self._ready_or_fail(text, after, started, timeout):
            time.sleep(0.05)

    async def output_appears(self, text: str, timeout: float, *, after: int = 0) -> None:
        """`wait_for_output` for a caller on an event loop."""
        started = time.monotonic()
        while True:
            if self._ready_or_fail(text, after, started, timeout):
                return
            await asyncio.sleep(0.05)

    def wait_for_port(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(port):
                return
            if not self.alive():
                raise self.fail(f"ended before listening on port {port}")
            time.sleep(0.05)
        raise self.fail(f"did not listen on port {port} within {timeout:g} s")


class FakeMoodleProc(Proc):
    """``python -m fake_moodle`` on ``port`` with its control endpoints."""

    def __init__(self, name: str, args: Sequence[str], *, port: int, **kwargs: Any) -> None:
        super().__init__(name, args, **kwargs)
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
    """``temporal server start-dev`` on fixed ports with the project's dev server arguments.

    ``storage``: the dev server's storage arguments (default: its state in ``db_file`` as
    `devserver.file_storage_args` keeps it, so that a restart with the same file and port continues where the
    killed server stopped). ``ui_port`` None: headless."""

    def __init__(self, name: str, db_file: Path | None, *, port: int | None = None, ui_port: int | None = None,
                 storage: Sequence[str] | None = None, extra: Sequence[str] = (), **kwargs: Any) -> None:
        self.port = port or free_port()
        self.ui_port = ui_port
        if storage is None:
            storage = file_storage_args(db_file) if db_file is not None else []
        ui = ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
        super().__init__(name, [
            temporal_cli(), "server", "start-dev", *storage, "--ip", "127.0.0.1", "--port", str(self.port), *ui,
            "--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "error",
            *DEV_SERVER_ARGS, *extra,
        ], **kwargs)
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
        raise self.fail(f"its frontend was not healthy within {timeout:g} s")


P = TypeVar("P", bound=Proc)


class Processes:
    """The processes of one test, demo or benchmark run; `stop_all` ends each one it started, by pid.

    Every process gets its log in ``directory`` and the given ``options`` of `Proc` (``fresh_log``,
    ``own_session``, ``stop_timeout``) unless its call says otherwise."""

    def __init__(self, directory: Path, **options: Any) -> None:
        self.directory = directory
        self.options = options
        self.started: list[Proc] = []

    def __enter__(self) -> Processes:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()

    def track(self, proc: P) -> P:
        """Keep ``proc`` to stop it with the others."""
        self.started.append(proc)
        return proc

    def options_for(self, name: str, **kwargs: Any) -> dict[str, Any]:
        """The keyword arguments of a `Proc` (or subclass) named ``name`` started here."""
        return {"log_path": self.directory / f"{name}.log", **self.options, **kwargs}

    def add(self, name: str, args: Sequence[str], **kwargs: Any) -> Proc:
        """A process, not started yet, logging to ``directory/<name>.log``."""
        return self.track(Proc(name, args, **self.options_for(name, **kwargs)))

    def start(self, name: str, args: Sequence[str], **kwargs: Any) -> Proc:
        """`add` and start."""
        return self.add(name, args, **kwargs).start()

    def stop(self, proc: Proc, timeout: float | None = None) -> int | None:
        """Stop one process and forget it."""
        code = proc.stop(timeout)
        if proc in self.started:
            self.started.remove(proc)
        return code

    def stop_all(self, timeout: float | None = None) -> None:
        """Stop every process started here, newest first; a Ctrl-C meanwhile kills the rest at once."""
        try:
            for proc in reversed(list(self.started)):
                with contextlib.suppress(Exception):
                    self.stop(proc, timeout)
        except KeyboardInterrupt:
            for proc in self.started:
                with contextlib.suppress(Exception):
                    proc.kill()
            raise

    # -- the three kinds of process ------------------------------------------------------------------

    def fake_moodle(self, token: str, *, latency_ms: float = 20, name: str = "fake_moodle", port: int | None = None,
                    limited_token: str | None = None, extended_token: str | None = None,
                    **kwargs: Any) -> FakeMoodleProc:
        """The Moodle simulator, started and serving."""
        port = port or free_port()
        more = [*(["--limited-token", limited_token] if limited_token else []),
                *(["--extended-token", extended_token] if extended_token else [])]
        proc = self.track(FakeMoodleProc(name, [
            PYTHON, "-m", "fake_moodle", "--port", str(port), "--token", token, "--latency-ms", str(latency_ms), *more,
        ], port=port, **self.options_for(name, **kwargs)))
        proc.start()
        proc.wait_for_output(MOODLE_READY, 30)
        return proc

    def temporal(self, db_file: Path | None, *, name: str = "temporal", wait: bool = True,
                 **kwargs: Any) -> TemporalProc:
        """A Temporal dev server (see `TemporalProc`), started; with ``wait``, serving."""
        proc = self.track(TemporalProc(name, db_file, **self.options_for(name, **kwargs)))
        proc.start()
        if wait:
            proc.wait_until_serving(60)
        return proc

    def worker(self, env: Mapping[str, str], *, name: str = "worker", args: Sequence[str] | None = None,
               wait: bool = True, **kwargs: Any) -> Proc:
        """The worker (``python worker.py`` unless ``args`` say otherwise), started; with ``wait``, polling."""
        kwargs.setdefault("cwd", worker_cwd(self.directory))
        proc = self.add(name, args or [PYTHON, str(ROOT / "worker.py")], env=env, **kwargs)
        if wait:
            start_worker(proc)
        else:
            proc.start()
        return proc


def start_worker(proc: Proc, timeout: float = 60) -> None:
    """(Re)start a worker process and wait until it polls its task queue."""
    mark = len(proc.output())
    proc.start()
    proc.wait_for_output(WORKER_READY, timeout, after=mark)


def worker_cwd(fallback: Path) -> Path:
    """The repository root, unless a ``.env`` there sets a variable the environment cannot unset (then a
    directory without ``.env``: the settings read ``.env`` from the working directory)."""
    dotenv = ROOT / ".env"
    if not dotenv.exists():
        return ROOT
    unsettable = [name.upper() for name, field in Settings.model_fields.items() if field.default is None]
    text = dotenv.read_text("utf-8", "replace").upper()
    return fallback if any(name in text for name in unsettable) else ROOT


def worker_env(*, moodle_url: str, token: str, temporal_address: str, task_queue: str | None = None,
               isolated: bool = True, **settings: str) -> dict[str, str]:
    """A worker's environment: the Moodle and Temporal it uses, and ``settings`` (``MOODLE_*``/``TEMPORAL_*``
    names, in any case).

    ``isolated`` (the tests): every other setting is given its default explicitly (so ``.env`` changes
    nothing) and none leaks in from this process's environment. Otherwise (the demo, the benchmarks) the
    others come from the environment and ``.env``, as an operator's worker gets them."""
    names = {name.upper() for name in Settings.model_fields}
    if isolated:
        env = {k: v for k, v in os.environ.items() if k.upper() not in names}
        for name, field in Settings.model_fields.items():
            default = field.default
            if default is None:
                continue
            value = default.get_secret_value() if hasattr(default, "get_secret_value") else default
            env[name.upper()] = str(value)
    else:
        env = dict(os.environ)
    env.update({
        "MOODLE_ENABLED": "True",
        "MOODLE_URL": moodle_url,
        "MOODLE_TOKEN": token,
        "TEMPORAL_ADDRESS": temporal_address,
        "PYTHONUNBUFFERED": "1",
    })
    if task_queue is not None:
        env["TEMPORAL_TASK_QUEUE"] = task_queue
    env.update({k.upper(): v for k, v in settings.items()})
    return env


@contextlib.contextmanager
def processes_in(directory: Path, **options: Any) -> Iterator[Processes]:
    """`Processes` logging to ``directory``, all stopped when the block ends."""
    with Processes(directory, **options) as procs:
        yield procs
