"""Host-name normalisation: the fast paths agree with the idna package's UTS-46."""

from __future__ import annotations

import idna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takedown.errors import PatternError
from takedown.names import (
    _ASCII_HOST,
    _ascii_label_ok,
    _psl,
    _psl_rules,
    is_public_suffix,
    normalise_host,
    punycode,
    split_pattern,
)

LABEL_CHARS = "абвгдежзийклмнопрстуфхцчшщъыьэюяёАБВГДЕЁЖЗЯabcXYZ019-"
labels = st.text(alphabet=LABEL_CHARS, min_size=1, max_size=14)


@settings(max_examples=400, deadline=None)
@given(st.lists(labels, min_size=1, max_size=4), st.booleans())
def test_normalise_agrees_with_uts46(parts: list[str], trailing_dot: bool) -> None:
    host = ".".join(parts) + ("." if trailing_dot else "")
    try:
        expected = idna.encode(host.rstrip("."), uts46=True, transitional=False).decode()
    except (idna.IDNAError, UnicodeError):
        expected = None
    try:
        got = normalise_host(host)
    except PatternError:
        got = None
    assert got == expected


def test_examples() -> None:
    assert normalise_host("Пример.РФ.") == "xn--e1afmkfd.xn--p1ai"
    assert normalise_host("PBS.Twimg.COM") == "pbs.twimg.com"
    assert split_pattern("*.Twimg.com.") == ("twimg.com", True)
    for bad in ("com", "*.co.uk", "com.ru", "*example.com", "a..b", "-x.com", "a.example.."):
        with pytest.raises(PatternError):
            split_pattern(bad)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=LABEL_CHARS + "üß中😀\u0300_.", max_size=24))
def test_punycode_agrees_with_the_codec(text: str) -> None:
    assert punycode(text) == text.encode("punycode").decode("ascii")


@settings(max_examples=1000, deadline=None)
@given(
    st.text(alphabet="az09_-.", max_size=70)
    | st.from_regex(r"[a-z]{60,66}(\.[a-z]{1,3})?", fullmatch=True)
)
def test_ascii_host_regex_agrees_with_the_label_check(host: str) -> None:
    # the regex stands for the label loop on lower-cased ASCII names
    by_labels = all(_ascii_label_ok(label) for label in host.split("."))
    assert (_ASCII_HOST.match(host) is not None) == by_labels


def test_public_suffix_check_agrees_with_the_list() -> None:
    """The set-lookup check says what the list's own walk says, for every rule of the list,
    the names one label above and below each (wildcards and exceptions included), and
    names the list does not know."""
    psl = _psl()
    names = {"com", "example.com", "a.b.example.com", "xn--p1ai", "xn--e1afmkfd.xn--p1ai"}
    for rule in _psl_rules():
        base = rule.lstrip("!*.")
        names |= {base, f"x.{base}", f"y.x.{base}", base.partition(".")[2]}
    names.discard("")
    assert len(names) > 10_000
    wrong = [n for n in names if is_public_suffix(n) != psl.is_public(n)]
    assert wrong == []
    # examples of each kind of rule: wildcard (*.ck), its exception (!www.ck), deep rules
    assert is_public_suffix("anything.ck") and not is_public_suffix("www.ck")
    assert is_public_suffix("co.uk") and not is_public_suffix("bbc.co.uk")
    assert is_public_suffix("com") and is_public_suffix("unknowntld")
    # a name that is not normalised goes to the list itself
    assert is_public_suffix("CO.UK") == psl.is_public("CO.UK")
    assert is_public_suffix("co.uk.") == psl.is_public("co.uk.")
