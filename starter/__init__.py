"""``import starter`` from the repository root: the backend's API, `openvle_moodle_sync.starter`.

Installed with pip, import it as ``from openvle_moodle_sync import starter``."""

from openvle_moodle_sync.starter import *  # noqa: F403
from openvle_moodle_sync.starter import __all__  # noqa: F401
