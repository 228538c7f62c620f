"""openvle-moodle-sync: keeps Moodle in step with OpenVLE events, on Temporal workflows.

The OpenVLE backend imports its API as ``from openvle_moodle_sync import starter``. Everything the
project installs lives under this one package, so it sits beside the backend's own modules."""
