"""core_user_create_users and core_user_get_users_by_field."""

from __future__ import annotations

import re
from typing import Any

from .errors import coding_error, invalid_parameter, moodle_exception
from .model import Message, User
from .params import DEFAULT, OPTIONAL, Multiple, Single, Value, clean_username
from .site import Site
from .views import user_details

_USER_KEYS: dict[str, Value | Single | Multiple] = {
    "createpassword": Value("bool", OPTIONAL),
    "username": Value("username"),
    "auth": Value("auth", DEFAULT, "manual"),
    "password": Value("raw", OPTIONAL),
    "firstname": Value("notags"),
    "lastname": Value("notags"),
    "email": Value("rawtrimmed"),
    **{
        k: Value("raw", OPTIONAL)
        for k in (
            "maildisplay",
            "city",
            "country",
            "timezone",
            "description",
            "firstnamephonetic",
            "lastnamephonetic",
            "middlename",
            "alternatename",
            "interests",
        )
    },
    "idnumber": Value("raw", DEFAULT, ""),
    **{k: Value("raw", OPTIONAL) for k in ("institution", "department", "phone1", "phone2", "address")},
    "lang": Value("lang", DEFAULT, "en"),
    "calendartype": Value("raw", DEFAULT, "gregorian"),
    "theme": Value("raw", OPTIONAL),
    "mailformat": Value("int", OPTIONAL),
    "customfields": Multiple(Single({"type": Value("alphanumext"), "value": Value("raw")}), OPTIONAL),
    "preferences": Multiple(Single({"type": Value("raw"), "value": Value("raw")}), OPTIONAL),
}
CREATE_PARAMS = Single({"users": Multiple(Single(_USER_KEYS))})
BY_FIELD_PARAMS = Single({"field": Value("alpha"), "values": Multiple(Value("raw"))})

# Auth plugins a web service may create users with (mnet and webservice are refused), and whether
# the plugin stores passwords itself (then a password or createpassword is required).
CREATABLE_AUTHS = {
    "manual": True,
    "nologin": True,
    "email": True,
    "none": True,
    "db": True,
    "ldap": False,
    "oauth2": False,
    "cas": False,
    "shibboleth": False,
    "lti": False,
}
_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$",
    re.IGNORECASE,
)


def _valid_email(address: str) -> bool:
    """Moodle's validate_email (PHPMailer with PHP's filter_var): also at most 64 characters before the @
    and 63 in each domain label."""
    if not _EMAIL.match(address):
        return False
    local, _, domain = address.rpartition("@")
    return len(local) <= 64 and all(len(label) <= 63 for label in domain.split("."))


def password_policy_errors(password: str) -> list[str]:
    """Moodle's default password policy: 8 chars, 1 digit, 1 lower, 1 upper, 1 non-alphanumeric."""
    errors = []
    if len(password) < 8:
        errors.append("Passwords must be at least 8 characters long.")
    if len(re.findall(r"[0-9]", password)) < 1:
        errors.append("Passwords must have at least 1 digit(s).")
    if len(re.findall(r"[a-z]", password)) < 1:
        errors.append("Passwords must have at least 1 lower case letter(s).")
    if len(re.findall(r"[A-Z]", password)) < 1:
        errors.append("Passwords must have at least 1 upper case letter(s).")
    if len(re.findall(r"[^a-zA-Z0-9]", password)) < 1:
        errors.append("The password must have at least 1 special character(s) such as *, -, or #.")
    return errors


def create_users(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    created: list[dict[str, Any]] = []
    with site.transaction():
        for item in params["users"]:
            for name in ("username", "firstname", "lastname"):
                if item[name].strip() == "":
                    raise invalid_parameter(f"The field {name} cannot be blank")
            if site.user_by_username(item["username"]) is not None:
                raise invalid_parameter(f"Username already exists: {item['username']}")
            if item["auth"] not in CREATABLE_AUTHS:
                raise invalid_parameter(f"Invalid authentication type: {item['auth']}")
            internal = CREATABLE_AUTHS[item["auth"]]
            createpassword = bool(item.get("createpassword"))
            password = item.get("password") or ""
            if internal and not password and not createpassword:
                raise invalid_parameter(
                    "Invalid password: you must provide a password, or set createpassword."
                )
            if not _valid_email(item["email"]):
                raise invalid_parameter(f"Email address is invalid: {item['email']}")
            if site.email_taken_ci(item["email"]):
                raise invalid_parameter(f"Email address already exists: {item['email']}")
            if internal and not createpassword:
                errors = password_policy_errors(password)
                if errors:
                    html = "".join(f"<div>{e}</div>" for e in errors)
                    raise moodle_exception(html, f"error/{html}")
            user = User(
                site.next_user_id,
                item["username"],
                item["firstname"],
                item["lastname"],
                item["email"],
                auth=item["auth"],
                idnumber=item["idnumber"],
                lang=item["lang"],
                department=item.get("department", ""),
                institution=item.get("institution", ""),
                city=item.get("city", ""),
                country=item.get("country", ""),
                description=item.get("description", ""),
                timezone=item.get("timezone", "99"),
                theme=item.get("theme", ""),
                mailformat=item.get("mailformat", 1),
                password="" if createpassword or not internal else "hashed",
                timecreated=site.now(),
            )
            site.add_user(user)
            if createpassword:
                site.mail_now(Message("newuser", user.id, None, f"{site.site_name}: New user account",
                                      address=user.email))
            created.append({"id": user.id, "username": user.username})
    return created


_FIELDS = ("id", "idnumber", "username", "email")


def get_users_by_field(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    field = params["field"]
    if field not in _FIELDS:
        raise coding_error(
            "invalid field parameter",
            f"The search field '{field}' is not supported, look at the web service documentation",
        )
    ids: set[int] = set()
    for value in params["values"]:
        if field == "id":
            m = re.match(r"^\s*([+-]?\d+)", value)
            cleaned = str(int(m.group(1))) if m else "0"
        elif field == "username":
            cleaned = clean_username(value)
        elif field == "email":
            cleaned = value.strip()
        else:
            cleaned = value
        if cleaned != value:
            raise invalid_parameter(
                f"The field '{field}' value is invalid: {value}(cleaned value: {cleaned})"
            )
        if field == "id":
            if int(cleaned) in site.users:
                ids.add(int(cleaned))
        elif field == "username":
            user = site.user_by_username(cleaned)
            if user is not None:
                ids.add(user.id)
        elif field == "email":
            ids.update(u.id for u in site.users_by_email(cleaned))
        elif cleaned:
            ids.update(u.id for u in site.users_by_idnumber(cleaned))
    return [user_details(site, site.users[i]) for i in sorted(ids)]
