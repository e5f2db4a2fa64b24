"""Host patterns checked for the matcher: the plain-name fast path, the public suffix
list's rules, and the bulk check of a whole rule list at compile time (one pass over the
joined patterns instead of a call per rule: a 1M-rule compile spent most of its time in
the per-rule check, bench match)."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from takedown import names

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
# A name this accepts is its own normal form: ``normalise_host(name) == name``. Names with
# an ``xn--`` anywhere, upper case, a trailing dot or non-ASCII take the slow path.
plain_host = re.compile(
    rf"(?!.*xn--)(?=.{{1,{names.MAX_NAME}}}\Z){_LABEL}(?:\.{_LABEL})*"
).fullmatch

labels = re.compile(rf"{_LABEL}(?:\.{_LABEL})*").fullmatch
# Any character that normalising could change or refuse (upper case, space, non-ASCII).
odd_char = re.compile(r"[^a-z0-9_.\-]").search


def psl_rules() -> frozenset[str] | set[str] | None:
    rules = getattr(names._psl(), "_publicsuffix", None)
    return rules if isinstance(rules, set | frozenset) else None


def parse_host_rule(pattern: str) -> tuple[str, bool]:
    """Normalise a host pattern to (base, is_wildcard); PatternError if malformed or too broad.

    Same result as ``takedown.names.split_pattern``, which it calls for anything but a plain
    lower-case ASCII pattern that cannot be near a public suffix.
    """
    return split_fast(pattern, psl_rules())


def split_fast(pattern: str, psl_rules: set[str] | frozenset[str] | None) -> tuple[str, bool]:
    if psl_rules is not None and type(pattern) is str:
        wildcard = pattern.startswith("*.")
        base = pattern[2:] if wildcard else pattern
        # Short plain names (every label then at most 63 characters) skip the regex.
        if (
            0 < len(base) < 64
            and "xn--" not in base
            and ".." not in base
            and ".-" not in base
            and "-." not in base
            and base[0] not in "-."
            and base[-1] not in "-.0123456789"
            and odd_char(base) is None
        ) or (plain_host(base) and not base[-1].isdigit()):
            dot = base.find(".")
            # publicsuffixlist can only call ``base`` public if the PSL holds ``base``,
            # ``*.base`` or ``*.parent``; otherwise the full check cannot refuse it.
            if (
                dot > 0
                and base not in psl_rules
                and "*." + base not in psl_rules
                and "*." + base[dot + 1 :] not in psl_rules
            ):
                return base, wildcard
    return names.split_pattern(pattern)


@functools.cache
def _psl_wildcard_bases() -> frozenset[str]:
    """``x`` for every ``*.x`` rule of the public suffix list."""
    return frozenset(r[2:] for r in psl_rules() or () if r.startswith("*."))


# What a list of patterns, joined by newlines, must not contain for every pattern to be a
# plain name ``split_fast`` would accept without ``names.split_pattern``.
_BULK_ODD = re.compile(r"[^a-z0-9_.\n-]").search
_BULK_BAD = ("xn--", "..", ".-", "-.")
_BULK_BAD_END = re.compile(r"[0-9.-]\n").search
_BULK_BAD_START = re.compile(r"\n(?:[.-]|[^.\n]*\n)").search  # or no dot at all


def plain_bases(rules: Sequence[tuple[str, object]]) -> list[str] | None:
    """Every pattern's base, if each is one ``split_fast`` accepts on its fast path;
    None if any is not (the caller then checks them one by one and names the bad one).

    Checked in bulk, over all the patterns joined, not per rule: a 1M-rule compile spent
    most of its time in ``split_fast`` (bench match)."""
    psl = psl_rules()
    if psl is None or not rules:
        return None
    try:
        patterns = [p for p, _ in rules]
    except (TypeError, ValueError):  # not a pair: one by one, with errors
        return None
    if set(map(type, patterns)) != {str}:
        return None
    text = "\n" + "\n".join(patterns) + "\n"
    text = text.replace("\n*.", "\n")
    if _BULK_ODD(text) or _BULK_BAD_END(text) or _BULK_BAD_START(text):
        return None
    if any(bad in text for bad in _BULK_BAD):
        return None
    bases = text[1:-1].split("\n")
    if len(bases) != len(rules):
        return None
    if max(map(len, bases)) >= 64 and not all(plain_host(b) for b in bases if len(b) >= 64):
        return None
    # publicsuffixlist can only call a base public if the PSL holds it, ``*.base`` or
    # ``*.parent`` (see split_fast)
    wild_psl = _psl_wildcard_bases()
    if not (psl.isdisjoint(bases) and wild_psl.isdisjoint(bases)):
        return None
    if not wild_psl.isdisjoint({b[b.find(".") + 1 :] for b in bases}):
        return None
    return bases
