"""The activities: all I/O of the workflows (Moodle calls, and watching a deployment)."""

from .deployment_watch import DeploymentWatch
from .moodle_sync import MoodleSyncActivities

__all__ = ["DeploymentWatch", "MoodleSyncActivities"]
