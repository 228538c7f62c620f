"""``python -m starter`` from the repository root: the operators' CLI, `openvle_moodle_sync.starter.cli`.

Installed, the same CLI is ``python -m openvle_moodle_sync.starter`` or ``openvle-moodle-sync``."""

from openvle_moodle_sync.starter.__main__ import cli

if __name__ == "__main__":
    cli()
