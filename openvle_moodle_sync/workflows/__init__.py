"""The durable workflows: DeployEvent, ChangeParticipant, ArchiveEvent, DeleteEvent (and DeployBatch,
the child that carries a share of a large deployment)."""

from .archive import ArchiveEvent
from .batch import DeployBatch
from .change import ChangeParticipant
from .delete import DeleteEvent
from .deploy import DeployEvent

ALL_WORKFLOWS = [DeployEvent, DeployBatch, ChangeParticipant, ArchiveEvent, DeleteEvent]

__all__ = ["ALL_WORKFLOWS", "ArchiveEvent", "ChangeParticipant", "DeleteEvent", "DeployBatch", "DeployEvent"]
