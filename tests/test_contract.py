"""Replays every record of the real-Moodle transcript against the simulator and compares the answers.

Compared: the answer's shape (keys in order, nesting, list lengths, value types), the exception class and
errorcode, warnings (warningcode and message), and the values that behaviour decides (usernames,
shortnames, visibility, totals, role ids, ...). Ids, times, URLs and free text may differ.

- Records 0-148 (the main run) and 149-158 (``[supplementary run]``) are replayed in order against one
  fresh simulator set up like the recording site (template ``tpl-linux-101``). Ids the recording site
  returned from create/duplicate calls are mapped to the simulator's ids in later requests.
- The 35 ``[site debug=DEBUG_NORMAL]`` records come from a second run of the same script with debugging
  on. Each one is checked against a second replay of the main run (names ``ovle-c1-`` -> ``ovle-c2-``) on a
  simulator with ``debug=True``: the answer at the position of its twin record (same function and case)
  must match it, ``debuginfo`` included (text compared with digits normalised).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_moodle import FakeMoodle

# The shared folder lies beside the checkout (../shared), in development and in CI alike.
TRANSCRIPT = Path(__file__).resolve().parents[2] / "shared" / "moodle-contract" / "transcript.json"
RECORDS: list[dict[str, Any]] = json.loads(TRANSCRIPT.read_text())  # missing transcript: fail, never skip
MAIN_TOKEN, LIMITED_TOKEN = "main-token", "limited-token"
SUPPLEMENTARY, DEBUG = "[supplementary run] ", "[site debug=DEBUG_NORMAL] "
MAIN_RUN_END = 149  # records [0, 149) are the main run

# Values that the simulator must reproduce exactly (they are decided by behaviour, not by the clock).
EXACT_KEYS = {
    "exception",
    "errorcode",
    "warningcode",
    "username",
    "shortname",
    "fullname",
    "displayname",
    "idnumber",
    "visible",
    "suspended",
    "auth",
    "roleid",
    "total",
    "format",
    "categoryname",
    "enrollmentmethods",
    "name",
    "summary",
    "email",
    "confirmed",
    "numsections",
}

# Records the simulator does not reproduce, with the reason. Empty: every record is reproduced.
NOT_REPRODUCED: dict[int, str] = {}


def _site() -> FakeMoodle:
    return FakeMoodle(
        token=MAIN_TOKEN,
        limited_token=LIMITED_TOKEN,
        site_url="http://127.0.0.1:8089",
        template_shortname="tpl-linux-101",
        template_fullname="Linux 101 Template",
        template_summary="Template course for Linux 101",
    )


def _token(record: dict[str, Any]) -> str | None:
    if "wstoken" not in record["request"]:
        return None
    case = record["case"].lower()
    if "limited" in case:
        return LIMITED_TOKEN
    if "wrong token" in case:
        return "0123456789abcdef0123456789abcdef"
    return MAIN_TOKEN


class IdMap:
    """Recorded ids -> simulator ids, learnt from the answers of create and duplicate calls."""

    def __init__(self) -> None:
        self.courses: dict[int, int] = {}
        self.users: dict[int, int] = {}

    def learn(self, function: str, recorded: Any, actual: Any) -> None:
        table = {
            "core_course_create_courses": self.courses,
            "core_course_duplicate_course": self.courses,
            "core_user_create_users": self.users,
        }.get(function)
        if table is None:
            return
        if isinstance(recorded, dict) and isinstance(actual, dict) and "id" in recorded and "id" in actual:
            table[recorded["id"]] = actual["id"]
        elif isinstance(recorded, list) and isinstance(actual, list):
            for rec, act in zip(recorded, actual, strict=False):
                table[rec["id"]] = act["id"]

    def _map(self, table: dict[int, int], value: str) -> str:
        return str(table.get(int(value), int(value))) if value.isdigit() else value

    def request(self, function: str, fields: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        by_id = fields.get("field") == "id"
        for key, value in fields.items():
            leaf = re.findall(r"\[([^\]]*)\]", key)
            last = leaf[-1] if leaf else key
            base = key.split("[", 1)[0]
            to_course = last == "courseid" or base == "courseids" or key.startswith("options[ids]")
            to_user = last == "userid" or base == "userids"
            if function == "core_user_get_users_by_field" and base == "values" and by_id:
                to_user = True
            if to_course or (base == "courses" and last == "id"):
                value = self._map(self.courses, value)
            elif to_user:
                value = self._map(self.users, value)
            elif function == "core_course_get_courses_by_field" and key == "value":
                if fields.get("field") == "id":
                    value = self._map(self.courses, value)
                elif fields.get("field") == "ids":
                    value = ",".join(self._map(self.courses, v) for v in value.split(","))
            out[key] = value
        return out


async def _replay(
    fake: FakeMoodle, records: list[tuple[int, dict[str, Any]]], rename: bool
) -> dict[int, str]:
    ids = IdMap()
    answers: dict[int, str] = {}
    transport = httpx.ASGITransport(app=fake)
    async with httpx.AsyncClient(transport=transport, base_url="http://moodle.test") as client:
        for index, record in records:
            fields = {k: v for k, v in record["request"].items() if k != "wstoken"}
            if rename:
                fields = {k: v.replace("ovle-c1-", "ovle-c2-") for k, v in fields.items()}
            fields = ids.request(record["function"], fields)
            token = _token(record)
            if token is not None:
                fields = {"wstoken": token, **fields}
            response = await client.post("/webservice/rest/server.php", data=fields)
            assert response.status_code == 200
            answers[index] = response.text
            with contextlib.suppress(ValueError):  # XML and null bodies teach no ids
                ids.learn(record["function"], json.loads(record["response_body"]), response.json())
    return answers


@pytest.fixture(scope="module")
async def answers() -> dict[int, str]:
    """The simulator's answer for every record index."""
    main = [(i, r) for i, r in enumerate(RECORDS) if not r["case"].startswith(DEBUG)]
    out = await _replay(_site(), main, rename=False)
    # Debug records: replay the main run on a debug site; the answer at each twin's position is theirs.
    twins = _debug_twins()
    debug_site = _site()
    debug_site.debug = True
    debug_answers = await _replay(debug_site, list(enumerate(RECORDS[:MAIN_RUN_END])), rename=True)
    for index, twin in twins.items():
        out[index] = debug_answers[twin]
    return out


def _debug_twins() -> dict[int, int]:
    twins: dict[int, int] = {}
    for i, record in enumerate(RECORDS):
        if not record["case"].startswith(DEBUG):
            continue
        case = record["case"][len(DEBUG) :]
        matches = [
            j
            for j in range(MAIN_RUN_END)
            if RECORDS[j]["function"] == record["function"] and RECORDS[j]["case"] == case
        ]
        assert len(matches) == 1, f"record {i}: no single twin in the main run"
        twins[i] = matches[0]
    return twins


def shape(value: Any) -> Any:
    """Keys in order, nesting, list lengths and value types."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def exact_values(value: Any, path: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if (k in EXACT_KEYS and not isinstance(v, dict | list)) or k == "enrollmentmethods":
                out.append((f"{path}.{k}", v))
            else:
                out.extend(exact_values(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(exact_values(v, f"{path}[{i}]"))
    return out


def _norm(text: str) -> str:
    text = text.replace("<moodle-dirroot>", "/var/www/moodle")
    return re.sub(r"\d+", "N", text).replace("ovle-c2-", "ovle-c1-")


def _xml_structure(body: str) -> str:
    return re.sub(r"<VALUE>[^<]*</VALUE>", "<VALUE/>", body)


def _case_id(index: int) -> str:
    record = RECORDS[index]
    case = record["case"].replace(SUPPLEMENTARY, "supp ").replace(DEBUG, "debug ")
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", case).strip("-")[:48]
    return f"{index:03d}-{record['function'].removeprefix('core_')}-{slug}"


def _sorted_functions(body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("functions"), list):
        body = dict(body)
        body["functions"] = sorted(body["functions"], key=lambda f: f["name"])
    return body


@pytest.mark.parametrize("index", range(len(RECORDS)), ids=[_case_id(i) for i in range(len(RECORDS))])
async def test_record(index: int, answers: dict[int, str]) -> None:
    if index in NOT_REPRODUCED:
        pytest.skip(NOT_REPRODUCED[index])
    record = RECORDS[index]
    expected_text, actual_text = record["response_body"], answers[index]
    if expected_text.startswith("<?xml"):
        assert _xml_structure(actual_text) == _xml_structure(expected_text)
        return
    expected = _sorted_functions(json.loads(expected_text))
    actual = _sorted_functions(json.loads(actual_text))
    assert shape(actual) == shape(expected)
    if isinstance(expected, dict) and "exception" in expected:
        assert actual["exception"] == expected["exception"]
        assert actual.get("errorcode") == expected.get("errorcode")
        assert _norm(actual["message"]) == _norm(expected["message"])
        if "debuginfo" in expected:
            assert _norm(actual["debuginfo"]) == _norm(expected["debuginfo"])
        return
    assert exact_values(actual) == exact_values(expected)
    if isinstance(expected, dict) and "warnings" in expected:
        assert [(w["warningcode"], _norm(w["message"])) for w in actual["warnings"]] == [
            (w["warningcode"], _norm(w["message"])) for w in expected["warnings"]
        ]


def test_every_record_is_covered() -> None:
    assert len(RECORDS) == 194
    assert set(NOT_REPRODUCED) <= set(range(len(RECORDS)))
    assert len(_debug_twins()) == 35
