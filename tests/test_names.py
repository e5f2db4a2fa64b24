"""Host-name normalisation: the fast paths agree with the idna package's UTS-46."""

from __future__ import annotations

import idna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takedown.errors import PatternError
from takedown.names import _ASCII_HOST, _ascii_label_ok, normalise_host, punycode, split_pattern

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
