"""The mass-removal brake at its edges: exactly the percentage, and exactly the count always allowed, pass."""

from __future__ import annotations

from openvle_moodle_sync.activities.brake import ALWAYS_ALLOWED, brake_holds


def test_exactly_the_limit_passes_one_more_holds() -> None:
    assert not brake_holds(3, 12, 25.0)  # 25% of 12 with MOODLE_MAX_REMOVAL_PERCENT=25: allowed
    assert brake_holds(4, 12, 25.0)  # 33%
    assert not brake_holds(5, 10, 50.0) and brake_holds(6, 10, 50.0)
    assert not brake_holds(0, 0, 0.0)


def test_always_allowed_count_passes_whatever_the_percentage() -> None:
    assert not brake_holds(ALWAYS_ALLOWED, ALWAYS_ALLOWED, 0.0)  # a small course may be emptied
    assert brake_holds(ALWAYS_ALLOWED + 1, ALWAYS_ALLOWED + 1, 99.0)
    assert not brake_holds(ALWAYS_ALLOWED + 1, ALWAYS_ALLOWED + 1, 100.0)
