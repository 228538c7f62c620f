"""``python -m starter``: see `starter.cli`."""

from starter.cli import main
from temporal_client import exit_process

if __name__ == "__main__":
    exit_process(main())
