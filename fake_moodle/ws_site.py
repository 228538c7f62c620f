"""core_webservice_get_site_info and core_course_get_categories."""

from __future__ import annotations

from typing import Any

from .errors import moodle_exception
from .params import DEFAULT, Multiple, Single, Value
from .site import Site
from .views import THEME_REV, category

RELEASE = "4.5 (Build: 20241007)"
VERSION = "2024100700"


class XmlOnlyNull:
    """A null that the XML answer shows (``<VALUE null="null"/>``) and the JSON answer leaves out."""


XML_ONLY_NULL = XmlOnlyNull()

ADVANCED_FEATURES = [
    ("usecomments", 1),
    ("usetags", 1),
    ("enablenotes", 1),
    ("messaging", 1),
    ("enableblogs", 1),
    ("enablecompletion", 1),
    ("enablebadges", 1),
    ("messagingallusers", 0),
    ("enablecustomreports", 1),
    ("enableglobalsearch", 0),
    ("mnet_dispatcher_mode", 0),
    ("enablecompetencies", 1),
]

SITE_INFO_PARAMS = Single({"serviceshortnames": Multiple(Value("alphanumext"), DEFAULT, [])})


def site_info(site: Site, params: dict[str, Any], functions: list[str], access_key: str) -> dict[str, Any]:
    admin = site.users[2]
    return {
        "sitename": site.site_name,
        "username": admin.username,
        "firstname": admin.firstname,
        "lastname": admin.lastname,
        "fullname": admin.fullname,
        "lang": "en",
        "userid": admin.id,
        "siteurl": site.site_url,
        "userpictureurl": f"{site.site_url}/theme/image.php/boost/core/{THEME_REV}/u/f1",
        "functions": [{"name": name, "version": VERSION} for name in functions],
        "downloadfiles": 0,
        "uploadfiles": 0,
        "release": RELEASE,
        "version": VERSION,
        "mobilecssurl": "",
        "advancedfeatures": [{"name": n, "value": v} for n, v in ADVANCED_FEATURES],
        "usercanmanageownfiles": True,
        "userquota": 0,
        "usermaxuploadfilesize": -1,
        "userhomepage": 1,
        "userhomepageurl": XML_ONLY_NULL,
        "userprivateaccesskey": access_key,
        "siteid": 1,
        "sitecalendartype": "gregorian",
        "usercalendartype": "gregorian",
        "userissiteadmin": True,
        "theme": "boost",
        "limitconcurrentlogins": 0,
        "usersessionscount": XML_ONLY_NULL,
        "policyagreed": 0,
    }


GET_CATEGORIES_PARAMS = Single(
    {
        "criteria": Multiple(Single({"key": Value("alpha"), "value": Value("raw")}), DEFAULT, []),
        "addsubcategories": Value("bool", DEFAULT, 1),
    }
)

_CRITERIA = {"id", "ids", "name", "parent", "idnumber", "visible", "theme"}


def get_categories(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    cats = sorted(site.categories.values(), key=lambda c: c.sortorder)
    for crit in params["criteria"]:
        key, value = crit["key"], crit["value"]
        if key not in _CRITERIA:
            raise moodle_exception(
                "criteriaerror",
                "Missing permissions to search on a criterion.",
                f"You can not search on this criteria: {key}",
            )
        if key == "ids":
            wanted = {v.strip() for v in value.split(",")}
            cats = [c for c in cats if str(c.id) in wanted]
        elif key == "name":
            cats = [c for c in cats if c.name == value]
        elif key == "idnumber":
            cats = [c for c in cats if c.idnumber == value]
        elif key == "theme":
            cats = [c for c in cats if value == ""]
        else:
            attr = {"id": "id", "parent": "parent", "visible": "visible"}[key]
            cats = [c for c in cats if str(getattr(c, attr)) == value.strip()]
    return [category(site, c) for c in cats]
