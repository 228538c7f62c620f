"""``make demo`` end to end: the dev server, the simulator and the worker as real processes, eight steps.

One demo runs for the module, with ``--keep-running``; the tests read what it printed, start a second demo on
its state directory, run the commands its banner prints, and last stop it with Ctrl-C.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo.services import LOCK_FILE

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("Plan the deployment (reads only)", "Deploy the event", "Add a participant", "Remove a participant",
         "Deploy the current list again (converge)", "Archive the event", "Delete the event (default settings)",
         "Delete the event (course deletion on)")
KEPT = "Still running (--keep-running)."


def demo_env() -> dict[str, str]:
    """The environment of a fresh shell: no MOODLE_*/TEMPORAL_* settings, the virtual environment not active."""
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MOODLE_", "TEMPORAL_", "PAYLOAD_")) and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir)
    env["COLUMNS"] = "200"
    return env


def demo_command(state_dir: Path, *more: str) -> list[str]:
    # A short simulator latency keeps the test quick, and its own state directory keeps it apart from a
    # demo someone is running; everything else is what `make demo` runs (on a fresh machine: no database).
    return [sys.executable, "-m", "demo", "--latency-ms", "20", "--state-dir", str(state_dir), *more]


@dataclass
class KeptDemo:
    popen: subprocess.Popen[bytes]
    state_dir: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def worker_pid(self) -> int:
        found = re.search(r"Worker: +pid (\d+) with", self.output())
        assert found, self.output()
        return int(found.group(1))


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeptDemo]:
    state_dir = tmp_path_factory.mktemp("demo")
    log = tmp_path_factory.mktemp("demo-output") / "out.txt"
    with log.open("wb") as out:
        popen = subprocess.Popen(demo_command(state_dir, "--keep-running"), cwd=ROOT, env=demo_env(),
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    demo = KeptDemo(popen, state_dir, log)
    try:
        deadline = time.monotonic() + 120
        while KEPT not in demo.output():
            assert popen.poll() is None, f"the demo ended with {popen.returncode}:\n{demo.output()}"
            assert time.monotonic() < deadline, f"the demo did not get to the end in 120 s:\n{demo.output()}"
            time.sleep(0.2)
        yield demo
    finally:
        if popen.poll() is None:
            popen.send_signal(signal.SIGINT)
            try:
                popen.wait(30)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


def step_output(out: str, number: int) -> str:
    """What the demo printed for step ``number`` (1-based)."""
    after = out.split(f"Step {number}/{len(STEPS)} · ", 1)[1]
    return after.split(f"Step {number + 1}/{len(STEPS)} · ", 1)[0] if number < len(STEPS) else after


@pytest.mark.timeout(180)
def test_demo_runs_every_step(kept: KeptDemo) -> None:
    out = kept.output()
    assert f"Demo result: {len(STEPS)}/{len(STEPS)} steps done." in out, out
    for number, title in enumerate(STEPS, 1):
        assert re.search(rf"│ +{number} │ {re.escape(title)} +│.*│ ✓ done +│", out), (title, out)
        assert re.search(rf"Step {number}/{len(STEPS)} · {re.escape(title)}", out), (title, out)
    assert "Moodle course 3 kept: MOODLE_DELETE_COURSE_ON_EVENT_DELETE is false" in out
    assert "Moodle course 3 deleted" in out
    assert "/namespaces/default/workflows?query=OpenVLEEventId%3D%22demo-" in out
    # The plan wrote nothing; the converging deploy took the two dropped students away.
    assert "This plan wrote nothing to Moodle and sent no mail." in out
    assert "2 no longer listed taken away (unenrol)" in re.sub(r"\s+", " ", out)
    # The mail summary after the deployment and the sentence under it tell the same story (issue 11.8).
    deployed = step_output(out, 2)
    counted = re.search(r"(\d+) 'welcome to course' mails \((\d+) to teachers, 0 to students\)", deployed)
    assert counted, deployed
    welcome = int(counted.group(1))
    assert welcome == int(counted.group(2))
    said = re.sub(r"\s+", " ", deployed)
    if welcome:
        assert f"The {welcome} 'welcome to course' mail" in said and "went to instructors" in said, said
    assert "Nobody got a 'welcome to course' mail" not in said or welcome == 0, said
    assert {"temporal.db", "worker.log", "event.json"} <= {p.name for p in kept.state_dir.iterdir()}
    # The printed hints name the installed commands.
    assert "python -m starter" not in out and "python worker.py" not in out, out
    assert "openvle-moodle-sync-worker" in out


@pytest.mark.timeout(180)
def test_welcome_mails_are_counted_by_the_role_at_send_time(kept: KeptDemo) -> None:
    """A mail once sent to a student stays a mail to a student, after the student is taken away too: the
    counts by role only grow, and the archive (every student unenrolled) moves none of them to the teachers."""
    out = kept.output()
    counts = []
    for number in range(2, len(STEPS) + 1):
        found = re.search(r"(\d+) 'welcome to course' mails \((\d+) to teachers, (\d+) to students\)",
                          step_output(out, number))
        assert found, step_output(out, number)
        total, teachers, students = map(int, found.groups())
        assert teachers + students == total, found.group(0)
        counts.append((teachers, students))
    instructors = 3  # demo/sample.py
    assert counts[0] == (instructors - 1, 0), counts  # the first teacher enrolled gets none
    assert counts[1] == (instructors - 1, 1), counts  # the newcomer, a student, joins a course with teachers
    assert all(later == counts[1] for later in counts[2:]), counts


@pytest.mark.timeout(180)
def test_a_second_demo_refuses_the_state_dir_in_use(kept: KeptDemo) -> None:
    before = {name: (kept.state_dir / name).read_bytes() for name in ("event.json", "worker.log", "fake_moodle.log")}
    second = subprocess.run(demo_command(kept.state_dir), cwd=ROOT, env=demo_env(), capture_output=True, text=True,
                            timeout=60)
    said = re.sub(r"\s+", " ", second.stdout + second.stderr)
    assert second.returncode == 1, said
    assert "Could not start the demo: another demo is running with the state directory" in said, said
    assert f"pid {kept.popen.pid}" in said and f"kill {kept.popen.pid}" in said, said
    assert "--state-dir DIR" in said, said
    assert "Traceback" not in said and "Stopping" not in said, said
    # Nothing of the running demo was touched.
    assert {name: (kept.state_dir / name).read_bytes() for name in before} == before
    assert kept.popen.poll() is None


@pytest.mark.timeout(240)
def test_the_kept_worker_has_the_default_settings_and_the_printed_commands_work(kept: KeptDemo) -> None:
    """The banner states the worker's settings; its commands, run as printed in a fresh shell, reach the demo;
    and the worker left running keeps a deleted event's course (the default), not deletes it as in step 8."""
    out = kept.output()
    banner = out.split(KEPT, 1)[1]
    assert "MOODLE_DELETE_COURSE_ON_EVENT_DELETE=False" in banner.split("Try the CLI", 1)[0], banner
    commands = [line.strip() for line in banner.split("Try the CLI", 1)[1].splitlines()[1:] if line.startswith("    ")]
    assert any(c.startswith("openvle-moodle-sync doctor") for c in commands), commands
    event = kept.state_dir / "next-event.json"
    script = "\n".join([*commands, f"openvle-moodle-sync delete --event {event} --wait"])
    shell = subprocess.run(["bash", "-e", "-c", script], cwd=ROOT, env=demo_env(), capture_output=True, text=True,
                           timeout=180)
    said = shell.stdout + shell.stderr
    assert shell.returncode == 0, said
    assert "All checks passed." in said, said
    assert re.search(r"completed: Moodle course \d+ \(linux-ws-2026-12, created from the template\)", said), said
    assert re.search(r"completed: Moodle course \d+ kept: MOODLE_DELETE_COURSE_ON_EVENT_DELETE is false", said), said


@pytest.mark.timeout(120)
def test_ctrl_c_stops_everything_and_frees_the_state_dir(kept: KeptDemo) -> None:
    worker = kept.worker_pid()
    kept.popen.send_signal(signal.SIGINT)
    assert kept.popen.wait(60) == 0, kept.output()
    assert "Stopped." in kept.output()
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)
    with (kept.state_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: the next demo may use the directory
