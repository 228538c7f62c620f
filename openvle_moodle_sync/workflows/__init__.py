"""The durable workflows: DeployEvent, ChangeParticipant, ArchiveEvent, DeleteEvent (and DeployBatch,
the child that carries a share of a large deployment), EventRoster (whom the service enrolled for an
event) and PlanEvent (what a deploy would do, read-only)."""

from .archive import ArchiveEvent
from .batch import DeployBatch
from .change import ChangeParticipant
from .delete import DeleteEvent
from .deploy import DeployEvent
from .plan import PlanEvent
from .roster import EventRoster

ALL_WORKFLOWS = [DeployEvent, DeployBatch, ChangeParticipant, ArchiveEvent, DeleteEvent, EventRoster, PlanEvent]

__all__ = ["ALL_WORKFLOWS", "ArchiveEvent", "ChangeParticipant", "DeleteEvent", "DeployBatch", "DeployEvent",
           "EventRoster", "PlanEvent"]
