"""An in-memory simulator of Moodle 4.5's REST web services (the 14 functions OpenVLE sync uses)."""

from .app import FakeMoodle
from .faults import Call, Faults
from .model import Category, Course, EnrolmentInfo, Message, User

__all__ = ["Call", "Category", "Course", "EnrolmentInfo", "FakeMoodle", "Faults", "Message", "User"]
