"""The media parsers under arbitrary input: a value or one InputError naming the place."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from takedown.errors import InputError
from takedown.media.hashing import check_pdq_hex, hash_media, image_pdq
from takedown.media.store import ReportedMatch, parse_match
from takedown.verify.reuploads import read_urls

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
MATCH = st.fixed_dictionaries(
    {"item_id": st.integers(-5, 2**32) | JSON, "action": st.sampled_from(["removed", "x"])},
    optional={
        "url": st.text() | st.none(),
        "key": st.text() | st.none(),
        "hash": st.text(alphabet="0123456789abcdefABCDEF ", max_size=70) | st.none(),
        "signal_type": st.sampled_from(["pdq", "md5"]),
        "other": JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(data=JSON | MATCH)
def test_parse_match_returns_a_match_or_names_the_field(data: object) -> None:
    try:
        m = parse_match(data, where="matches[0]")
    except InputError as exc:
        assert exc.where is not None and exc.where.startswith("matches[0]")
    else:
        assert isinstance(m, ReportedMatch) and 1 <= m.item_id < 2**31
        assert m.hash is None or len(m.hash) == 64


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80))
def test_pdq_hex(text: str) -> None:
    try:
        value = check_pdq_hex(text, where="hash")
    except InputError as exc:
        assert exc.where == "hash"
    else:
        assert len(value) == 64 and int(value, 16) >= 0


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300)
    | st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM"]).flatmap(
        lambda m: st.binary(max_size=200).map(lambda b: m + b)
    )
)
def test_media_bytes_never_crash(data: bytes) -> None:
    assert image_pdq(data) is None  # nothing here is a decodable image
    try:
        hashed = hash_media(data, where="f.bin")
    except InputError as exc:
        assert exc.where == "f.bin"
    else:
        assert hashed.kind == "video" and hashed.pdq is None


@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30), max_size=6
    )
)
def test_urls_file(tmp_path_factory, lines: list[str]) -> None:  # type: ignore[no-untyped-def]
    path = Path(tmp_path_factory.mktemp("urls")) / "urls.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        urls = read_urls(path)
    except InputError as exc:
        assert exc.where is not None and exc.where.startswith(f"{path}:")
    else:
        assert all(u.lower().startswith(("http://", "https://")) for u in urls)
