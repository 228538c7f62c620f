"""The ASGI application: Moodle's REST endpoint, fault injection and the ``/_fake`` control endpoints."""

from __future__ import annotations

import asyncio
import copy
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import httpx

from .encode import error_json, error_xml, to_json, to_xml
from .errors import MoodleError
from .faults import Call, Faults
from .forms import parse_form
from .service import Service, is_write
from .site import Site

REST_PATH = "/webservice/rest/server.php"
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class FakeMoodle:
    """A stateful in-memory Moodle 4.5 REST web-service simulator; the instance is an ASGI app."""

    def __init__(
        self,
        token: str = "T",
        limited_token: str | None = None,
        latency_ms: float = 0,
        fail_rate: float = 0.0,
        seed: int = 0,
        *,
        debug: bool = False,
        site_name: str = "Lab",
        site_url: str = "http://moodle.test",
        template_shortname: str = "tpl-demo",
        template_fullname: str = "Demo Template",
        template_summary: str = "Template course for the demo",
        extended_token: str | None = None,
        max_input_vars: int = 1000,
    ) -> None:
        self.max_input_vars = max_input_vars
        """PHP's max_input_vars (its default): the form fields past it are dropped before Moodle sees them."""
        self.site = Site(
            site_name=site_name,
            site_url=site_url,
            template_shortname=template_shortname,
            template_fullname=template_fullname,
            template_summary=template_summary,
        )
        self.faults = Faults(latency_ms=float(latency_ms), fail_rate=float(fail_rate))
        self._baseline = copy.deepcopy(self.faults)
        self.debug = debug
        self.calls: list[Call] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._rng = random.Random(seed)
        self.service = Service(self.site, token, limited_token, f"{self._rng.getrandbits(128):032x}",
                               extended_token=extended_token)

    # -- public helpers ---------------------------------------------------------------------------

    def calls_by_function(self) -> dict[str, int]:
        return dict(Counter(c.function for c in self.calls))

    def reset_faults(self) -> None:
        """Back to the constructor's latency and fail rate, with every other fault off."""
        self.faults = copy.deepcopy(self._baseline)

    def state(self) -> dict[str, Any]:
        site = self.site
        return {
            "template_course_id": site.template_course_id,
            "courses": [
                {
                    "id": c.id,
                    "shortname": c.shortname,
                    "fullname": c.fullname,
                    "categoryid": c.category_id,
                    "idnumber": c.idnumber,
                    "visible": c.visible,
                }
                for c in site.courses.values()
            ],
            "users": [
                {
                    "id": u.id,
                    "username": u.username,
                    "firstname": u.firstname,
                    "lastname": u.lastname,
                    "email": u.email,
                    "auth": u.auth,
                    "idnumber": u.idnumber,
                }
                for u in site.users.values()
            ],
            "enrolments": [
                {
                    "courseid": e.course_id,
                    "userid": e.user_id,
                    "roles": sorted(e.roles),
                    "suspended": e.suspended,
                }
                for course_enrolments in site.enrolments.values()
                for e in course_enrolments.values()
            ],
            "grades": [
                {"courseid": course_id, "userid": user_id, "grade": grade}
                for (course_id, user_id), grade in site.grades.items()
            ],
            "messages": [
                {"kind": m.kind, "user_id": m.user_id, "course_id": m.course_id, "subject": m.subject}
                for m in site.messages
            ],
            "calls_by_function": self.calls_by_function(),
            "call_count": len(self.calls),
            "peak_in_flight": self.peak_in_flight,
            "in_flight": self.in_flight,
            "faults": self.faults.as_dict(),
        }

    # -- ASGI -------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        body = await _read_body(receive)
        if path == REST_PATH and method in ("GET", "POST"):
            await self._rest(scope, body, send)
        elif path == "/_fake/state" and method == "GET":
            await _respond(send, 200, json.dumps(self.state()), "application/json")
        elif path == "/_fake/faults" and method == "POST":
            try:
                self.faults.update(json.loads(body or b"{}"))
            except (ValueError, TypeError) as e:
                await _respond(send, 400, json.dumps({"error": str(e)}), "application/json")
                return
            await _respond(send, 200, json.dumps(self.faults.as_dict()), "application/json")
        elif path == "/_fake/reset_faults" and method == "POST":
            self.reset_faults()
            await _respond(send, 200, json.dumps(self.faults.as_dict()), "application/json")
        else:
            await _respond(send, 404, "Not found", "text/plain")

    async def _rest(self, scope: Scope, body: bytes, send: Send) -> None:
        pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        raw = parse_form(pairs[:self.max_input_vars])  # PHP drops the rest, silently
        function = str(raw.get("wsfunction", ""))
        token = raw.get("wstoken")
        as_json = raw.get("moodlewsrestformat") == "json"
        args = {k: v for k, v in raw.items() if k not in ("wstoken", "wsfunction", "moodlewsrestformat")}
        faults = self.faults
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            outage: str | None = faults.outage
            if outage is None and faults.fail_rate > 0 and self._rng.random() < faults.fail_rate:
                outage = self._rng.choice(["503", "drop"])
            if outage is not None:
                self.calls.append(Call(function, args, False, None, outage=outage))
                if outage == "503":
                    await _respond(send, 503, "<h1>503 Service Unavailable</h1>", "text/html")
                    return
                await _drop(scope, send, refused=outage == "refuse")
                return
            if faults.latency_ms > 0:
                await asyncio.sleep(faults.latency_ms / 1000)
            self.service.token_valid = faults.token_valid
            self.service.revoked_functions = frozenset(faults.revoked_functions)
            error: MoodleError | None = None
            result: Any = None
            try:
                result = self.service.call(token if isinstance(token, str) else None, function, args)
            except MoodleError as e:
                error = e
            lost = self._lose(function)
            self.calls.append(Call(function, args, error is None, error.errorcode if error else None, lost))
            if lost:
                await _drop(scope, send, refused=False)
                return
            if error is not None:
                text = error_json(error, self.debug) if as_json else error_xml(error, self.debug)
            else:
                text = to_json(result) if as_json else to_xml(result)
            await _respond(
                send, 200, text, "application/json" if as_json else "application/xml; charset=utf-8"
            )
        finally:
            self.in_flight -= 1

    def _lose(self, function: str) -> bool:
        pending = self.faults.lose_next.get(function, 0)
        if pending > 0:
            self.faults.lose_next[function] = pending - 1
            return True
        rate = self.faults.lose_response_rate
        return is_write(function) and rate > 0 and self._rng.random() < rate


class DroppedConnection(httpx.RemoteProtocolError):
    """Raised by the app to drop the connection (in-process clients see it as-is)."""


async def _drop(scope: Scope, send: Send, *, refused: bool) -> None:
    """Make the client see a broken connection.

    In-process (httpx.ASGITransport) the exception reaches the client unchanged. Over HTTP (uvicorn) the
    response has started with a Content-Length it never honours, so the server closes the connection and
    the client gets a transport error, not a 500.
    """
    request = httpx.Request(scope.get("method", "POST"), f"http://fake{scope.get('path', '/')}")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
    if refused:
        raise httpx.ConnectError("Connection refused", request=request)
    raise DroppedConnection("Server disconnected without sending a response.", request=request)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _respond(send: Send, status: int, text: str, content_type: str) -> None:
    body = text.encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
