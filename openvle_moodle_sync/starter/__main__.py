"""``python -m openvle_moodle_sync.starter`` (``python -m starter`` from the repository root): the CLI
of `openvle_moodle_sync.starter.cli`."""

from openvle_moodle_sync.starter.cli import main
from openvle_moodle_sync.temporal_client import exit_process


def cli() -> None:
    """The console script ``openvle-moodle-sync``."""
    exit_process(main())


if __name__ == "__main__":
    cli()
