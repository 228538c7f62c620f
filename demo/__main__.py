"""``python -m demo``: see the `demo` package."""

from demo.run import main
from temporal_client import exit_process

if __name__ == "__main__":
    exit_process(main())
