"""The activities: all I/O of the workflows (Moodle calls, and reading an event's roster for a plan)."""

from .moodle_sync import MoodleSyncActivities

__all__ = ["MoodleSyncActivities"]
