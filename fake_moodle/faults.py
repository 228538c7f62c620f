"""Fault injection settings and the log of served calls."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal


@dataclass
class Faults:
    """Mutable at run time; every field is read on each call.

    - ``latency_ms``: delay before each call is processed.
    - ``fail_rate``: fraction of calls answering as an outage (HTTP 503 or a dropped connection), before
      anything is applied.
    - ``outage``: ``"refuse"`` (connection refused / dropped) or ``"503"`` for every call, until set back
      to None.
    - ``lose_response_rate``: fraction of write calls that are applied and whose answer is then lost
      (dropped connection).
    - ``lose_next``: function name -> number of its next calls to apply and then lose.
    - ``token_valid``: False makes every token answer ``invalidtoken`` (a revoked token).
    - ``revoked_functions``: functions removed from the main token's service (``accessexception``).
    """

    latency_ms: float = 0.0
    fail_rate: float = 0.0
    outage: Literal["refuse", "503"] | None = None
    lose_response_rate: float = 0.0
    lose_next: dict[str, int] = field(default_factory=dict)
    token_valid: bool = True
    revoked_functions: set[str] = field(default_factory=set)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a JSON-style dict of changes (lists become sets where a set is expected)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        for name, value in changes.items():
            if name == "revoked_functions":
                value = set(value or ())
            elif name == "lose_next":
                value = {str(k): int(v) for k, v in (value or {}).items()}
            elif name in ("latency_ms", "fail_rate", "lose_response_rate"):
                value = float(value)
            elif name == "outage" and value not in (None, "refuse", "503"):
                raise ValueError(f"outage must be null, 'refuse' or '503', not {value!r}")
            elif name == "token_valid":
                value = bool(value)
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "fail_rate": self.fail_rate,
            "outage": self.outage,
            "lose_response_rate": self.lose_response_rate,
            "lose_next": dict(self.lose_next),
            "token_valid": self.token_valid,
            "revoked_functions": sorted(self.revoked_functions),
        }


@dataclass(frozen=True)
class Call:
    """One call received.

    ``ok`` is True when Moodle answered without an exception. ``lost`` is True when the call was applied
    and its answer then dropped. ``outage`` is ``"503"``, ``"refuse"`` or ``"drop"`` when the call was
    refused by an injected outage before reaching Moodle (then nothing was applied and ``ok`` is False).
    """

    function: str
    params: dict[str, Any]
    ok: bool
    errorcode: str | None
    lost: bool = False
    outage: str | None = None
