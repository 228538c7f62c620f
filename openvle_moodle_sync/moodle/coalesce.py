"""One Moodle call for many activities: the worker's per-user calls of the same function, coalesced.

Every web-service call costs Moodle a PHP bootstrap before any work, so a deployment that made one call per
participant cost Moodle several times what a script with batched calls costs. The activities stay per user
(their retries, MOODLE_SYNC_TIMEOUT and progress come from the engine); under them, the calls that activities
make at about the same moment go to Moodle as one call:

- A *lane* gathers the calls of one function (and one course for enrolments and roles, one field for
  look-ups). Its pump waits `IDLE_WINDOW_S` for company (longer while calls keep coming, `LINGER_S`), then
  takes a connection from the client's `PriorityGate` at the priority of its best waiting call, and sends
  the waiting calls, highest priority first, as one call of at most MOODLE_BATCH_SIZE items. At most
  `SENDING_PER_LANE` calls of a lane are in flight: what arrives meanwhile waits for one of them to end and
  goes in the next call, so a busy lane makes large calls and an idle one answers a single call within a
  few milliseconds.
- Each caller gets its own items' answer, or the error: an error of the whole call (a connection, the
  token, Moodle's database) goes to every caller in it; an error that one item can cause (Moodle rejected a
  value) is isolated by sending the items again in smaller calls, until the bad item fails alone.
- A caller cancelled while waiting leaves the lane; once its call is sent, the others still get theirs.

Moodle runs each call in one transaction, and `core_user_create_users` mails a generated password
(``createpassword``) as it goes, before the transaction commits: when item k fails, the items before it
were mailed and rolled back (seen on the lab). Such calls are therefore shaped so that an item can fail only
alone: accounts are checked first (blank names, Moodle's email syntax, the same username or address twice
in one call or in a call in flight; the usernames and addresses Moodle already holds, asked in the same
connection just before), and anything at risk goes in a call of its own, where it fails before any mail,
as it did before coalescing. They also go few at once and small (`mailing_batch`): a database failure in the
middle of them re-mails no more accounts than one-account calls on every connection could. Enrolment
welcome mails go through Moodle's message API, which holds them until the transaction commits: a failed
enrolment call mails nobody.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import (
    AccessDeniedError,
    InvalidTokenError,
    MoodleApiError,
    MoodleDatabaseError,
    MoodleError,
    MoodleResponseError,
)
from .gate import PriorityGate, call_priority

log = logging.getLogger("moodle.coalesce")

IDLE_WINDOW_S = 0.004
"""How long a lane waits for company before it sends: short enough that a single call is not slowed."""

SENDING_PER_LANE = 2
"""Calls of one lane in flight at once; what arrives meanwhile goes in the next call."""

QUIET_S = 0.25
LINGER_S = 1.5
"""While calls keep coming to a lane (the one before the last came less than LINGER_S ago, the last less than
QUIET_S ago), it goes on waiting, at most LINGER_S in all: activities reach a worker one task at a time, and a
deployment's enrolments trickle in as its accounts are made. A lone call does not linger."""

MAILING_STREAMS = 2
"""Calls of one screened batch in flight at once, on connections free at that moment."""


def mailing_batch(connections: int, batch_size: int) -> int:
    """Accounts per core_user_create_users call when Moodle mails their passwords (createpassword).

    Moodle mails each account as it creates it, so a call that fails in its middle (Moodle's database gone,
    say) has mailed the accounts before the failure and rolled them back: their retry mails them again. A
    worker has at most `MAILING_STREAMS` such calls in flight, of a quarter of MOODLE_MAX_CONCURRENCY each
    (5 by default): at most half as many accounts at risk at once as one-account calls on every connection.
    Larger calls save Moodle calls but re-mail more in an outage, and slow a small event beside a large one
    (bench/RESULTS.md, database outage)."""
    return max(1, min(batch_size, connections // (2 * MAILING_STREAMS)))


SCREENING_CALLS = 2
"""Look-ups that screen accounts Moodle will mail (by username, by email): a batch of at most 3 is sent one
account a call instead, which costs no more."""

CREATE_USERS = "core_user_create_users"
ENROL_USERS = "enrol_manual_enrol_users"
UNENROL_USERS = "enrol_manual_unenrol_users"
GET_USERS_BY_FIELD = "core_user_get_users_by_field"
ASSIGN_ROLES = "core_role_assign_roles"
UNASSIGN_ROLES = "core_role_unassign_roles"

# Moodle's validate_email() (lib/moodlelib.php, 4.5): an address it refuses fails core_user_create_users
# inside its loop, after the accounts before it were mailed.
_ATEXT = r"[-!#$%&'*+/0-9=?A-Z^_`a-z{|}~]"
_MOODLE_EMAIL = re.compile(rf"^{_ATEXT}+(\.{_ATEXT}+)*@{_ATEXT}+\.[-!#$%&'*+./0-9=?A-Z^_`a-z{{|}}~]+$")


def moodle_accepts_email(address: str) -> bool:
    """Whether Moodle's own check (validate_email) accepts the address."""
    return len(address) <= 254 and bool(_MOODLE_EMAIL.match(address))


class Sender(Protocol):
    """Sends one call over a connection the caller holds (`MoodleClient.send`)."""

    def __call__(self, function: str, params: Mapping[str, Any]) -> Awaitable[Any]: ...


@dataclass(eq=False)
class _Request:
    """One activity's call: its items, its priority key and where its answer goes."""

    items: list[Any]
    priority: int
    arrival: int
    future: asyncio.Future[Any]

    @property
    def waiting(self) -> bool:
        return not self.future.done()


@dataclass(frozen=True)
class _Function:
    """How one coalesced function's items become a call, and its answer each caller's."""

    name: str
    wrap: Callable[[Hashable, list[Any]], dict[str, Any]]
    split: Callable[[Hashable, list[_Request], Any], list[Any]]


def _none_each(_key: Hashable, requests: list[_Request], _answer: Any) -> list[Any]:
    return [None] * len(requests)


def _by_position(_key: Hashable, requests: list[_Request], answer: Any) -> list[Any]:
    """core_user_create_users answers one ``{id, username}`` per account, in the order sent."""
    wanted = sum(len(r.items) for r in requests)
    if not isinstance(answer, list) or len(answer) != wanted:
        raise MoodleResponseError("", f"{CREATE_USERS} answered {type(answer).__name__} for {wanted} accounts",
                                  function=CREATE_USERS)
    results, start = [], 0
    for request in requests:
        results.append(answer[start:start + len(request.items)])
        start += len(request.items)
    return results


def _users_asked(key: Hashable, requests: list[_Request], answer: Any) -> list[Any]:
    """Each caller gets the users whose ``key`` field is one of its values (any letter case: the caller
    decides, as it did with its own call)."""
    users = answer if isinstance(answer, list) else []
    results = []
    for request in requests:
        asked = {str(v).lower() for v in request.items}
        results.append([u for u in users if str(u.get(str(key), "")).lower() in asked])
    return results


FUNCTIONS: dict[str, _Function] = {f.name: f for f in (
    _Function(CREATE_USERS, lambda _k, items: {"users": items}, _by_position),
    _Function(ENROL_USERS, lambda _k, items: {"enrolments": items}, _none_each),
    _Function(UNENROL_USERS, lambda _k, items: {"enrolments": items}, _none_each),
    _Function(ASSIGN_ROLES, lambda _k, items: {"assignments": items}, _none_each),
    _Function(UNASSIGN_ROLES, lambda _k, items: {"unassignments": items}, _none_each),
    _Function(GET_USERS_BY_FIELD, lambda k, items: {"field": k, "values": list(dict.fromkeys(items))},
              _users_asked),
)}
"""The functions whose calls are coalesced."""


def whole_call_error(error: BaseException) -> bool:
    """Whether an error is about the call, not one of its items: every caller in it gets it."""
    return (not isinstance(error, MoodleApiError) or error.retryable
            or isinstance(error, (InvalidTokenError, AccessDeniedError, MoodleDatabaseError)))


def mails_passwords(function: str, items: Sequence[Any]) -> bool:
    return function == CREATE_USERS and any(item.get("createpassword") for item in items)


def _account_keys(item: Mapping[str, Any]) -> tuple[str, str]:
    return str(item.get("username", "")).lower(), str(item.get("email", "")).lower()


def _chunks(requests: list[_Request], items: int) -> list[list[_Request]]:
    """Consecutive groups of requests of at most ``items`` items each (a larger request alone)."""
    groups: list[list[_Request]] = []
    size = 0
    for request in requests:
        if not groups or size + len(request.items) > items:
            groups.append([])
            size = 0
        groups[-1].append(request)
        size += len(request.items)
    return groups


@dataclass(eq=False)
class _Lane:
    function: _Function
    key: Hashable
    pending: list[_Request] = field(default_factory=list)
    sending: int = 0
    pump: asyncio.Task[None] | None = None
    freed: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight_accounts: set[str] = field(default_factory=set)
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=2))
    """When the last two calls came: a lane lingers only while calls come one after another."""

    def waiting(self) -> list[_Request]:
        self.pending = [r for r in self.pending if r.waiting]
        return self.pending


class Coalescer:
    """Gathers the calls of `FUNCTIONS` into shared calls of at most ``batch_size`` items.

    ``send`` makes one call on a connection the coalescer holds from ``gate`` (the client's own gate, so
    coalesced and direct calls share MOODLE_MAX_CONCURRENCY and the priority order)."""

    def __init__(self, send: Sender, gate: PriorityGate, batch_size: int, *,
                 window_s: float = IDLE_WINDOW_S, sending_per_lane: int = SENDING_PER_LANE,
                 quiet_s: float = QUIET_S, linger_s: float = LINGER_S) -> None:
        if batch_size < 1:
            raise ValueError("a batch holds at least one item")
        self._send = send
        self._gate = gate
        self.batch_size = batch_size
        self.mailing_batch = mailing_batch(gate.limit, batch_size)
        self._window_s = window_s
        self._quiet_s = quiet_s
        self._linger_s = linger_s
        self._sending_per_lane = sending_per_lane
        self._lanes: dict[tuple[str, Hashable], _Lane] = {}
        self._arrival = itertools.count()
        self._delivering: set[asyncio.Task[None]] = set()
        self.calls = 0
        """Calls sent to Moodle (for tests and benchmarks)."""

    async def submit(self, function: str, items: Sequence[Any], key: Hashable = None) -> Any:
        """The answer to ``items`` as if they had been sent alone (for look-ups: the users matching them)."""
        lane = self._lanes.get((function, key))
        if lane is None:
            self._forget_idle_lanes()
            lane = self._lanes[(function, key)] = _Lane(FUNCTIONS[function], key)
        request = _Request(list(items), call_priority.get(), next(self._arrival),
                           asyncio.get_running_loop().create_future())
        lane.pending.append(request)
        lane.arrivals.append(asyncio.get_running_loop().time())
        if lane.pump is None:
            lane.pump = asyncio.create_task(self._pump(lane), name=f"coalesce {function} {key}")
        return await request.future  # cancelled: the future is too, and the lane skips it

    # --- forming calls ----------------------------------------------------------------------------------

    async def _pump(self, lane: _Lane) -> None:
        try:
            while lane.waiting():
                await self._gather(lane)
                while lane.sending >= (1 if self._mailing(lane) else self._sending_per_lane):
                    lane.freed.clear()
                    await lane.freed.wait()
                if not lane.waiting():
                    break
                await self._gate.acquire(min(r.priority for r in lane.pending))
                batch = self._take(lane)
                if not batch:  # every waiting caller left, or all wait for an account in flight
                    self._gate.release()
                    if lane.waiting() and lane.sending:
                        lane.freed.clear()
                        await lane.freed.wait()
                    continue
                lane.sending += 1
                task = asyncio.create_task(self._deliver(lane, batch), name=f"coalesced {lane.function.name}")
                self._delivering.add(task)
                task.add_done_callback(self._delivering.discard)
        finally:
            lane.pump = None

    @staticmethod
    def _mailing(lane: _Lane) -> bool:
        return lane.function.name == CREATE_USERS and any(mails_passwords(CREATE_USERS, r.items)
                                                          for r in lane.pending)

    def _forget_idle_lanes(self) -> None:
        """Drop the lanes nobody used for a while (one per course: a worker's life sees many)."""
        since = asyncio.get_running_loop().time() - self._linger_s
        for key, lane in list(self._lanes.items()):
            if lane.pump is None and not lane.sending and not lane.pending and lane.arrivals[-1] < since:
                del self._lanes[key]

    async def _gather(self, lane: _Lane) -> None:
        """Wait the window for company, and longer while company keeps coming (see `LINGER_S`), until a full
        call's items wait (a caller's own batch, such as a bulk look-up, goes at once)."""
        await asyncio.sleep(self._window_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger_s
        while sum(len(r.items) for r in lane.waiting()) < self.batch_size and loop.time() < deadline:
            now = loop.time()
            streaming = len(lane.arrivals) == 2 and lane.arrivals[0] > now - self._linger_s
            if not streaming or lane.arrivals[-1] < now - self._quiet_s:  # a lone call, or company stopped
                return
            await asyncio.sleep(min(self._quiet_s, max(0.0, deadline - loop.time())) / 2)

    def _take(self, lane: _Lane) -> list[_Request]:
        """The next call's requests: highest priority first, then first come, up to the batch size."""
        limit = self.batch_size
        accounts = set(lane.in_flight_accounts) if lane.function.name == CREATE_USERS else None
        batch: list[_Request] = []
        size = 0
        for request in sorted(lane.waiting(), key=lambda r: (r.priority, r.arrival)):
            if batch and size + len(request.items) > limit:
                break
            if accounts is not None:
                keys = {k for item in request.items for k in _account_keys(item)}
                if keys & accounts:  # the same account twice in one call, or in a call in flight: later
                    continue
                accounts |= keys
            batch.append(request)
            size += len(request.items)
        taken = set(map(id, batch))
        lane.pending = [r for r in lane.pending if id(r) not in taken]
        if accounts is not None:
            lane.in_flight_accounts = accounts
        return batch

    # --- sending and answering --------------------------------------------------------------------------

    async def _deliver(self, lane: _Lane, batch: list[_Request]) -> None:
        try:
            items = sum(len(r.items) for r in batch)
            if mails_passwords(lane.function.name, [i for r in batch for i in r.items]) and len(batch) > 1:
                if items <= SCREENING_CALLS + 1:  # one call each costs no more than screening them
                    groups = [[r] for r in batch]
                else:
                    clean, at_risk = await self._screen_accounts(batch)
                    groups = [*_chunks(clean, self.mailing_batch), *([r] for r in at_risk)]
            else:
                groups = [batch]
            await self._answer_all(lane, groups)
        except asyncio.CancelledError:  # the worker is stopping
            for request in batch:
                request.future.cancel()
            raise
        except Exception as error:  # every caller must hear of it
            for request in batch:
                if request.waiting:
                    request.future.set_exception(error)
        finally:
            self._gate.release()
            if lane.function.name == CREATE_USERS:
                lane.in_flight_accounts -= {k for r in batch for item in r.items for k in _account_keys(item)}
            lane.sending -= 1
            lane.freed.set()
            if lane.pump is None and lane.waiting():
                lane.pump = asyncio.create_task(self._pump(lane), name=f"coalesce {lane.function.name}")

    async def _answer_all(self, lane: _Lane, groups: list[list[_Request]]) -> None:
        """Send the groups one after another on the batch's connection, or a few at once on connections that
        are free now (never waiting for one: the batch holds one already)."""
        if len(groups) == 1:
            await self._answer(lane, groups[0])
            return
        todo = list(reversed(groups))

        async def stream(extra: bool) -> None:
            try:
                while todo:
                    await self._answer(lane, todo.pop())
            finally:
                if extra:
                    self._gate.release()

        extra = sum(1 for _ in range(min(MAILING_STREAMS, len(groups)) - 1) if self._gate.try_acquire())
        await asyncio.gather(stream(False), *(stream(True) for _ in range(extra)))

    async def _call(self, function: str, params: Mapping[str, Any]) -> Any:
        self.calls += 1
        return await self._send(function, params)

    async def _answer(self, lane: _Lane, group: list[_Request]) -> None:
        """Send ``group`` as one call and answer each caller; an item's error is narrowed down to it."""
        group = [r for r in group if r.waiting] or group[:0]
        if not group:
            return
        items = [item for r in group for item in r.items]
        try:
            answer = await self._call(lane.function.name, lane.function.wrap(lane.key, items))
            results = lane.function.split(lane.key, group, answer)
        except MoodleError as error:
            if len(group) == 1 or whole_call_error(error):
                for request in group:
                    if request.waiting:
                        request.future.set_exception(error)
                return
            if mails_passwords(lane.function.name, items):
                # Moodle mailed the accounts before the bad one and rolled them back: each alone now, so each
                # is mailed once more at most and the bad one fails before any mail.
                log.warning("%s: an account of %d was refused after the screening; the accounts before it "
                            "were mailed and are created again, one per call", lane.function.name, len(items))
                parts = [[r] for r in group]
            else:  # nothing was mailed (or written): halve until the bad item fails alone
                parts = [group[:len(group) // 2], group[len(group) // 2:]]
            for part in parts:
                await self._answer(lane, part)
            return
        for request, result in zip(group, results, strict=True):
            if request.waiting:
                request.future.set_result(result)

    async def _screen_accounts(self, batch: list[_Request]) -> tuple[list[_Request], list[_Request]]:
        """Split accounts to create into those safe in one call and those that might fail (each sent alone).

        At risk: a blank name or username, an address Moodle's syntax check refuses, and a username or an
        address (as given or in lower case) that Moodle holds already, asked just now."""
        usernames = [str(i.get("username", "")) for r in batch for i in r.items]
        emails = list(dict.fromkeys(e for r in batch for i in r.items
                                    for e in (str(i.get("email", "")), str(i.get("email", "")).lower())))
        taken: set[str] = set()
        for by, values in (("username", usernames), ("email", emails)):
            users = await self._call(GET_USERS_BY_FIELD, {"field": by, "values": values})
            taken |= {str(u.get(by, "")).lower() for u in users or []}
        clean: list[_Request] = []
        at_risk: list[_Request] = []
        for request in batch:
            risky = any(
                not all(str(i.get(f, "")).strip() for f in ("username", "firstname", "lastname"))
                or not moodle_accepts_email(str(i.get("email", "")))
                or set(_account_keys(i)) & taken
                for i in request.items)
            (at_risk if risky else clean).append(request)
        return clean, at_risk
