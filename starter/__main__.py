"""``python -m starter``: see `starter.cli`."""

import sys

from starter.cli import main

if __name__ == "__main__":
    sys.exit(main())
