"""Plain words for the public pages: what the documents' codes and field names mean to a
reader, in the reader's language (``web.i18n.Reader``).

The documents (``takedown.transparency``) keep their codes (``throttle``, ``mobile``,
``removed_share``, ``active``): JSON clients rely on them. Only the HTML says them in
words: "slowed to 128 kbit/s", "all mobile subscribers and half of fixed-line
subscribers", "share removed or withheld", "in force".

Example::

    words = Wording(reader)
    words.scope({"mobile": 100.0, "fixed": 50.0})
    # "all mobile subscribers and half of fixed-line subscribers"
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from babel.numbers import format_decimal, format_percent

from takedown import config as config_mod
from takedown.web.i18n import Reader

# what the msgids below are, for extraction: each is passed to Reader.gettext at use
N_ = str

_ACTIONS = {"block": N_("blocked")}
_CLASSES = {
    "media": N_("photos and videos"),
    "text": N_("text"),
    "links": N_("links"),
    "video": N_("video"),
    "images": N_("images"),
}
_STATES = {
    "active": N_("in force"),
    "proposed": N_("not in force yet"),
    "lifted": N_("lifted"),
    "expired": N_("ended"),
}
_SUBSCRIBERS_ALL = {
    "mobile": N_("all mobile subscribers"),
    "fixed": N_("all fixed-line subscribers"),
    "*": N_("all subscribers"),
    "other": N_("all other subscribers"),
}
_SUBSCRIBERS_HALF = {
    "mobile": N_("half of mobile subscribers"),
    "fixed": N_("half of fixed-line subscribers"),
    "*": N_("half of all subscribers"),
    "other": N_("half of other subscribers"),
}
_SUBSCRIBERS_SHARE = {
    "mobile": N_("%(percent)s of mobile subscribers"),
    "fixed": N_("%(percent)s of fixed-line subscribers"),
    "*": N_("%(percent)s of all subscribers"),
    "other": N_("%(percent)s of other subscribers"),
}
_FIGURES = {
    "flagged": N_("items flagged to the platform"),
    "removed": N_("items removed"),
    "restricted": N_("items withheld in the country"),
    "claimed": N_("items the platform reports removed, not yet confirmed"),
    "remaining": N_("items remaining"),
    "overdue": N_("items past their removal deadline"),
    "removed_share": N_("share removed or withheld"),
    "on_time_share": N_("share removed by the deadline"),
    "ttr_median_h": N_("median time to removal"),
    "ttr_p90_h": N_("time within which 9 in 10 removals were made"),
    "as_of": N_("as of"),
    "platform": N_("platform"),
    "category": N_("category"),
}
_FUNCTIONS = {
    "days_in_force": N_("days the measure of rule “%(arg)s” has been in force"),
    "removed_share_change": N_("change in the share removed or withheld over %(arg)s days"),
    "new_items": N_("items listed in the last %(arg)s days"),
    "new_items_on_time_share": N_(
        "share of the items listed in the last %(arg)s days removed by the deadline"
    ),
    "obligation": N_("state of the obligation “%(arg)s”"),
}
_CALL = re.compile(r"^(?P<name>[a-z_]+)\((?P<arg>[^()]*)\)$")
_ROLES = {
    "ladder": N_("automatic rule of the enforcement ladder"),
    "regulator": N_("regulator's staff"),
    "approver": N_("approver"),
}
_APPELLANTS = {
    "platform": N_("the platform concerned"),
    "author": N_("the author of the content"),
    "user": N_("a user of the platform"),
    "other": N_("someone else affected"),
}
_APPEAL_STATES = {"open": N_("open"), "upheld": N_("refused"), "reversed": N_("reversed")}
_OBLIGATIONS = {"data-localisation": N_("storing citizens' personal data in the country")}
_OBLIGATION_STATES = {
    "compliant": N_("complied with"),
    "violating": N_("violated"),
    "none": N_("not recorded"),
}
# transparency.DEFAULT_APPEAL, as a message (a jurisdiction's own text is shown as written)
_DEFAULT_APPEAL = N_(
    "A platform, an author or a user affected by a measure may ask the regulator to review "
    "it, and may challenge the decision behind it in court."
)
_FIELDS = {
    "grounds": N_("Your grounds"),
    "contact": N_("Your contact"),
    "appellant": N_("Who you are"),
    "measure_id": N_("Measure"),
    "item_id": N_("Item"),
    "body": N_("The form"),
}


class Wording:
    """The public pages' vocabulary for one reader."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self._ = reader.gettext

    # numbers -------------------------------------------------------------------------------

    def number(self, value: float | int) -> str:
        return format_decimal(value, locale=self.reader.locale)

    def percent(self, value: float) -> str:
        """``value`` in percent (50 → "50%")."""
        return format_percent(value / 100, "#,##0.#%", locale=self.reader.locale)

    # measures ------------------------------------------------------------------------------

    def action(self, action: str, rate_kbps: int | None = None) -> str:
        """ "blocked" or "slowed to 128 kbit/s"."""
        if action == "throttle":
            if rate_kbps:
                return self._("slowed to %(rate)s kbit/s", rate=self.number(rate_kbps))
            return self._("slowed")
        return self._(_ACTIONS.get(action, action))

    def content(self, classes: list[str] | tuple[str, ...]) -> str:
        """What content: "all content", or "photos and videos, links"."""
        if not classes or "*" in classes:
            return self._("all content")
        return self._join([self._(_CLASSES[c]) if c in _CLASSES else c for c in classes])

    def content_class(self, content_class: str | None) -> str:
        if not content_class or content_class in ("*", "any"):
            return self._("all content")
        return self._(_CLASSES[content_class]) if content_class in _CLASSES else content_class

    def scope(self, scope: dict[str, float]) -> str:
        """Who is reached: "all mobile subscribers and half of fixed-line subscribers"."""
        if scope and all(v >= 100 for v in scope.values()):
            return self._("all subscribers")
        named = {k: v for k, v in scope.items() if k != "*"}
        rest = scope.get("*")
        parts = [self._share(k, v) for k, v in sorted(named.items(), key=_scope_order) if v > 0]
        if rest is None and not named:
            rest = 100.0
        if rest:
            parts.append(self._share("other" if named else "*", rest))
        if not parts:
            return self._("no subscribers")
        return self._join(parts)

    def _share(self, kind: str, percent: float) -> str:
        key = kind if kind in _SUBSCRIBERS_ALL else None
        if key is None:
            return self._(
                "%(percent)s of %(kind)s subscribers", percent=self.percent(percent), kind=kind
            )
        if percent >= 100:
            return self._(_SUBSCRIBERS_ALL[key])
        if percent == 50:
            return self._(_SUBSCRIBERS_HALF[key])
        return self._(_SUBSCRIBERS_SHARE[key], percent=self.percent(percent))

    def _join(self, parts: list[str]) -> str:
        if len(parts) <= 1:
            return "".join(parts)
        return self._("%(first)s and %(last)s", first=", ".join(parts[:-1]), last=parts[-1])

    def state(self, state: str) -> str:
        return self._(_STATES[state]) if state in _STATES else state

    def ends(self, review_at: str | datetime | None, expires_at: str | datetime | None) -> str:
        """Until when a measure holds, the same words on every page: its end date (and
        review), or that it has none."""
        dt = self.reader.datetime
        if expires_at and review_at and _same(expires_at, review_at):
            return self._("until %(date)s, unless renewed on review", date=dt(expires_at))
        if expires_at and review_at:
            return self._(
                "until %(date)s; reviewed on %(review)s", date=dt(expires_at), review=dt(review_at)
            )
        if expires_at:
            return self._("until %(date)s", date=dt(expires_at))
        if review_at:
            return self._("no end date set; reviewed on %(review)s", review=dt(review_at))
        return self._("no end date set; in force until lifted by a decision")

    def role(self, role: str) -> str:
        return self._(_ROLES[role]) if role in _ROLES else role

    def figure(self, key: str) -> str:
        """A ledger figure's name in words (``removed_share`` → "share removed or withheld")."""
        if key in _FIGURES:
            return self._(_FIGURES[key])
        call = _CALL.match(key)
        if call and call["name"] in _FUNCTIONS:
            arg = call["arg"].strip().strip("'\"")
            return self._(_FUNCTIONS[call["name"]], arg=arg)
        return key

    def figure_value(self, key: str, value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool) or not isinstance(value, int | float):
            if key == "as_of":
                return self.reader.datetime(str(value))
            return str(value)
        if key.endswith("_share") or key.startswith("removed_share_change"):
            return self.percent(value * 100)
        if key.endswith("_h"):
            return self._("%(hours)s h", hours=self.number(round(value, 1)))
        return self.number(value)

    def figures(self, figures: dict[str, Any]) -> list[tuple[str, str]]:
        return [(self.figure(k), self.figure_value(k, v)) for k, v in figures.items()]

    # the register --------------------------------------------------------------------------

    def category(self, code: str) -> str:
        return config_mod.default().category_name(code, self.reader.language)

    def categories(self, counts: dict[str, int]) -> str:
        return ", ".join(f"{self.category(c)}: {self.number(n)}" for c, n in counts.items())

    def obligation(self, kind: str) -> str:
        return self._(_OBLIGATIONS[kind]) if kind in _OBLIGATIONS else kind

    def obligation_state(self, state: str) -> str:
        return self._(_OBLIGATION_STATES[state]) if state in _OBLIGATION_STATES else state

    # appeals -------------------------------------------------------------------------------

    def appellant(self, kind: str) -> str:
        return self._(_APPELLANTS[kind]) if kind in _APPELLANTS else kind

    def appellants(self) -> list[tuple[str, str]]:
        return [(k, self._(v)) for k, v in _APPELLANTS.items()]

    def appeal_state(self, state: str) -> str:
        return self._(_APPEAL_STATES[state]) if state in _APPEAL_STATES else state

    def appeal_text(self, text: str) -> str:
        """How to appeal: the shipped default in the reader's language, else as configured."""
        return self._(_DEFAULT_APPEAL) if text == _DEFAULT_APPEAL else text

    def field(self, where: str | None) -> str:
        return self._(_FIELDS[where]) if where in _FIELDS else (where or "")

    def helpers(self) -> dict[str, Any]:
        """What the public templates are given: these words and the reader's dates."""
        return {
            "words": self,
            "when": self.reader.datetime,
            "day": self.reader.date,
            "href": self.reader.href,
        }


def _scope_order(item: tuple[str, float]) -> tuple[int, str]:
    order = {"mobile": 0, "fixed": 1}
    return (order.get(item[0], 2), item[0])


def _same(a: str | datetime, b: str | datetime) -> bool:
    def parse(v: str | datetime) -> datetime:
        return v if isinstance(v, datetime) else datetime.fromisoformat(v)

    try:
        return parse(a) == parse(b)
    except ValueError:
        return a == b
