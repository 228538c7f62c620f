"""Admission of deployments: a few at a time, first come first served, a smaller event let past the line.

The task queue shares the worker between every event that has work waiting (`fairness`): a
hundred events started at once each get a hundredth of it, and all finish near the end. Admitting only
``limit`` deployments at a time, in the order they were asked for, lets the first ones finish early
while the others wait their turn; the worker stays as busy, because the admitted ones keep it full.

"First come" is when the deployment was asked for (the caller's clock, `asked_at`), not when its request
reached the line: at a term start, a hundred entities' requests reach the line in about the order the
server's queues happen to deliver them, seconds apart, and the order of asking is what the operator saw.

An event smaller than every running one (by size class: participants within a factor of two are alike) is
admitted at once, past the line and past the limit: a workshop started beside a large import does not wait
for it. Events of a similar size keep their order.

`AdmissionLine` is plain state with no clock and no I/O, so it can live in a workflow (the one that admits,
signalled by each event's entity) as well as in a client (the benchmark's emulation). Its fields are
public data: a workflow that continues as new passes the line on as it is.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


def size_class(participants: int) -> int:
    """Events within a factor of two of each other are alike: 16-31 participants are class 5."""
    return max(participants, 1).bit_length()


@dataclass
class AdmissionLine:
    """Deployments admitted at most ``limit`` at a time (and smaller ones past them), the rest in line."""

    limit: int
    running: dict[str, int] = field(default_factory=dict)
    """Admitted event ids -> their size class, until they leave."""
    waiting: list[tuple[str, int, float]] = field(default_factory=list)
    """Event ids in line, first asked first, with their size class and when they were asked for."""

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"admission needs a limit of at least 1 deployment at a time, not {self.limit!r}")

    def arrive(self, event_id: str, participants: int, asked_at: float = 0.0) -> bool:
        """Ask for ``event_id``'s deployment, asked for at ``asked_at`` (epoch seconds): True when it may
        start now, False when it is in line, behind every event asked for before it (the event id comes
        back from a later `leave`). Asking again for an admitted or waiting event changes nothing."""
        if event_id in self.running:
            return True
        if any(e == event_id for e, _, _ in self.waiting):
            return False
        kind = size_class(participants)
        if (len(self.running) < self.limit and not self.waiting) or self._passes(kind):
            self.running[event_id] = kind
            return True
        bisect.insort(self.waiting, (event_id, kind, asked_at), key=lambda w: w[2])  # after those asked as early
        return False

    def leave(self, event_id: str) -> list[str]:
        """``event_id``'s deployment ended (or it left the line): the event ids admitted now, in order."""
        self.running.pop(event_id, None)
        self.waiting = [w for w in self.waiting if w[0] != event_id]
        admitted: list[str] = []
        while self.waiting and len(self.running) < self.limit:
            e, kind, _ = self.waiting.pop(0)
            self.running[e] = kind
            admitted.append(e)
        for waiting in list(self.waiting):  # smaller than everything running now: past the line
            e, kind, _ = waiting
            if self._passes(kind):
                self.waiting.remove(waiting)
                self.running[e] = kind
                admitted.append(e)
        return admitted

    def _passes(self, kind: int) -> bool:
        return bool(self.running) and kind < min(self.running.values())
