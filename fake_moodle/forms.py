"""PHP-style form keys (``a[0][b]=x``) parsed into nested dicts and lists, as PHP's ``$_POST`` does."""

from __future__ import annotations

import re
from typing import Any

_KEY = re.compile(r"^([^\[]*)((?:\[[^\]]*\])*)$")
_PART = re.compile(r"\[([^\]]*)\]")


def parse_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Parse decoded form pairs into nested containers.

    Containers whose keys are all integers become lists (in insertion order, as PHP iterates arrays);
    the others stay dicts. A later value for the same key replaces the earlier one, as in PHP.
    """
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        m = _KEY.match(raw_key)
        if not m or not m.group(1):
            root[raw_key] = value
            continue
        path = [m.group(1), *_PART.findall(m.group(2))]
        node: dict[str, Any] = root
        for i, part in enumerate(path):
            if part == "":
                part = str(_next_index(node))
            last = i == len(path) - 1
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return _listify(root)  # type: ignore[return-value]


def _next_index(node: dict[str, Any]) -> int:
    ints = [int(k) for k in node if _is_int(k)]
    return max(ints) + 1 if ints else 0


def _is_int(key: str) -> bool:
    return key == "0" or (key[:1] != "0" and key.lstrip("-").isdigit())


def _listify(node: Any, top: bool = True) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, False) for k, v in node.items()}
    if not top and converted and all(_is_int(k) for k in converted):
        return list(converted.values())
    return converted
