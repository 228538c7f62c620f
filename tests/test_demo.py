"""``make demo`` end to end: the dev server, the simulator and the worker as real processes, eight steps."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("Plan the deployment (reads only)", "Deploy the event", "Add a participant", "Remove a participant",
         "Deploy the current list again (converge)", "Archive the event", "Delete the event (default settings)",
         "Delete the event (course deletion on)")


@pytest.mark.timeout(120)
def test_demo_runs_every_step(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOODLE_", "TEMPORAL_", "PAYLOAD_"))}
    env["COLUMNS"] = "200"
    # A short simulator latency keeps the test quick, and its own state directory keeps it apart from a
    # demo someone is running; everything else is what `make demo` runs (on a fresh machine: no database).
    result = subprocess.run([sys.executable, "-m", "demo", "--latency-ms", "20", "--state-dir", str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=100)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert f"Demo result: {len(STEPS)}/{len(STEPS)} steps done." in out, out
    for number, title in enumerate(STEPS, 1):
        assert re.search(rf"│ +{number} │ {re.escape(title)} +│.*│ ✓ done +│", out), (title, out)
        assert re.search(rf"Step {number}/{len(STEPS)} · {re.escape(title)}", out), (title, out)
    assert "Moodle course 3 kept: MOODLE_DELETE_COURSE_ON_EVENT_DELETE is false" in out
    assert "Moodle course 3 deleted" in out
    assert "/namespaces/default/workflows?query=OpenVLEEventId%3D%22demo-" in out
    assert "Stopped." in out
    # The plan wrote nothing; the converging deploy took the two dropped students away.
    assert "This plan wrote nothing to Moodle and sent no mail." in out
    assert "2 no longer listed taken away (unenrol)" in re.sub(r"\s+", " ", out)
    # The mail summary after the deployment and the sentence under it tell the same story (issue 11.8).
    deployed = out.split(f"Step 2/{len(STEPS)}")[1].split(f"Step 3/{len(STEPS)}")[0]
    counted = re.search(r"(\d+) 'welcome to course' mails \((\d+) to teachers, 0 to students\)", deployed)
    assert counted, deployed
    welcome = int(counted.group(1))
    assert welcome == int(counted.group(2))
    said = re.sub(r"\s+", " ", deployed)
    if welcome:
        assert f"The {welcome} 'welcome to course' mail" in said and "went to instructors" in said, said
    assert "Nobody got a 'welcome to course' mail" not in said or welcome == 0, said
    assert {"temporal.db", "worker.log", "event.json"} <= {p.name for p in tmp_path.iterdir()}
