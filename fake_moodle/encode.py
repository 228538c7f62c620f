"""Answer bodies in Moodle's REST formats: PHP-style JSON (``\\/`` escaped) and Moodle's XML."""

from __future__ import annotations

import json
from html import escape as _html_escape
from typing import Any

from .errors import MoodleError
from .ws_site import XmlOnlyNull


def escape(text: str) -> str:
    """PHP's htmlspecialchars with ENT_COMPAT: double quotes escaped, single quotes kept."""
    return _html_escape(text, quote=False).replace('"', "&quot;")


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not isinstance(v, XmlOnlyNull)}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """Like PHP's json_encode: compact, ASCII-only, with slashes escaped."""
    return json.dumps(_strip(value), separators=(",", ":"), ensure_ascii=True).replace("/", "\\/")


def _xml(value: Any) -> str:
    if isinstance(value, dict):
        keys = "".join(f'<KEY name="{escape(k)}">{_xml(v)}</KEY>\n' for k, v in value.items())
        return f"<SINGLE>\n{keys}</SINGLE>\n"
    if isinstance(value, list):
        return "<MULTIPLE>\n" + "".join(_xml(v) for v in value) + "</MULTIPLE>\n"
    if value is None or isinstance(value, XmlOnlyNull):
        return '<VALUE null="null"/>\n'
    if isinstance(value, bool):
        value = int(value)
    return f"<VALUE>{escape(str(value))}</VALUE>\n"


XML_HEAD = '<?xml version="1.0" encoding="UTF-8" ?>\n'


def to_xml(value: Any) -> str:
    inner = "" if value is None else _xml(value)
    return f"{XML_HEAD}<RESPONSE>\n{inner}</RESPONSE>\n"


def error_json(error: MoodleError, debug: bool) -> str:
    return to_json(error.body(debug))


def error_xml(error: MoodleError, debug: bool) -> str:
    out = f'{XML_HEAD}<EXCEPTION class="{escape(error.exception)}">\n'
    out += f"<ERRORCODE>{escape(error.errorcode or '')}</ERRORCODE>\n"
    out += f"<MESSAGE>{escape(error.message)}</MESSAGE>\n"
    if debug and error.debuginfo is not None and error.errorcode is not None:
        out += f"<DEBUGINFO>{escape(error.debuginfo)}</DEBUGINFO>\n"
    return out + "</EXCEPTION>\n"
