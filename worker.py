"""``python worker.py`` from the repository root: the worker of `openvle_moodle_sync.worker`.

Installed, the same worker is ``python -m openvle_moodle_sync.worker`` or ``openvle-moodle-sync-worker``."""

from openvle_moodle_sync.worker import cli

if __name__ == "__main__":
    cli()
