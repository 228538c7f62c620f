"""Moodle's ``validate_parameters``: external_value / single / multiple descriptions and their errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import MoodleError, invalid_parameter

REQUIRED, OPTIONAL, DEFAULT = "required", "optional", "default"

AUTH_PLUGINS = frozenset(
    {
        "manual",
        "nologin",
        "ldap",
        "oauth2",
        "email",
        "db",
        "cas",
        "shibboleth",
        "lti",
        "webservice",
        "mnet",
        "none",
    }
)


@dataclass(frozen=True)
class Value:
    type: str  # PARAM_* name without the prefix, lower case: int, bool, raw, text, alpha, username, auth, ...
    required: str = REQUIRED
    default: Any = None


@dataclass(frozen=True)
class Single:
    keys: dict[str, Value | Single | Multiple]
    required: str = REQUIRED
    default: Any = None


@dataclass(frozen=True)
class Multiple:
    content: Value | Single | Multiple
    required: str = REQUIRED
    default: Any = field(default=None)


_CLEANERS: dict[str, re.Pattern[str]] = {
    "alpha": re.compile(r"[^a-zA-Z]"),
    "alphaext": re.compile(r"[^a-zA-Z_-]"),
    "alphanumext": re.compile(r"[^a-zA-Z0-9_-]"),
    "safedir": re.compile(r"[^a-zA-Z0-9_-]"),
}
_PLUGIN = re.compile(r"^[a-z](?:[a-z0-9_](?!__))*[a-z0-9]+$|^[a-z]$")


def clean_username(value: str) -> str:
    return re.sub(r"[^-.@_a-z0-9]", "", value.strip().lower())


def _clean(value: str, ptype: str) -> Any:
    if ptype == "int":
        m = re.match(r"^\s*([+-]?\d+)", value)
        return str(int(m.group(1))) if m else "0"
    if ptype in _CLEANERS:
        return _CLEANERS[ptype].sub("", value)
    if ptype == "username":
        return clean_username(value)
    if ptype == "auth":
        return value if value in AUTH_PLUGINS else ""
    if ptype == "plugin":
        return value if _PLUGIN.match(value) else ""
    if ptype == "rawtrimmed":
        return value.strip()
    if ptype == "lang":
        return value if value == "en" else ""
    if ptype == "text":
        return re.sub(r"<[^>]*>", "", value)
    return value  # raw


def _value(desc: Value, param: Any) -> Any:
    if isinstance(param, dict | list):
        raise invalid_parameter("Scalar type expected, array or object received.")
    if desc.type == "bool" and param in (True, False, 0, 1, "0", "1"):
        return bool(int(param))
    text = param if isinstance(param, str) else str(int(param) if isinstance(param, bool) else param)
    debuginfo = (
        f'Invalid external api parameter: the value is "{text}", the server was expecting "{desc.type}" type'
    )
    if desc.type == "bool":
        raise invalid_parameter(debuginfo)
    cleaned = _clean(text, desc.type)
    if cleaned != text:
        raise invalid_parameter(debuginfo)
    return int(text) if desc.type == "int" else text


def _wrap(key: str, e: MoodleError) -> MoodleError:
    return invalid_parameter(f"{key} => {e.message}: {e.debuginfo}")


def validate(desc: Value | Single | Multiple, params: Any) -> Any:
    """Validate and clean ``params`` like Moodle's ``external_api::validate_parameters``."""
    if params is None:
        return None
    if isinstance(desc, Value):
        return _value(desc, params)
    if isinstance(desc, Single):
        if isinstance(params, list):
            params = {str(i): v for i, v in enumerate(params)}
        if not isinstance(params, dict):
            raise invalid_parameter(f"Only arrays accepted. The bad value is: '{params}'")
        rest = dict(params)
        result: dict[str, Any] = {}
        for key, sub in desc.keys.items():
            if key not in rest:
                if sub.required == REQUIRED:
                    raise invalid_parameter(f"Missing required key in single structure: {key}")
                if sub.required == DEFAULT:
                    try:
                        result[key] = validate(sub, sub.default)
                    except MoodleError as e:
                        raise _wrap(key, e) from None
                continue
            try:
                result[key] = validate(sub, rest.pop(key))
            except MoodleError as e:
                raise _wrap(key, e) from None
        if rest:
            raise invalid_parameter(f"Unexpected keys ({', '.join(rest)}) detected in parameter array.")
        return result
    if isinstance(params, dict):
        params = list(params.values())
    if not isinstance(params, list):
        raise invalid_parameter(f"Only arrays accepted. The bad value is: '{params}'")
    return [validate(desc.content, p) for p in params]
