"""``python -m demo``: see the `demo` package."""

from demo.run import main
from openvle_moodle_sync.temporal_client import exit_process

if __name__ == "__main__":
    exit_process(main())
