"""Answer tables the matcher precomputes at compile time, so that a query stops at its
first hit: wildcard suffixes and exact names with every wildcard above them, and IP
prefixes with every shorter prefix covering them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

K = TypeVar("K")


def suffix_answers(wild: dict[str, tuple[K, ...]]) -> dict[str, tuple[K, ...]]:
    """Every suffix of two labels or more of a wildcard base -> the keys of the wildcards
    at or above it, nearest first (``()`` for a suffix that is below no wildcard).

    A name's proper suffixes can be walked from the shortest and the walk stopped at the
    first one missing: no wildcard base lies above it."""
    answers = dict(wild)
    # names of three labels or more: only these have a parent that may be in the table
    deep = [b for b in wild if b.count(".") > 1]
    level = deep
    while level:
        new = {p for b in level if (p := b[b.find(".") + 1 :]) not in answers}
        answers.update(dict.fromkeys(new, ()))
        level = [p for p in new if p.count(".") > 1]
        deep += level
    deep.sort(key=len)  # a parent is shorter: its answer is final before its children's
    for name in deep:
        inherited = answers[name[name.find(".") + 1 :]]
        if inherited:
            answers[name] = (*answers[name], *inherited)
    return answers


def exact_answers(
    exact: dict[str, tuple[K, ...]], suffixes: dict[str, tuple[K, ...]]
) -> dict[str, tuple[K, ...]]:
    """Exact name -> its keys and those of every wildcard above it."""
    full = dict(exact)
    if not suffixes:
        return full
    get = suffixes.get
    for name, keys in exact.items():
        # from the shortest proper suffix (two labels) while it is a wildcard's suffix
        i = name.rfind(".", 0, name.rfind("."))
        inherited = None
        while i >= 0:
            found = get(name[i + 1 :])
            if found is None:
                break
            inherited = found
            i = name.rfind(".", 0, i)
        if inherited:
            full[name] = (*keys, *inherited)
    return full


def ip_chains(
    tables: list[tuple[int, int, dict[int, list[K]]]],
) -> list[tuple[int, dict[int, tuple[K, ...]]]]:
    """Per prefix length (longest first): (shift, {slot: keys of it and every shorter cover})."""
    shorter: list[tuple[int, dict[int, tuple[K, ...]]]] = []  # built so far, longest first
    for plen, _shift, table in reversed(tables):
        inherited: dict[int, tuple[K, ...]] = {}
        remaining: Iterable[int] = table
        for length, covers in shorter:  # the nearest cover holds the farther ones
            delta = plen - length
            get = covers.get
            found = {s: c for s in remaining if (c := get(s >> delta)) is not None}
            if found:
                inherited.update(found)
                remaining = [s for s in remaining if s not in found]
        get = inherited.get
        chains = {s: (*keys, *get(s, ())) for s, keys in table.items()}
        shorter.insert(0, (plen, chains))
    return [(shift, chains) for (_p, shift, _t), (_l, chains) in zip(tables, shorter, strict=True)]
