"""The durable workflows: EventLife (one per event: orders every operation on it and keeps its state and
roster), and the operations it runs as children: DeployEvent (and DeployBatch, the child that carries a share
of a large deployment), ChangeParticipant, ArchiveEvent, DeleteEvent; and PlanEvent (what a deploy would do,
read-only, beside the event's life); DeployAdmission (one per task queue: deployments a few at a time, in
turn)."""

from .admission import DeployAdmission
from .archive import ArchiveEvent
from .batch import DeployBatch
from .change import ChangeParticipant
from .delete import DeleteEvent
from .deploy import DeployEvent
from .life import EventLife
from .plan import PlanEvent

ALL_WORKFLOWS = [EventLife, DeployEvent, DeployBatch, ChangeParticipant, ArchiveEvent, DeleteEvent, PlanEvent,
                 DeployAdmission]

__all__ = [
                 "ALL_WORKFLOWS",
                 "ArchiveEvent",
                 "ChangeParticipant",
                 "DeleteEvent",
                 "DeployAdmission",
                 "DeployBatch",
                 "DeployEvent",
                 "EventLife",
                 "PlanEvent",
]
