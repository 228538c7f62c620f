"""The simulated site's state, with the indexes that keep look-ups O(1), and undo-able mutations."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .model import EDITING_TEACHER, Category, Course, Enrolment, EnrolmentInfo, Message, User


class Site:
    """Courses, users, categories and enrolments of one simulated Moodle site.

    Mutations go through methods that keep the indexes right and, inside ``transaction()``, log how to
    undo themselves, so that a batch call that fails half-way leaves nothing applied (as Moodle's
    delegated transactions do).
    """

    def __init__(
        self,
        *,
        site_name: str = "Lab",
        site_shortname: str = "lab",
        site_url: str = "http://moodle.test",
        template_shortname: str = "tpl-demo",
        template_fullname: str = "Demo Template",
        template_summary: str = "Template course for the demo",
    ) -> None:
        self.site_name = site_name
        self.site_url = site_url
        self.categories: dict[int, Category] = {}
        self.courses: dict[int, Course] = {}
        self.users: dict[int, User] = {}
        self.enrolments: dict[int, dict[int, Enrolment]] = {}  # course id -> user id -> enrolment
        self.messages: list[Message] = []
        self.next_course_id = 1
        self.next_user_id = 1
        self._seq = 0
        self._course_by_shortname: dict[str, int] = {}
        self._course_by_idnumber: dict[str, int] = {}
        self._user_by_username: dict[str, int] = {}
        self._users_by_email: dict[str, set[int]] = {}  # exact address
        self._users_by_email_ci: dict[str, set[int]] = {}  # lower-cased address
        self._users_by_idnumber: dict[str, set[int]] = {}
        self._user_courses: dict[int, set[int]] = {}
        self._teachers: dict[int, set[int]] = {}  # course id -> users holding role 3
        # Role assignments of people not enrolled (core_role_assign_roles allows them; they are not listed).
        self.stray_roles: dict[tuple[int, int], set[int]] = {}  # (course id, user id) -> role ids
        # A course grade per (course id, user id): Moodle deletes it when the enrolment goes (grade_user_unenrol).
        self.grades: dict[tuple[int, int], float] = {}
        self.next_ue_id = 1
        self._undo: list[Callable[[], None]] | None = None
        now = self.now()
        self.categories[1] = Category(1, "Category 1", None, sortorder=10000, timemodified=now)
        self.categories[2] = Category(
            2,
            "Templates",
            "templates",
            "Template courses for OpenVLE sync tests",
            sortorder=20000,
            timemodified=now,
        )
        self.add_course(
            Course(
                1,
                site_shortname,
                site_name,
                0,
                summaryformat=0,
                format="site",
                newsitems=3,
                numsections=1,
                enablecompletion=0,
                timecreated=now,
                timemodified=now,
                manual_enrol=False,
            )
        )
        self.add_course(
            Course(
                2,
                template_shortname,
                template_fullname,
                2,
                idnumber=template_shortname,
                summary=template_summary,
                numsections=4,
                timecreated=now,
                timemodified=now,
            )
        )
        self.template_course_id = 2
        guest_text = "This user is a special user that allows read-only access to some courses."
        self.add_user(
            User(1, "guest", "Guest user", " ", "root@localhost", description=guest_text, timecreated=now)
        )
        self.add_user(User(2, "admin", "Admin", "User", "admin@lab.example.com", timecreated=now))

    # -- time and transactions ---------------------------------------------------------------------

    @staticmethod
    def now() -> int:
        return int(time.time())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: on an exception, undo every mutation made inside the block."""
        outer = self._undo
        self._undo = []
        try:
            yield
        except BaseException:
            log, self._undo = self._undo or [], None
            for undo in reversed(log):
                undo()
            raise
        finally:
            log = self._undo or []
            self._undo = outer
        if outer is not None:
            outer.extend(log)

    def _log(self, undo: Callable[[], None]) -> None:
        if self._undo is not None:
            self._undo.append(undo)

    # -- look-ups ----------------------------------------------------------------------------------

    def course_by_shortname(self, shortname: str) -> Course | None:
        cid = self._course_by_shortname.get(shortname)
        return self.courses[cid] if cid is not None else None

    def course_by_idnumber(self, idnumber: str) -> Course | None:
        cid = self._course_by_idnumber.get(idnumber)
        return self.courses[cid] if cid is not None else None

    def user_by_username(self, username: str) -> User | None:
        uid = self._user_by_username.get(username)
        return self.users[uid] if uid is not None else None

    def users_by_email(self, email: str) -> list[User]:
        return [self.users[i] for i in sorted(self._users_by_email.get(email, ()))]

    def email_taken_ci(self, email: str) -> bool:
        return bool(self._users_by_email_ci.get(email.lower()))

    def users_by_idnumber(self, idnumber: str) -> list[User]:
        return [self.users[i] for i in sorted(self._users_by_idnumber.get(idnumber, ()))]

    def enrolled(self, course_id: int) -> dict[int, EnrolmentInfo]:
        return {
            uid: EnrolmentInfo(set(e.roles), e.suspended)
            for uid, e in self.enrolments.get(course_id, {}).items()
        }

    def user_course_ids(self, user_id: int) -> set[int]:
        return self._user_courses.get(user_id, set())

    def teacher_ids(self, course_id: int) -> set[int]:
        return self._teachers.get(course_id, set())

    def course_count(self, category_id: int) -> int:
        return sum(1 for c in self.courses.values() if c.category_id == category_id)

    def sortorder(self, course: Course) -> int:
        """Newer courses sort first inside a category, as Moodle's fix_course_sortorder leaves them."""
        if course.is_site:
            return 1
        cat = self.categories.get(course.category_id)
        base = cat.sortorder if cat else 0
        return base + max(1, 9999 - course.seq)

    # -- mutations ---------------------------------------------------------------------------------

    def add_course(self, course: Course) -> Course:
        self._seq += 1
        course.seq = self._seq
        self.courses[course.id] = course
        self.next_course_id = max(self.next_course_id, course.id + 1)
        self._course_by_shortname[course.shortname] = course.id
        if course.idnumber:
            self._course_by_idnumber[course.idnumber] = course.id
        self._log(lambda: self.remove_course(course.id))
        return course

    def remove_course(self, course_id: int) -> None:
        course = self.courses.pop(course_id)
        self._course_by_shortname.pop(course.shortname, None)
        if course.idnumber:
            self._course_by_idnumber.pop(course.idnumber, None)
        for user_id in list(self.enrolments.get(course_id, {})):
            self.unenrol(course_id, user_id)
        self.enrolments.pop(course_id, None)
        self._teachers.pop(course_id, None)

    def set_course_field(self, course: Course, name: str, value: object) -> None:
        old = getattr(course, name)
        if old == value:
            return
        if name == "shortname":
            if self._course_by_shortname.get(old) == course.id:
                del self._course_by_shortname[old]
            self._course_by_shortname[str(value)] = course.id
        elif name == "idnumber":
            if old and self._course_by_idnumber.get(old) == course.id:
                del self._course_by_idnumber[old]
            if value:
                self._course_by_idnumber[str(value)] = course.id
        setattr(course, name, value)
        self._log(lambda: self.set_course_field(course, name, old))

    def add_user(self, user: User) -> User:
        self.users[user.id] = user
        self.next_user_id = max(self.next_user_id, user.id + 1)
        self._user_by_username[user.username] = user.id
        self._users_by_email.setdefault(user.email, set()).add(user.id)
        self._users_by_email_ci.setdefault(user.email.lower(), set()).add(user.id)
        if user.idnumber:
            self._users_by_idnumber.setdefault(user.idnumber, set()).add(user.id)
        self._log(lambda: self.remove_user(user.id))
        return user

    def remove_user(self, user_id: int) -> None:
        user = self.users.pop(user_id)
        self._user_by_username.pop(user.username, None)
        self._users_by_email.get(user.email, set()).discard(user_id)
        self._users_by_email_ci.get(user.email.lower(), set()).discard(user_id)
        self._users_by_idnumber.get(user.idnumber, set()).discard(user_id)
        for course_id in list(self._user_courses.get(user_id, ())):
            self.unenrol(course_id, user_id)

    def enrol(
        self, course_id: int, user_id: int, role_id: int, *, suspended: bool, timestart: int, timeend: int
    ) -> None:
        """Create or update the enrolment (status and times are set on every call) and add the role."""
        course_enrolments = self.enrolments.setdefault(course_id, {})
        enrolment = course_enrolments.get(user_id)
        if enrolment is None:
            enrolment = Enrolment(user_id, course_id, id=self.next_ue_id)
            self.next_ue_id += 1
            enrolment.roles |= self.stray_roles.pop((course_id, user_id), set())
            course_enrolments[user_id] = enrolment
            self._user_courses.setdefault(user_id, set()).add(course_id)
            self._log(lambda: self.unenrol(course_id, user_id))
        else:
            self._remember(enrolment)
        enrolment.suspended = suspended
        enrolment.timestart = timestart
        enrolment.timeend = timeend
        enrolment.roles.add(role_id)
        if EDITING_TEACHER in enrolment.roles:
            self._teachers.setdefault(course_id, set()).add(user_id)

    def enrolment_by_id(self, ue_id: int) -> Enrolment | None:
        for course_enrolments in self.enrolments.values():
            for enrolment in course_enrolments.values():
                if enrolment.id == ue_id:
                    return enrolment
        return None

    def assign_role(self, course_id: int, user_id: int, role_id: int) -> None:
        """Give a role in the course (idempotent). Someone not enrolled holds it without being listed."""
        enrolment = self.enrolments.get(course_id, {}).get(user_id)
        if enrolment is None:
            self.stray_roles.setdefault((course_id, user_id), set()).add(role_id)
            return
        self._remember(enrolment)
        enrolment.roles.add(role_id)
        if role_id == EDITING_TEACHER:
            self._teachers.setdefault(course_id, set()).add(user_id)

    def unassign_role(self, course_id: int, user_id: int, role_id: int) -> None:
        """Take a role away (idempotent); the enrolment stays."""
        enrolment = self.enrolments.get(course_id, {}).get(user_id)
        if enrolment is None:
            self.stray_roles.get((course_id, user_id), set()).discard(role_id)
            return
        self._remember(enrolment)
        enrolment.roles.discard(role_id)
        if role_id == EDITING_TEACHER:
            self._teachers.get(course_id, set()).discard(user_id)

    def _remember(self, enrolment: Enrolment) -> None:
        """Log how to undo the changes about to be made to the enrolment (its roles, status and times)."""
        before = (set(enrolment.roles), enrolment.suspended, enrolment.timestart, enrolment.timeend)
        self._log(lambda: self._restore(enrolment, *before))

    def _restore(self, enrolment: Enrolment, roles: set[int], suspended: bool, start: int, end: int) -> None:
        enrolment.roles = roles
        enrolment.suspended = suspended
        enrolment.timestart = start
        enrolment.timeend = end
        teachers = self._teachers.setdefault(enrolment.course_id, set())
        if EDITING_TEACHER in roles:
            teachers.add(enrolment.user_id)
        else:
            teachers.discard(enrolment.user_id)

    def unenrol(self, course_id: int, user_id: int) -> None:
        """Remove the enrolment and every role the user holds in the course (idempotent)."""
        enrolment = self.enrolments.get(course_id, {}).pop(user_id, None)
        if enrolment is None:
            return
        self._user_courses.get(user_id, set()).discard(course_id)
        self._teachers.get(course_id, set()).discard(user_id)
        grade = self.grades.pop((course_id, user_id), None)

        def undo() -> None:
            if grade is not None:
                self.grades[(course_id, user_id)] = grade
            self.enrolments.setdefault(course_id, {})[user_id] = enrolment
            self._user_courses.setdefault(user_id, set()).add(course_id)
            if EDITING_TEACHER in enrolment.roles:
                self._teachers.setdefault(course_id, set()).add(user_id)

        self._log(undo)

    def send(self, message: Message) -> None:
        """A message through Moodle's message API, which holds it until the transaction commits (a call
        that fails mails nothing: the enrolment welcome)."""
        self.messages.append(message)
        self._log(lambda: self.messages.remove(message))

    def mail_now(self, message: Message) -> None:
        """A mail sent at once with email_to_user (the new account's password): a call that fails later and
        rolls the account back has mailed it all the same, as Moodle 4.5 does."""
        self.messages.append(message)
