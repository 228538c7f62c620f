"""Moodle's REST protocol: how parameters become form fields and how answers are read.

Every call is ``POST /webservice/rest/server.php`` with ``wstoken``, ``wsfunction`` and
``moodlewsrestformat=json`` followed by the parameters in PHP form keys (``courses[0][fullname]=...``).
All values travel as strings; an empty list cannot be expressed, so it is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ENDPOINT_PATH = "/webservice/rest/server.php"
"""Moodle's REST endpoint, below the site root (MOODLE_URL)."""


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def encode_params(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Flatten nested parameters into PHP form keys, in order; ``None`` values are left out."""
    fields: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}[{key}]", item)
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            for index, item in enumerate(value):
                walk(f"{prefix}[{index}]", item)
        else:
            fields.append((prefix, _scalar(value)))

    for key, value in params.items():
        walk(key, value)
    return fields


def is_exception_body(body: Any) -> bool:
    """Moodle signals errors with HTTP 200 and a body holding ``exception``."""
    return isinstance(body, dict) and "exception" in body and ("message" in body or "errorcode" in body)
