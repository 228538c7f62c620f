"""An async, typed client for the Moodle web-service functions this service uses (the guide's 14, and
the optional role functions).

One `MoodleClient` wraps one shared `httpx.AsyncClient` (connection pool sized to the worker's
concurrency); calls wait for a connection in priority order (`gate`). It makes exactly one HTTP request
per call: retries belong to the workflow engine.
The token is sent only in the POST body, never in a URL, a log line or an error.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Self, TypedDict, cast
from urllib.parse import urlencode

import httpx

from .coalesce import (
    ASSIGN_ROLES,
    CREATE_USERS,
    ENROL_USERS,
    GET_USERS_BY_FIELD,
    IDLE_WINDOW_S,
    LINGER_S,
    QUIET_S,
    SENDING_PER_LANE,
    UNASSIGN_ROLES,
    UNENROL_USERS,
    Coalescer,
)
from .errors import (
    MoodleConnectionError,
    MoodleResponseError,
    MoodleTimeoutError,
    MoodleWarning,
    api_error_from_body,
    redact,
)
from .gate import PriorityGate
from .protocol import ENDPOINT_PATH, encode_params, is_exception_body


def redact_body(body: dict[str, Any], token: str) -> dict[str, Any]:
    """An exception body with the token scrubbed from every text Moodle might echo it in."""
    return {k: redact(v, [token]) if isinstance(v, str) else v for k, v in body.items()}

log = logging.getLogger("moodle.client")

_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


FORM_FIELDS_PER_CALL = 900
"""PHP drops the form fields of a request past its max_input_vars (1,000 by default), silently: a call stays
below that, with the token, the function and the format besides."""


class Course(TypedDict, total=False):
    id: int
    shortname: str
    fullname: str
    displayname: str
    idnumber: str
    categoryid: int
    visible: int
    summary: str
    timecreated: int
    format: str


class Category(TypedDict, total=False):
    id: int
    name: str
    idnumber: str | None
    parent: int
    coursecount: int
    visible: int


class User(TypedDict, total=False):
    id: int
    username: str
    firstname: str
    lastname: str
    fullname: str
    email: str
    auth: str
    suspended: bool
    idnumber: str


class RoleRef(TypedDict, total=False):
    roleid: int
    shortname: str


class EnrolledUser(TypedDict, total=False):
    id: int
    username: str
    fullname: str
    email: str
    roles: list[RoleRef]


class SiteInfo(TypedDict, total=False):
    sitename: str
    username: str
    userid: int
    siteurl: str
    release: str
    version: str
    functions: list[dict[str, str]]


class CourseSearchResult(TypedDict):
    total: int
    courses: list[Course]
    warnings: list[dict[str, Any]]


class NewCourse(TypedDict, total=False):
    fullname: str
    shortname: str
    categoryid: int
    idnumber: str
    summary: str
    visible: int


class NewUser(TypedDict, total=False):
    username: str
    firstname: str
    lastname: str
    email: str
    auth: str
    password: str
    createpassword: int
    idnumber: str


class Enrolment(TypedDict, total=False):
    roleid: int
    userid: int
    courseid: int
    timestart: int
    timeend: int
    suspend: int


class RoleAssignment(TypedDict):
    roleid: int
    userid: int
    instanceid: int
    """The course id (the assignments this service makes are all at course level)."""


class MoodleClient:
    """Moodle's REST web services, one method per function.

    ``MoodleClient("https://moodle.example.com", token)``; use as ``async with`` or call `aclose`.
    Pass ``http`` to share a pool, or ``transport`` to plug in a test transport (the simulator in-process).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        verify_ssl: bool = True,
        max_connections: int = 20,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._own_http = http is None
        # Calls wait here, highest priority first, rather than in the pool's first-come queue (see gate).
        self._gate = PriorityGate(max_connections)
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            verify=verify_ssl,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Accept": "application/json"},
            transport=transport,
        )
        self._coalescer: Coalescer | None = None

    def __repr__(self) -> str:  # never shows the token
        return f"MoodleClient(url={self.url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    @property
    def endpoint(self) -> str:
        return self.url + ENDPOINT_PATH

    # --- the protocol ----------------------------------------------------------------------------------

    async def call(self, function: str, params: Mapping[str, Any] | None = None, *,
                   timeout: float | None = None) -> Any:
        """Call one web-service function and return Moodle's decoded JSON answer (may be ``None``).

        Waits for a connection in priority order (`gate`). Raises a `MoodleError` subclass; its message
        never holds the token.
        """
        async with self._gate.hold():
            return await self.send(function, params, timeout=timeout)

    async def send(self, function: str, params: Mapping[str, Any] | None = None, *,
                   timeout: float | None = None) -> Any:
        """`call` for a caller that holds a place of the client's gate already (the coalescer)."""
        form = [("wstoken", self._token), ("wsfunction", function), ("moodlewsrestformat", "json")]
        form += encode_params(params or {})
        try:
            started = time.perf_counter()
            response = await self._http.post(
                self.endpoint,
                content=urlencode(form),
                headers=_FORM,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            elapsed_ms = (time.perf_counter() - started) * 1000
        except httpx.TimeoutException as error:
            raise MoodleTimeoutError(
                self.url, f"no answer within {timeout or self._timeout:g} s ({type(error).__name__})",
                function=function,
            ) from None
        except httpx.TransportError as error:
            reason = self._redact(str(error)) or type(error).__name__
            raise MoodleConnectionError(self.url, reason, function=function) from None
        body = self._decode(response, function)
        if is_exception_body(body):
            api_error = api_error_from_body(redact_body(body, self._token), function=function)
            log.debug("moodle %s failed in %.0f ms: %s", function, elapsed_ms, api_error.errorcode)
            raise api_error
        log.debug("moodle %s ok in %.0f ms", function, elapsed_ms)
        return body

    def coalescing(self, batch_size: int, *, window_s: float = IDLE_WINDOW_S, sending_per_lane: int = SENDING_PER_LANE,
                   quiet_s: float = QUIET_S, linger_s: float = LINGER_S) -> MoodleClient:
        """A client on the same connections and gate whose per-item writes and user look-ups made at about
        the same moment go to Moodle as shared calls of at most ``batch_size`` items (`coalesce`)."""
        twin = copy.copy(self)
        twin._own_http = False
        twin._coalescer = Coalescer(self.send, self._gate, batch_size, window_s=window_s,
                                    sending_per_lane=sending_per_lane, quiet_s=quiet_s, linger_s=linger_s)
        return twin

    @property
    def coalescer(self) -> Coalescer | None:
        return self._coalescer

    async def _items(self, function: str, items: Sequence[Any], key: Hashable, params: Mapping[str, Any]) -> Any:
        """A call of a function the coalescer knows: shared with others' when coalescing, else alone."""
        if self._coalescer is None:
            return await self.call(function, params)
        return await self._coalescer.submit(function, items, key)

    async def _coalesced(self, function: str, items: Sequence[Mapping[str, Any]], course_field: str,
                         params: Mapping[str, Any]) -> Any:
        """A call for one course shares a lane with the course's others; one for several courses goes alone."""
        courses = {item.get(course_field) for item in items}
        if len(courses) != 1:
            return await self.call(function, params)
        return await self._items(function, items, courses.pop(), params)

    def _decode(self, response: httpx.Response, function: str) -> Any:
        status = response.status_code
        if status in (429, 502, 503, 504) or status >= 500:
            raise MoodleConnectionError(self.url, f"HTTP {status} {response.reason_phrase}", function=function)
        if status != 200:
            raise MoodleResponseError(self.url, f"HTTP {status} {response.reason_phrase} for {ENDPOINT_PATH}",
                                      function=function)
        text = response.text
        try:
            return json.loads(text)
        except ValueError:
            kind = "an HTML page" if text.lstrip().startswith("<") else "no JSON"
            raise MoodleResponseError(self.url, f"the answer to {function} is {kind}, not a web-service answer",
                                      function=function) from None

    def _redact(self, text: str) -> str:
        return redact(text, [self._token])

    # --- site ------------------------------------------------------------------------------------------

    async def get_site_info(self) -> SiteInfo:
        return cast(SiteInfo, await self.call("core_webservice_get_site_info"))

    # --- courses ---------------------------------------------------------------------------------------

    async def get_courses(self, ids: Sequence[int] | None = None) -> list[Course]:
        params = {"options": {"ids": list(ids)}} if ids else {}
        return cast(list[Course], await self.call("core_course_get_courses", params))

    async def search_courses(self, text: str, *, page: int = 0, perpage: int = 50) -> CourseSearchResult:
        return cast(CourseSearchResult, await self.call(
            "core_course_search_courses",
            {"criterianame": "search", "criteriavalue": text, "page": page, "perpage": perpage},
        ))

    async def get_courses_by_field(self, field: str = "", value: str | int = "") -> list[Course]:
        params: dict[str, Any] = {"field": field, "value": value} if field else {}
        body = await self.call("core_course_get_courses_by_field", params)
        return cast(list[Course], body["courses"])

    async def create_courses(self, courses: Sequence[NewCourse]) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.call("core_course_create_courses", {"courses": courses}))

    async def update_courses(self, courses: Sequence[Mapping[str, Any]]) -> list[MoodleWarning]:
        body = await self.call("core_course_update_courses", {"courses": courses})
        return [MoodleWarning.from_body(w) for w in body.get("warnings", [])]

    async def duplicate_course(
        self,
        courseid: int,
        fullname: str,
        shortname: str,
        categoryid: int,
        *,
        visible: bool = True,
        include_users: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Copy a course. Without ``include_users`` the copy has no participants (Moodle's default
        would copy the source's, suspended ones included)."""
        return cast(dict[str, Any], await self.call(
            "core_course_duplicate_course",
            {
                "courseid": courseid,
                "fullname": fullname,
                "shortname": shortname,
                "categoryid": categoryid,
                "visible": visible,
                "options": [{"name": "users", "value": int(include_users)}],
            },
            timeout=timeout,
        ))

    async def delete_courses(self, ids: Sequence[int], *, timeout: float | None = None) -> list[MoodleWarning]:
        body = await self.call("core_course_delete_courses", {"courseids": list(ids)}, timeout=timeout)
        return [MoodleWarning.from_body(w) for w in body.get("warnings", [])]

    async def get_categories(self, criteria: Mapping[str, str] | None = None) -> list[Category]:
        params = {"criteria": [{"key": k, "value": v} for k, v in criteria.items()]} if criteria else {}
        return cast(list[Category], await self.call("core_course_get_categories", params))

    # --- enrolments ------------------------------------------------------------------------------------

    async def get_enrolled_users(
        self,
        courseid: int,
        *,
        userfields: Sequence[str] | None = None,
        limitfrom: int = 0,
        limitnumber: int = 0,
        onlyactive: bool = False,
    ) -> list[EnrolledUser]:
        options: list[dict[str, Any]] = []
        if userfields:
            options.append({"name": "userfields", "value": ",".join(userfields)})
        if limitnumber:
            options += [{"name": "limitfrom", "value": limitfrom}, {"name": "limitnumber", "value": limitnumber},
                        {"name": "sortby", "value": "id"}]
        if onlyactive:
            options.append({"name": "onlyactive", "value": 1})
        return cast(list[EnrolledUser], await self.call(
            "core_enrol_get_enrolled_users", {"courseid": courseid, "options": options}
        ))

    async def enrol_users(self, enrolments: Sequence[Enrolment]) -> None:
        """Enrol (or re-enrol) users. Atomic: one bad item and nothing is applied.

        Careful: every call, repeats included, sends the student a welcome mail once the course has a
        teacher, and resets suspension and dates."""
        await self._coalesced(ENROL_USERS, enrolments, "courseid", {"enrolments": enrolments})

    async def unenrol_users(self, enrolments: Sequence[Mapping[str, int]]) -> None:
        """Remove enrolments with all their roles (Moodle ignores ``roleid``). Idempotent."""
        await self._coalesced(UNENROL_USERS, enrolments, "courseid", {"enrolments": enrolments})

    async def get_suspended_user_ids(self, courseid: int) -> set[int]:
        """The users whose enrolment in the course is suspended (their roles are still listed)."""
        users = await self.call("core_enrol_get_enrolled_users", {
            "courseid": courseid,
            "options": [{"name": "userfields", "value": "id"}, {"name": "onlysuspended", "value": 1}],
        })
        return {int(u["id"]) for u in users}

    # --- roles (optional functions, outside the guide's 14) --------------------------------------------

    async def assign_roles(self, assignments: Sequence[RoleAssignment]) -> None:
        """Give roles in courses (core_role_assign_roles). Idempotent, sends no mail. Careful: Moodle also
        assigns a role to someone not enrolled, who then holds it without showing as a participant."""
        items = [{**a, "contextlevel": "course"} for a in assignments]
        await self._coalesced(ASSIGN_ROLES, items, "instanceid", {"assignments": items})

    async def unassign_roles(self, assignments: Sequence[RoleAssignment]) -> None:
        """Take roles away in courses (core_role_unassign_roles); the enrolment stays. Idempotent, no mail."""
        items = [{**a, "contextlevel": "course"} for a in assignments]
        await self._coalesced(UNASSIGN_ROLES, items, "instanceid", {"unassignments": items})

    # --- users -----------------------------------------------------------------------------------------

    async def create_users(self, users: Sequence[NewUser]) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._items(CREATE_USERS, users, None, {"users": users}))

    async def get_users_by_field(self, field: str, values: Sequence[str | int]) -> list[User]:
        return cast(list[User], await self._items(
            GET_USERS_BY_FIELD, values, field, {"field": field, "values": list(values)}
        ))

