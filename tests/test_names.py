"""Host-name normalisation: the fast paths agree with the idna package's UTS-46."""

from __future__ import annotations

import idna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takedown.errors import PatternError
from takedown.names import normalise_host, split_pattern

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
    for bad in ("com", "*.co.uk", "com.ru", "*example.com", "a..b", "-x.com"):
        with pytest.raises(PatternError):
            split_pattern(bad)
