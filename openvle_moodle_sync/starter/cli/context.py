"""What every command of the CLI shares: its exit codes, the error it reports, its settings and client
(loaded on first use) and the reading of its JSON input."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text
from temporalio.client import Client
from temporalio.service import RPCError

from openvle_moodle_sync.models import InputError
from openvle_moodle_sync.names import CLI
from openvle_moodle_sync.settings import ConfigError, Settings, load_settings
from openvle_moodle_sync.temporal_client import NamespaceNotFoundError, connect, connection_failure
from openvle_moodle_sync.temporal_config import resolve

from ..temporal_errors import SCHEME_WARNING, explain, is_namespace_not_found, is_unreachable, scheme_fix

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
NOTHING_STARTED = "Nothing was started."
"""Said after an error that stopped a command before it started any run."""


class CliError(Exception):
    """A problem the command reports as one message and an exit code. ``next_step`` is what to do, on its
    own: ``--json`` prints it beside the message, the words after it (``Next:``) unless the message says it."""

    def __init__(self, message: str, code: int = EXIT_FAILED, *, next_step: str | None = None) -> None:
        super().__init__(message)
        self.code, self.next_step = code, next_step

    def as_json(self) -> str:
        """The error as a ``--json`` command prints it."""
        return json_error(str(self), self.next_step)


def json_error(message: str, next_step: str | None) -> str:
    """``{"error": …, "next_step": …}``: every error of a ``--json`` command."""
    return json.dumps({"error": message, "next_step": next_step}, ensure_ascii=False, indent=2)


WORKER_SETTINGS_NOTE = ("The worker uses its own MOODLE_* settings (where it runs); check them there with: "
                        f"{CLI} doctor")

SETTINGS_FIX = "fix the variables named above in the environment or .env"
CONNECTION_FIX = ("start the server, or set how to reach it: TEMPORAL_ADDRESS, TEMPORAL_TLS*, TEMPORAL_API_KEY, "
                  "or a profile (TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE)")
NAMESPACE_FIX = "set TEMPORAL_NAMESPACE to the namespace the worker uses (temporal operator namespace list)"


class Context:
    """What a command needs; tests inject `settings` and `client`, the CLI loads them on first use.

    ``uses_moodle`` is False for the commands that only talk to Temporal: for them this shell's MOODLE_*
    settings are not checked (the worker has its own), so a typo there never blocks `deploy` or `progress`.
    ``starts`` is False for the commands that only read: their errors do not add "Nothing was started."."""

    def __init__(self, out: Console, err: Console, settings: Settings | None = None,
                 client: Client | None = None, *, uses_moodle: bool = True, starts: bool = True) -> None:
        self.out, self.err = out, err
        self._settings, self._client = settings, client
        self.uses_moodle, self.starts = uses_moodle, starts

    def failed(self, message: str, code: int = EXIT_FAILED, *, next_step: str | None = None) -> CliError:
        """The command could not begin: ``message``, and for a command that starts a run, that none was."""
        return CliError(f"{message}\n{NOTHING_STARTED}" if self.starts else message, code, next_step=next_step)

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._load_settings()
        return self._settings

    def _load_settings(self) -> Settings:
        try:
            return load_settings()
        except ConfigError as error:
            if self.uses_moodle:
                raise self.failed(str(error), next_step=SETTINGS_FIX) from None
            full_error = error
        try:
            settings = load_settings(**MOODLE_DEFAULTS)
        except ConfigError as error:
            raise self.failed(str(error), next_step=SETTINGS_FIX) from None
        self.err.print(Text(f"Note: this shell's MOODLE_* settings have problems; this command does not use them.\n"
                            f"{str(full_error).split(chr(10), 1)[-1]}\n{WORKER_SETTINGS_NOTE}.", style="yellow"))
        return settings

    async def client(self) -> Client:
        if self._client is None:
            settings = self.settings()
            connection = resolve(settings)
            if "://" in connection.address:
                raise self.failed(scheme_fix(connection.address), next_step=CONNECTION_FIX)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    client = await connect(settings)
                except NamespaceNotFoundError as error:
                    raise self.failed(str(error), next_step=NAMESPACE_FIX) from None
                except ConnectionError as error:  # connect() words it, with the connection's settings
                    raise self.failed(str(error), next_step=CONNECTION_FIX) from None
                except OSError as error:  # the system refused something first (a file, a socket)
                    raise self.failed(connection_failure(connection, error), next_step=CONNECTION_FIX) from None
            if any(SCHEME_WARNING in str(w.message) for w in caught):
                raise self.failed(scheme_fix(connection.address), next_step=CONNECTION_FIX)
            self._client = client
        return self._client

    def temporal_error(self, error: RPCError) -> CliError:
        """An error of Temporal during the command, in words."""
        connection = resolve(self.settings())
        step = NAMESPACE_FIX if is_namespace_not_found(error) else CONNECTION_FIX if is_unreachable(error) else None
        return CliError(explain(error, address=connection.address, namespace=connection.namespace), next_step=step)


#: The MOODLE_* settings at their defaults: what a Temporal-only command loads instead of this shell's.
MOODLE_DEFAULTS: dict[str, Any] = {
    name: info.default for name, info in Settings.model_fields.items() if name.startswith("moodle_")
}


# --- Input -------------------------------------------------------------------------------------------


def read_json(path: str, what: str) -> Any:
    """The JSON in ``path`` (or stdin for ``-``); a `CliError` (exit 2) that says what is wrong otherwise."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise CliError(f"Cannot read the {what} file {path}: {reason}. {NOTHING_STARTED}", EXIT_USAGE) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f"The {what} file {path} is not valid JSON: {error.msg} at line {error.lineno}, "
                       f"column {error.colno}. {NOTHING_STARTED}", EXIT_USAGE) from None
    if not isinstance(value, dict):
        raise CliError(f"The {what} file {path} must hold one JSON object ({{...}}), not a "
                       f"{type(value).__name__}. {NOTHING_STARTED}", EXIT_USAGE)
    return value


def valid(parse: Callable[[Any], Any], data: Any) -> Any:
    """``parse(data)``; a bad input is a `CliError` (exit 2) naming the field, and nothing starts."""
    try:
        return parse(data)
    except InputError as error:
        raise input_error(error) from None


def input_error(error: InputError) -> CliError:
    """A bad event or participant: exit 2, nothing started."""
    return CliError(f"{error}\n{NOTHING_STARTED}", EXIT_USAGE,
                    next_step="correct the field named in the message, then give the command again")

