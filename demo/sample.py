"""The demo's sample event: a workshop of 36 people (3 instructors), and one who joins later."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

INSTRUCTORS = [("Amélie", "Durand"), ("Jörg", "Schäfer"), ("Ngozi", "Okafor")]
STUDENTS = [
    ("Łukasz", "Nowak"), ("Søren", "Østergaard"), ("Chloé", "Lefèvre"), ("José", "Ramírez"),
    ("Zoë", "Ballantyne"), ("Björn", "Lindqvist"), ("Inés", "Fernández"), ("Mateus", "Conceição"),
    ("Aylin", "Y\u0131lmaz"), ("François", "Côté"), ("Anja", "Kovačević"), ("Raphaël", "Girard"),
    ("Maëlle", "Le Bihan"), ("Dragan", "Petrović"), ("Siobhán", "O'Connor"), ("Nuno", "Gonçalves"),
    ("Elif", "Şahin"), ("Renée", "Fischer"), ("Jürgen", "Weiß"), ("Hana", "Nováková"),
    ("Núria", "Puig"), ("Tomás", "Ó Briain"), ("Oğuz", "Demir"), ("Sigrún", "Jónsdóttir"),
    ("Agnieszka", "Wróbel"), ("Mikael", "Häkkinen"), ("Émile", "Rousseau"), ("Ana Lúcia", "Ribeiro"),
    ("Kwame", "Mensah"), ("Priya", "Raghunathan"), ("Mei", "Chen"), ("Yuki", "Tanaka"), ("Lucía", "Martín"),
]
NEWCOMER = ("Anaïs", "Lemaître")

# Moodle usernames hold no accents: ß -> ss, ø -> o, ł -> l, dotless i -> i, then the rest folded by NFKD.
_FOLD = str.maketrans({"ß": "ss", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "\u0131": "i", "æ": "ae"})


def ascii_name(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.translate(_FOLD)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", folded.lower())


def person(index: int, first: str, last: str, role: str) -> dict[str, Any]:
    username = f"{ascii_name(first)[:1]}{ascii_name(last)}"
    return {"id": f"p-{index}", "username": username, "email": f"{username}@example.edu",
            "first_name": first, "last_name": last, "role": role}


def sample_event(event_id: str, template_course_id: int) -> dict[str, Any]:
    """The event as the OpenVLE backend sends it (see docs/workflows.md, "Event JSON")."""
    people = [person(i + 1, first, last, "instructor") for i, (first, last) in enumerate(INSTRUCTORS)]
    people += [person(len(people) + i + 1, first, last, "student") for i, (first, last) in enumerate(STUDENTS)]
    return {"id": event_id, "name": "Linux Workshop November 2026", "slug": "linux-ws-2026-11",
            "moodle_course_id": template_course_id, "participants": people}


def newcomer(event: dict[str, Any]) -> dict[str, Any]:
    return person(len(event["participants"]) + 1, *NEWCOMER, "student")
