"""The OpenVLE backend's entry point to openvle-moodle-sync (see `starter.api`); the command line
``openvle-moodle-sync`` is the same for operators."""

from openvle_moodle_sync.activities.plan_types import EventPlan
from openvle_moodle_sync.lifecycle import LifeState, OperationKind, OperationState
from openvle_moodle_sync.models import Event, InputError, Participant
from openvle_moodle_sync.moodle.errors import MoodleError
from openvle_moodle_sync.settings import ConfigError

from .api import (
    EventArchived,
    EventBusy,
    EventDeleted,
    EventNotDeployed,
    EventStateError,
    OperationHandle,
    add_participant,
    archive_event,
    delete_event,
    deploy_event,
    get_progress,
    plan_event,
    remove_participant,
    rerun_deployment,
    search_courses,
)
from .progress import DeploymentNotFound, DeploymentProgress, ParticipantProgress, PendingActivity, RunFailure

__all__ = [
    "ConfigError",
    "DeploymentNotFound",
    "DeploymentProgress",
    "Event",
    "EventArchived",
    "EventBusy",
    "EventDeleted",
    "EventNotDeployed",
    "EventPlan",
    "EventStateError",
    "InputError",
    "LifeState",
    "MoodleError",
    "OperationHandle",
    "OperationKind",
    "OperationState",
    "Participant",
    "ParticipantProgress",
    "PendingActivity",
    "RunFailure",
    "add_participant",
    "archive_event",
    "delete_event",
    "deploy_event",
    "get_progress",
    "plan_event",
    "remove_participant",
    "rerun_deployment",
    "search_courses",
]
