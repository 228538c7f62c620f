"""The installed commands, as every hint and next step names them (`pyproject.toml`, [project.scripts]).

``python -m starter`` and ``python worker.py`` are the repository's aliases of the first two; words meant
for operators use the installed names, which work wherever the package is installed."""

from __future__ import annotations

CLI = "openvle-moodle-sync"
"""The operators' command line (`openvle_moodle_sync.starter.cli`)."""

WORKER = "openvle-moodle-sync-worker"
"""The worker (`openvle_moodle_sync.worker`)."""

CODEC_SERVER = "openvle-moodle-sync-codec-server"
"""The codec server the Temporal Web UI calls (`openvle_moodle_sync.codec_server`)."""
