"""Categories and jurisdiction profiles: shipped TOML, overridable by a file."""

from __future__ import annotations

import functools
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from takedown.errors import InputError

# The profile of whatever answers to no platform (register items without one), as for
# deadlines.
DEFAULT_PROFILE = "ru-2021"
# How long staff have to decide an appeal unless the profile says otherwise.
DEFAULT_APPEAL_DEADLINE = "30d"
# The broadest register IP prefix a profile admits unless it says otherwise.
DEFAULT_MIN_PREFIX_V4 = 16
DEFAULT_MIN_PREFIX_V6 = 32

_PROFILE_KEYS = frozenset(
    {
        "name",
        "default_deadline",
        "deadlines",
        "appeal_deadline",
        "min_prefix_v4",
        "min_prefix_v6",
        "language",
    }
)
# The language of a profile's public (its public pages' default) unless it says otherwise.
DEFAULT_LANGUAGE = "en"
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, *, where: str | None = None) -> timedelta:
    """'24h', '1h', '36h', '30m', '7d' → timedelta."""
    match = _DURATION.match(str(text))
    if not match:
        raise InputError(f"not a duration: {text!r} (use e.g. 24h, 30m, 7d)", where=where)
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


@dataclass(frozen=True)
class Profile:
    code: str
    name: str
    default_deadline: timedelta
    deadlines: dict[str, timedelta] = field(default_factory=dict)
    # register IP targets broader than these prefixes are refused (registry.breadth)
    min_prefix_v4: int = DEFAULT_MIN_PREFIX_V4
    min_prefix_v6: int = DEFAULT_MIN_PREFIX_V6
    # staff decide an appeal within this of its filing (takedown.appeals)
    appeal_deadline: timedelta = timedelta(days=30)
    # the language its public reads (ISO 639-1): the public pages' default (web.i18n)
    language: str = DEFAULT_LANGUAGE

    def deadline_for(self, category: str) -> timedelta:
        """The removal deadline for ``category`` under this profile."""
        return self.deadlines.get(category, self.default_deadline)


# The standard PDQ match: Hamming distance at most 31 of 256 bits, both hashes of quality
# at least 50 (Meta's recommendation for PDQ); [pdq] and [pdq.categories.CODE] change them.
DEFAULT_PDQ_DISTANCE = 31
DEFAULT_PDQ_QUALITY = 50


@dataclass(frozen=True)
class PdqThreshold:
    """When two PDQ hashes are the same media: distance and quality bounds."""

    max_distance: int = DEFAULT_PDQ_DISTANCE
    min_quality: int = DEFAULT_PDQ_QUALITY


@dataclass(frozen=True)
class Config:
    categories: dict[str, str]
    profiles: dict[str, Profile]
    # category names in other languages: language -> code -> name ([category_names.LANG])
    category_names: dict[str, dict[str, str]] = field(default_factory=dict)
    # media matching ([pdq]): the default, and per category ([pdq.categories.CODE])
    pdq: PdqThreshold = PdqThreshold()
    pdq_by_category: dict[str, PdqThreshold] = field(default_factory=dict)

    def pdq_threshold(self, category: str) -> PdqThreshold:
        """The PDQ match bounds for media of ``category``."""
        return self.pdq_by_category.get(category, self.pdq)

    def category_name(self, code: str, language: str | None = None) -> str:
        """The name of category ``code`` in ``language`` (else its name, else the code)."""
        names = self.category_names.get(language or "", {})
        return names.get(code) or self.categories.get(code, code)

    def check_category(self, code: str, *, where: str | None = None) -> str:
        """Return ``code`` if known, else raise naming the known codes."""
        if code not in self.categories:
            known = ", ".join(sorted(self.categories))
            raise InputError(f"unknown category {code!r}; known: {known}", where=where)
        return code

    def profile(self, code: str | None = None, *, where: str | None = None) -> Profile:
        """The profile ``code`` (default: ``DEFAULT_PROFILE``); raise naming the known ones."""
        if code is None:
            code = DEFAULT_PROFILE
        try:
            return self.profiles[code]
        except KeyError:
            known = ", ".join(sorted(self.profiles))
            raise InputError(f"unknown profile {code!r}; known: {known}", where=where) from None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML: {exc}", where=where) from None


def _prefix(spec: dict[str, Any], key: str, bits: int, default: int, place: str) -> int:
    value = spec.get(key, default)
    # bool is an int to Python; `true` is not a prefix length
    if type(value) is not int or not 0 <= value <= bits:
        raise InputError(
            f"{key} must be a whole number from 0 to {bits}, not {value!r}", where=f"{place}.{key}"
        )
    return value


def _positive(value: timedelta, *, where: str) -> timedelta:
    if value <= timedelta(0):
        raise InputError("must be longer than zero", where=where)
    return value


def build(data: dict[str, Any], where: str) -> Config:
    """Validate merged configuration data."""
    categories = data.get("categories", {})
    if not isinstance(categories, dict) or not all(isinstance(v, str) for v in categories.values()):
        raise InputError("[categories] must map codes to names", where=f"{where}: categories")
    profiles: dict[str, Profile] = {}
    for code, spec in data.get("profiles", {}).items():
        place = f"{where}: profiles.{code}"
        unknown = set(spec) - _PROFILE_KEYS
        if unknown:
            raise InputError(f"unknown keys {sorted(unknown)}", where=place)
        deadlines = {}
        for cat, text in spec.get("deadlines", {}).items():
            if cat not in categories:
                raise InputError(f"unknown category {cat!r}", where=f"{place}.deadlines")
            deadlines[cat] = parse_duration(text, where=f"{place}.deadlines.{cat}")
        profiles[code] = Profile(
            code=code,
            name=spec.get("name", code),
            default_deadline=parse_duration(
                spec.get("default_deadline", "24h"), where=f"{place}.default_deadline"
            ),
            deadlines=deadlines,
            min_prefix_v4=_prefix(spec, "min_prefix_v4", 32, DEFAULT_MIN_PREFIX_V4, place),
            min_prefix_v6=_prefix(spec, "min_prefix_v6", 128, DEFAULT_MIN_PREFIX_V6, place),
            appeal_deadline=_positive(
                parse_duration(
                    spec.get("appeal_deadline", DEFAULT_APPEAL_DEADLINE),
                    where=f"{place}.appeal_deadline",
                ),
                where=f"{place}.appeal_deadline",
            ),
            language=_language(spec.get("language", DEFAULT_LANGUAGE), f"{place}.language"),
        )
    names = data.get("category_names", {})
    place = f"{where}: category_names"
    if not isinstance(names, dict) or not all(isinstance(v, dict) for v in names.values()):
        raise InputError("[category_names.LANG] must map codes to names", where=place)
    for language, table in names.items():
        _language(language, f"{place}.{language}")
        for cat, name in table.items():
            if cat not in categories:
                raise InputError(f"unknown category {cat!r}", where=f"{place}.{language}")
            if not isinstance(name, str):
                raise InputError("a name must be text", where=f"{place}.{language}.{cat}")
    pdq, pdq_by_category = _pdq(data.get("pdq", {}), categories, f"{where}: pdq")
    return Config(
        categories=dict(categories),
        profiles=profiles,
        category_names={k: dict(v) for k, v in names.items()},
        pdq=pdq,
        pdq_by_category=pdq_by_category,
    )


def _pdq_bound(spec: dict[str, Any], key: str, top: int, default: int, place: str) -> int:
    value = spec.get(key, default)
    if type(value) is not int or not 0 <= value <= top:
        raise InputError(f"must be a whole number from 0 to {top}, not {value!r}", where=place)
    return value


def _pdq_threshold(spec: object, base: PdqThreshold, place: str) -> PdqThreshold:
    if not isinstance(spec, dict):
        raise InputError("must be a table", where=place)
    unknown = set(spec) - {"max_distance", "min_quality", "categories"}
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)}", where=place)
    return PdqThreshold(
        # beyond 63 bits PDQ no longer tells near-duplicates from unrelated images
        _pdq_bound(spec, "max_distance", 63, base.max_distance, f"{place}.max_distance"),
        _pdq_bound(spec, "min_quality", 100, base.min_quality, f"{place}.min_quality"),
    )


def _pdq(
    spec: object, categories: dict[str, str], place: str
) -> tuple[PdqThreshold, dict[str, PdqThreshold]]:
    base = _pdq_threshold(spec, PdqThreshold(), place)
    assert isinstance(spec, dict)
    by_category = spec.get("categories", {})
    if not isinstance(by_category, dict):
        raise InputError("must be a table of categories", where=f"{place}.categories")
    out = {}
    for cat, sub in by_category.items():
        if cat not in categories:
            raise InputError(f"unknown category {cat!r}", where=f"{place}.categories")
        if isinstance(sub, dict) and "categories" in sub:
            raise InputError("unknown keys ['categories']", where=f"{place}.categories.{cat}")
        out[cat] = _pdq_threshold(sub, base, f"{place}.categories.{cat}")
    return base, out


def check_language(value: object, *, where: str) -> str:
    """``value`` if it is a language code (``en``, ``ru``, ``de``), else raise."""
    return _language(value, where)


def _language(value: object, where: str) -> str:
    if not isinstance(value, str) or not _LANGUAGE.match(value):
        raise InputError(f"not a language code: {value!r} (use e.g. en, ru, de)", where=where)
    return value


def load(path: str | Path | None = None) -> Config:
    """Shipped defaults, overlaid with ``path`` or ``$TAKEDOWN_CONFIG`` if given."""
    shipped = resources.files("takedown.config").joinpath("defaults.toml").read_text("utf-8")
    data = _read_toml(shipped, "defaults.toml")
    override = path or os.environ.get("TAKEDOWN_CONFIG")
    if override:
        p = Path(override)
        try:
            text = p.read_text("utf-8")
        except OSError as exc:
            raise InputError(f"cannot read config: {exc.strerror}", where=str(p)) from None
        data = _merge(data, _read_toml(text, str(p)))
        return build(data, str(p))
    return build(data, "defaults.toml")


@functools.lru_cache(maxsize=1)
def default() -> Config:
    """The configuration in effect for this process (cached)."""
    return load()
