"""The OpenVLE backend's entry point to openvle-moodle-sync (see `starter.api`); ``python -m starter``
is the same for operators."""

from .api import (
    DeploymentNotFound,
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

__all__ = [
    "DeploymentNotFound",
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
