"""The ladder file: TOML, parsed and validated with errors naming file, rule and field.

::

    [ladder]
    name = "ru-2021"
    min_change_period = "1d"     # hysteresis: a rule's measure changes at most once per period
    renew_within = "10d"         # renewal is proposed this long before review_at

    [[rule]]                     # default rules, for every platform
    name = "slowdown"
    when = "overdue > 0"         # condition language: takedown.policy.expr
    renew_when = "remaining > 0" # optional; default: the same as `when`
    action = "throttle"          # throttle | block | lift
    rate_kbps = 128
    classes = ["media"]          # content classes of the platform's hosts; ["*"] = all
    scope = { mobile = 100, fixed = 50 }   # percent of each subscriber class
    review = "36d"               # the measure expires this long after it starts...
    renew = "30d"                # ...unless renewed (review_at moves on by this much)
    needs_approval = false       # a block always needs approval
    replaces = []                # measure rules this one supersedes while it is active

    [[rule]]
    name = "lift-fixed"
    when = "removed_share >= 90%"
    action = "lift"
    lifts = "slowdown"           # the measure rule whose scope it lifts
    scope = ["fixed"]            # subscriber classes lifted; omitted = all

    [[platform.twitter.rule]]    # a platform's own list replaces the defaults for it
    ...

A measure, once started, stays (its scope can only shrink by lift rules) until it is
lifted, replaced, or reaches review_at without renewal.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from takedown.errors import InputError
from takedown.model import MeasureAction, describe_action
from takedown.policy import expr
from takedown.policy.expr import ExprError, Node

SUBSCRIBER_CLASSES = ("mobile", "fixed")
LIFT = "lift"
ACTIONS = ("throttle", "block", LIFT)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
_LADDER_KEYS = {"name", "description", "min_change_period", "renew_within"}
_TOP_KEYS = {"ladder", "rule", "platform"}
_RULE_KEYS = {
    "name",
    "description",
    "when",
    "renew_when",
    "action",
    "rate_kbps",
    "classes",
    "scope",
    "review",
    "renew",
    "needs_approval",
    "replaces",
    "lifts",
    "min_change_period",
}


@dataclass(frozen=True)
class Rule:
    """One rung of the ladder. ``scope`` for a lift rule is the classes it lifts (as 100)."""

    name: str
    when: Node
    when_text: str
    action: str  # throttle | block | lift
    rate_kbps: int | None = None
    classes: tuple[str, ...] = ()  # empty = all of the platform's hosts
    scope: Mapping[str, float] = field(default_factory=dict)
    review: timedelta = timedelta(days=30)
    renew: timedelta = timedelta(days=30)
    renew_when: Node | None = None
    needs_approval: bool = False
    replaces: tuple[str, ...] = ()
    lifts: str | None = None
    min_change_period: timedelta | None = None
    description: str = ""

    @property
    def is_measure(self) -> bool:
        return self.action != LIFT

    @property
    def measure_action(self) -> MeasureAction:
        return MeasureAction(self.action)


@dataclass(frozen=True)
class Ladder:
    name: str
    rules: tuple[Rule, ...]
    platform_rules: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    min_change_period: timedelta = timedelta(days=1)
    renew_within: timedelta = timedelta(days=7)
    source: str = "<ladder>"
    digest: str = ""
    description: str = ""

    def rules_for(self, platform: str) -> tuple[Rule, ...]:
        """The platform's own rule list if it has one, else the defaults."""
        return self.platform_rules.get(platform, self.rules)

    @property
    def label(self) -> str:
        """Name plus a short content digest: what measures record as their ladder."""
        return f"{self.name}@{self.digest[:12]}" if self.digest else self.name

    def all_rule_lists(self) -> list[tuple[str | None, tuple[Rule, ...]]]:
        return [(None, self.rules), *sorted(self.platform_rules.items())]

    def history_days(self) -> set[int]:
        """Day offsets of earlier figures the conditions read (change over N days)."""
        out: set[int] = set()
        for _, rules in self.all_rule_lists():
            for rule in rules:
                for node in (rule.when, rule.renew_when):
                    for call in expr.calls(node) if node is not None else []:
                        if call.value in ("removed_share_change", "change"):
                            out.add(int(call.args[-1].value))
        return out

    def windows(self) -> set[int]:
        """Day counts of new-item windows the conditions read (the shell computes those)."""
        out: set[int] = set()
        for _, rules in self.all_rule_lists():
            for rule in rules:
                for node in (rule.when, rule.renew_when):
                    if node is None:
                        continue
                    for call in expr.calls(node):
                        if call.value in ("new_items", "new_items_on_time_share"):
                            out.add(int(call.args[0].value))
        return out


def parse_duration(value: Any, where: str) -> timedelta:
    m = _DURATION.match(value) if isinstance(value, str) else None
    if not m:
        raise InputError(f"not a duration: {value!r} (use e.g. 12h, 30d, 2w)", where=where)
    delta = timedelta(seconds=float(m[1]) * _UNITS[m[2]])
    if delta <= timedelta(0):
        raise InputError("duration must be positive", where=where)
    return delta


def load(path: str | Path) -> Ladder:
    """Read and validate a ladder file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read ladder: {exc.strerror}", where=str(p)) from None
    return loads(data.decode("utf-8", errors="replace"), source=str(p))


def loads(text: str, *, source: str = "<ladder>") -> Ladder:
    """Parse and validate ladder text; ``source`` names the file in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{source}:{m[1]}" if m else source
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        col = f" (column {m[2]})" if m else ""
        raise InputError(f"TOML syntax error: {msg}{col}", where=where) from None
    return build(data, source=source, digest=hashlib.sha256(text.encode()).hexdigest())


def build(data: Mapping[str, Any], *, source: str = "<ladder>", digest: str = "") -> Ladder:
    """Validate parsed TOML into a Ladder."""
    _unknown(data, _TOP_KEYS, source)
    head = data.get("ladder", {})
    if not isinstance(head, dict):
        raise InputError("[ladder] must be a table", where=f"{source}: ladder")
    _unknown(head, _LADDER_KEYS, f"{source}: [ladder]")
    name = head.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(
            "a ladder needs a name (lower-case letters, digits, - _ .)",
            where=f"{source}: [ladder] field 'name'",
        )
    min_period = parse_duration(
        head.get("min_change_period", "1d"), f"{source}: [ladder] field 'min_change_period'"
    )
    renew_within = parse_duration(
        head.get("renew_within", "7d"), f"{source}: [ladder] field 'renew_within'"
    )
    rules = _rule_list(data.get("rule", []), source, "rule")
    platform_rules: dict[str, tuple[Rule, ...]] = {}
    plat = data.get("platform", {})
    if not isinstance(plat, dict):
        raise InputError("[platform] must be a table of platforms", where=f"{source}: platform")
    for slug, table in plat.items():
        where = f"{source}: platform.{slug}"
        if not isinstance(table, dict):
            raise InputError("must be a table", where=where)
        _unknown(table, {"rule"}, where)
        platform_rules[slug] = _rule_list(table.get("rule", []), source, f"platform.{slug}.rule")
    if not rules and not platform_rules:
        raise InputError("a ladder needs at least one [[rule]]", where=source)
    ladder = Ladder(
        name=name,
        rules=rules,
        platform_rules=platform_rules,
        min_change_period=min_period,
        renew_within=renew_within,
        source=source,
        digest=digest,
        description=str(head.get("description", "")),
    )
    for prefix, rule_list in ladder.all_rule_lists():
        check_contradictions(rule_list, source, prefix)
    return ladder


def _unknown(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise InputError(
                f"unknown field {key!r} (allowed: {', '.join(sorted(allowed))})", where=where
            )


def _rule_list(raw: Any, source: str, path: str) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        raise InputError("must be an array of tables ([[rule]])", where=f"{source}: {path}")
    names: list[str] = []
    for i, table in enumerate(raw):
        if not isinstance(table, dict):
            raise InputError("must be a table", where=f"{source}: {path}[{i}]")
        name = table.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InputError(
                "a rule needs a name (lower-case letters, digits, - _ .)",
                where=f"{source}: {path}[{i}] field 'name'",
            )
        if name in names:
            raise InputError("duplicate rule name", where=f"{source}: rule {name!r} field 'name'")
        names.append(name)
    known = frozenset(names)
    rules = tuple(_rule(t, source, known) for t in raw)
    by_name = {r.name: r for r in rules}
    for rule in rules:
        where = f"{source}: rule {rule.name!r}"
        if rule.lifts is not None:
            target = by_name.get(rule.lifts)
            if target is None or not target.is_measure:
                raise InputError(
                    f"lifts {rule.lifts!r}, which is not a throttle or block rule of this ladder",
                    where=f"{where} field 'lifts'",
                )
        for other in rule.replaces:
            target = by_name.get(other)
            if target is None or not target.is_measure or other == rule.name:
                raise InputError(
                    f"replaces {other!r}, which is not another throttle or block rule",
                    where=f"{where} field 'replaces'",
                )
    return rules


def _rule(t: Mapping[str, Any], source: str, known: frozenset[str]) -> Rule:
    """One ``[[rules]]`` table: what every rule has, then a lift's or a measure's own fields."""
    name = t["name"]
    where = f"{source}: rule {name!r}"
    _unknown(t, _RULE_KEYS, where)

    def field_where(f: str) -> str:
        return f"{where} field {f!r}"

    action = t.get("action")
    if action not in ACTIONS:
        raise InputError(f"action must be one of {', '.join(ACTIONS)}", where=field_where("action"))
    when_text = t.get("when")
    if not isinstance(when_text, str):
        raise InputError("a rule needs a condition (a string)", where=field_where("when"))
    when = _condition(when_text, known, field_where("when"))
    renew_when = None
    if "renew_when" in t:
        if action == LIFT:
            raise InputError("a lift rule is not renewed", where=field_where("renew_when"))
        renew_text = t["renew_when"]
        if not isinstance(renew_text, str):
            raise InputError("must be a condition string", where=field_where("renew_when"))
        renew_when = _condition(renew_text, known, field_where("renew_when"))
    min_period = None
    if "min_change_period" in t:
        min_period = parse_duration(t["min_change_period"], field_where("min_change_period"))
    common: dict[str, Any] = {
        "name": name,
        "when": when,
        "when_text": when_text,
        "min_change_period": min_period,
        "description": str(t.get("description", "")),
    }
    if action == LIFT:
        return _lift_rule(t, field_where, common)
    return _measure_rule(t, action, renew_when, field_where, common)


def _lift_rule(
    t: Mapping[str, Any], field_where: Callable[[str], str], common: dict[str, Any]
) -> Rule:
    for f in ("rate_kbps", "classes", "review", "renew", "needs_approval", "replaces"):
        if f in t:
            raise InputError("not allowed on a lift rule", where=field_where(f))
    lifts = t.get("lifts")
    if not isinstance(lifts, str):
        raise InputError("a lift rule names the rule it lifts", where=field_where("lifts"))
    raw_scope = t.get("scope", list(SUBSCRIBER_CLASSES))
    if not isinstance(raw_scope, list) or not raw_scope:
        raise InputError(
            "a lift rule's scope is a list of subscriber classes", where=field_where("scope")
        )
    for cls in raw_scope:
        if cls not in SUBSCRIBER_CLASSES:
            raise InputError(
                f"unknown subscriber class {cls!r} ({', '.join(SUBSCRIBER_CLASSES)})",
                where=field_where("scope"),
            )
    return Rule(**common, action=LIFT, scope={c: 100.0 for c in raw_scope}, lifts=lifts)


def _measure_rule(
    t: Mapping[str, Any],
    action: str,
    renew_when: Node | None,
    field_where: Callable[[str], str],
    common: dict[str, Any],
) -> Rule:
    if "lifts" in t:
        raise InputError("only a lift rule lifts", where=field_where("lifts"))
    rate = t.get("rate_kbps")
    if action == "throttle":
        if rate is None:
            raise InputError("a throttle needs a rate", where=field_where("rate_kbps"))
        if isinstance(rate, bool) or not isinstance(rate, int) or not 1 <= rate <= 10_000_000:
            raise InputError(
                "rate_kbps must be a whole number of kbit/s, 1..10000000",
                where=field_where("rate_kbps"),
            )
    elif rate is not None:
        raise InputError("a block has no rate", where=field_where("rate_kbps"))
    needs_approval = t.get("needs_approval", False)
    if not isinstance(needs_approval, bool):
        raise InputError("must be true or false", where=field_where("needs_approval"))
    if action == "block" and not needs_approval:
        raise InputError(
            "a block always needs approval: set needs_approval = true",
            where=field_where("needs_approval"),
        )
    classes = _content_classes(t.get("classes", ["*"]), field_where("classes"))
    scope = _scope(t.get("scope"), field_where("scope"))
    replaces = t.get("replaces", [])
    if not isinstance(replaces, list) or not all(isinstance(r, str) for r in replaces):
        raise InputError("replaces is a list of rule names", where=field_where("replaces"))
    return Rule(
        **common,
        action=action,
        rate_kbps=rate,
        classes=classes,
        scope=scope,
        review=parse_duration(t.get("review", "30d"), field_where("review")),
        renew=parse_duration(t.get("renew", t.get("review", "30d")), field_where("renew")),
        renew_when=renew_when,
        needs_approval=needs_approval,
        replaces=tuple(replaces),
    )


def _content_classes(raw: Any, where: str) -> tuple[str, ...]:
    """A rule's content classes; () for all (``["*"]``)."""
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(c, str) and (c == "*" or _NAME.match(c)) for c in raw)
    ):
        raise InputError(
            'classes is a non-empty list of content classes (e.g. ["media"]) or ["*"]',
            where=where,
        )
    if "*" in raw and len(raw) > 1:
        raise InputError('"*" (all classes) cannot be combined', where=where)
    return () if raw == ["*"] else tuple(sorted(set(raw)))


def _scope(raw: Any, where: str) -> dict[str, float]:
    if raw is None:
        raise InputError("a measure needs a scope, e.g. { mobile = 100, fixed = 50 }", where=where)
    if not isinstance(raw, dict) or not raw:
        raise InputError("scope is a table of subscriber class = percent", where=where)
    out: dict[str, float] = {}
    for cls, pct in raw.items():
        if cls not in SUBSCRIBER_CLASSES:
            raise InputError(
                f"unknown subscriber class {cls!r} ({', '.join(SUBSCRIBER_CLASSES)})",
                where=f"{where}.{cls}",
            )
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not math.isfinite(pct):
            raise InputError("a percentage must be a number", where=f"{where}.{cls}")
        if not 0 <= pct <= 100:
            raise InputError(f"impossible scope {pct}%: must be 0..100", where=f"{where}.{cls}")
        if pct > 0:
            out[cls] = float(pct)
    if not out:
        raise InputError("scope covers no subscribers (all 0%)", where=where)
    return out


def _condition(text: str, known: frozenset[str], where: str) -> Node:
    try:
        return expr.parse(text, rule_names=known)
    except ExprError as exc:
        raise InputError(exc.message, where=where) from None


# --- contradictions ---------------------------------------------------------------------

_Interval = tuple[float, bool, float, bool]  # lo, lo inclusive, hi, hi inclusive


def _atoms(node: Node) -> list[tuple[str, str, Any]]:
    """(key, op, constant) for each comparison of the top-level 'and' chain."""
    if node.kind == "op" and node.value == "and":
        return _atoms(node.args[0]) + _atoms(node.args[1])
    flip = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
    if node.kind == "op" and node.value in flip:
        left, right = node.args
        if _is_const(right) and left.kind in ("name", "call"):
            return [(left.text(), node.value, _const(right))]
        if _is_const(left) and right.kind in ("name", "call"):
            return [(right.text(), flip[node.value], _const(left))]
    return []


def _is_const(node: Node) -> bool:
    return node.kind in ("num", "str") or (node.kind == "neg" and _is_const(node.args[0]))


def _const(node: Node) -> Any:
    return -_const(node.args[0]) if node.kind == "neg" else node.value


def _interval(op: str, c: float) -> _Interval:
    inf = math.inf
    return {
        "<": (-inf, False, c, False),
        "<=": (-inf, False, c, True),
        ">": (c, False, inf, False),
        ">=": (c, True, inf, False),
        "==": (c, True, c, True),
    }[op]


def _meet(a: _Interval, b: _Interval) -> _Interval | None:
    lo, lo_in = max((a[0], a[1]), (b[0], b[1]), key=lambda x: (x[0], not x[1]))
    hi, hi_in = min((a[2], a[3]), (b[2], b[3]), key=lambda x: (x[0], x[1]))
    if lo > hi or (lo == hi and not (lo_in and hi_in)):
        return None
    return (lo, lo_in, hi, hi_in)


def disjoint(a: Node, b: Node) -> bool:
    """True if the two conditions provably cannot hold at once (comparisons with constants
    on the same figure in their top-level conjunctions have no common value)."""
    constraints: dict[str, list[tuple[str, Any]]] = {}
    for key, op, c in _atoms(a) + _atoms(b):
        constraints.setdefault(key, []).append((op, c))
    for items in constraints.values():
        strings = [(op, c) for op, c in items if isinstance(c, str)]
        if strings:
            eq = {c for op, c in strings if op == "=="}
            ne = {c for op, c in strings if op == "!="}
            if len(eq) > 1 or (eq and eq <= ne):
                return True
            continue
        iv: _Interval | None = (-math.inf, False, math.inf, False)
        excluded = []
        for op, c in items:
            if op == "!=":
                excluded.append(c)
                continue
            iv = _meet(iv, _interval(op, c)) if iv is not None else None
        if iv is None:
            return True
        if iv[0] == iv[2] and iv[0] in excluded:
            return True
    return False


def _overlap(a: Rule, b: Rule) -> list[str]:
    """Subscriber classes where both measures would apply to the same content."""
    if a.classes and b.classes and not set(a.classes) & set(b.classes):
        return []
    return sorted(set(a.scope) & set(b.scope))


def check_contradictions(rules: Sequence[Rule], source: str, prefix: str | None = None) -> None:
    """Refuse two measure rules that could apply different measures to the same content and
    subscribers at once, unless one replaces the other or their conditions are disjoint."""
    measures = [r for r in rules if r.is_measure]
    for i, a in enumerate(measures):
        for b in measures[i + 1 :]:
            if a.name in b.replaces or b.name in a.replaces:
                continue
            shared = _overlap(a, b)
            same = (
                a.action == b.action
                and a.rate_kbps == b.rate_kbps
                and all(a.scope[c] == b.scope[c] for c in shared)
            )
            if not shared or same or disjoint(a.when, b.when):
                continue
            what_a = describe_action(a.action, a.rate_kbps)
            what_b = describe_action(b.action, b.rate_kbps)
            where = f"{source}: rule {b.name!r} field 'when'"
            if prefix:
                where = f"{source}: {prefix}: rule {b.name!r} field 'when'"
            raise InputError(
                f"contradicts rule {a.name!r}: both can hold at once and apply {what_a} vs "
                f"{what_b} to {', '.join(shared)} subscribers "
                f"({a.scope[shared[0]]:g}% vs {b.scope[shared[0]]:g}%); make the conditions "
                "exclusive or declare `replaces`",
                where=where,
            )
