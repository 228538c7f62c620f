"""``openvle-moodle-sync``: the operators' command line over `starter.api` (see docs/backend-api.md,
"Command line").

    openvle-moodle-sync deploy   --event EVENT.json [--wait] [--allow-mass-removal]
    openvle-moodle-sync add      --event EVENT.json --participant PARTICIPANT.json [--wait]
    openvle-moodle-sync remove   --event EVENT.json --participant PARTICIPANT.json [--wait]
    openvle-moodle-sync archive  --event EVENT.json [--wait]
    openvle-moodle-sync delete   --event EVENT.json [--wait]
    openvle-moodle-sync progress --event-id ID [--json]
    openvle-moodle-sync rerun    --event-id ID [--wait]
    openvle-moodle-sync courses  [--search TEXT] [--json]
    openvle-moodle-sync plan     --event EVENT.json [--json]
    openvle-moodle-sync doctor

Exit codes: 0 success; 1 the workflow failed (or `progress` shows a run that ended badly), a setting is
wrong, or Temporal/Moodle could not be reached; 2 bad input or usage (nothing was started). Input is
validated before anything starts. No Temporal or settings error ends in a traceback: each is said in
words with its fix (`temporal_errors`).

Each command checks only the settings it uses: the commands that start or read workflows need the
TEMPORAL_* ones (the worker uses its own MOODLE_* settings), `courses` and `doctor` the MOODLE_* ones too.

The modules: `commands` (the arguments and each command), `render` (progress bar, results, tables),
`doctor` (its checks), `context` (exit codes, errors, settings and client, input).
"""

from openvle_moodle_sync.temporal_client import task_queue_pollers

from .commands import build_parser, main, run
from .context import EXIT_FAILED, EXIT_OK, EXIT_USAGE, NOTHING_STARTED, CliError
from .render import describe_result, failure_message, watch_deployment

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "NOTHING_STARTED",
    "CliError",
    "build_parser",
    "describe_result",
    "failure_message",
    "main",
    "run",
    "task_queue_pollers",
    "watch_deployment",
]
