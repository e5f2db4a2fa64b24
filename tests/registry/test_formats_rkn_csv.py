"""The rkn-csv register dump: reading, bad rows, bad files, streaming, round trip, fuzz."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from takedown.errors import InputError
from takedown.model import Decision, ItemRecord, ItemState, RegisterEntry, TargetKind
from takedown.registry.formats import READERS, WRITERS, ReadDefaults, RowError
from takedown.registry.formats.rkn_csv import split_row
from takedown.registry.targets import parse_target, parse_target_flags

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "registers" / "rkn-sample.csv"
HEADER = "Updated: 2021-03-10 09:00:00 +0300\n"
WHEN = datetime(2021, 3, 10, 6, 0, tzinfo=UTC)


def read(data: bytes, defaults: ReadDefaults | None = None) -> list[ItemRecord | RowError]:
    stream = io.BytesIO(data)
    return list(READERS["rkn-csv"](stream, source="dump.csv", defaults=defaults or ReadDefaults()))


def dump(*rows: str) -> bytes:
    return (HEADER + "".join(r + "\n" for r in rows)).encode("cp1251")


def records(items: list[ItemRecord | RowError]) -> list[ItemRecord]:
    assert not [i for i in items if isinstance(i, RowError)]
    return [i for i in items if isinstance(i, ItemRecord)]


# --- reading --------------------------------------------------------------------------


def test_example_register_imports_cleanly() -> None:
    with EXAMPLE.open("rb") as f:
        items = records(
            list(READERS["rkn-csv"](f, source="rkn-sample.csv", defaults=ReadDefaults()))
        )
    kinds = {kind: sum(1 for i in items if i.target.kind is kind) for kind in TargetKind}
    assert kinds == {
        TargetKind.URL: 47,
        TargetKind.DOMAIN: 12,
        TargetKind.WILDCARD: 4,
        TargetKind.IP: 8,
        TargetKind.CIDR: 4,
    }
    by_value = {i.target.value: i for i in items}
    assert "xn--e1afmkfd.xn--80akhbyknj4f" in by_value  # пример.испытание
    assert "*.xn--e1afmkfd.xn--80akhbyknj4f" in by_value
    assert "2001:db8:10::/48" in by_value
    assert "https://forum.example/viewtopic.php?t=100%7C200&sid=x" in by_value
    assert "https://shop.example.org/item;jsessionid=ABC123?ref=1" in by_value
    assert by_value["*casino.example"].flags == ("malformed-mask",)
    quoted = by_value["198.51.100.0/24"].decision
    assert quoted == Decision(
        "3-0123/2021", "Мосгорсуд; коллегия по гражданским делам", "2021-02-04"
    )
    assert (
        by_value["piracymirror.example"].decision.authority == 'ООО "Правообладатель" (Мосгорсуд)'
    )
    assert all(i.source and i.source.startswith("rkn-sample.csv:") for i in items)


def test_a_row_yields_one_record_per_target_sharing_its_decision() -> None:
    row = (
        "192.0.2.1 | 198.51.100.0/24|2001:DB8::/32;Пример.испытание|*.example.net;"
        'http://example.com/a|b | https://t.co/x;"Суд; отдел ""А""";27-31-2021/Ид1-21;2021-03-01'
    )
    items = records(read(dump(row)))
    assert [(i.target.kind, i.target.value) for i in items] == [
        (TargetKind.IP, "192.0.2.1"),
        (TargetKind.CIDR, "198.51.100.0/24"),
        (TargetKind.CIDR, "2001:db8::/32"),
        (TargetKind.DOMAIN, "xn--e1afmkfd.xn--80akhbyknj4f"),
        (TargetKind.WILDCARD, "*.example.net"),
        (TargetKind.URL, "http://example.com/a%7Cb"),
        (TargetKind.URL, "https://t.co/x"),
    ]
    decision = Decision("27-31-2021/Ид1-21", 'Суд; отдел "А"', "2021-03-01")
    assert {i.decision for i in items} == {decision}
    assert {i.source for i in items} == {"dump.csv:2"}
    assert {i.basis for i in items} == {'Суд; отдел "А" decision 27-31-2021/Ид1-21'}
    assert {i.category for i in items} == {"other"}


def test_defaults_fill_category_basis_platform_and_a_missing_decision() -> None:
    defaults = ReadDefaults(
        category="suicide", basis="Art. 15.1", platform="twitter", decision="D-9"
    )
    items = records(read(dump(";;https://twitter.com/a/status/1;;;", ";t.co;;A;D-1;"), defaults))
    assert [(i.category, i.basis, i.platform) for i in items] == [
        ("suicide", "Art. 15.1", "twitter")
    ] * 2
    assert items[0].decision == Decision("D-9", None, None)
    assert items[1].decision == Decision("D-1", "A", None)


def test_url_cell_splits_only_on_spaced_bar() -> None:
    items = records(
        read(dump(";;http://a.example/x|y|z | http://b.example/?q=1 |2;A;D;2021-01-01"))
    )
    assert [i.target.value for i in items] == [
        "http://a.example/x%7Cy%7Cz",
        "http://b.example/?q=1%20%7C2",
    ]


def test_crlf_line_endings_are_accepted() -> None:
    data = (HEADER + ";example.com;;A;D;2021-01-01\r\n").replace("\n", "\r\n").encode("cp1251")
    assert [i.target.value for i in records(read(data))] == ["example.com"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("a;b;c", ["a", "b", "c"]),
        ('"a;b";c', ["a;b", "c"]),
        ('a;"b ""q"" ; c";', ["a", 'b "q" ; c', ""]),
        ('a;b "c" d;e', ["a", 'b "c" d', "e"]),
        ('"";x', ["", "x"]),
        ('"open;x', None),
        ('"a"b;c', None),
    ],
)
def test_split_row(line: str, expected: list[str] | None) -> None:
    assert split_row(line) == expected


# --- bad rows: reported with their line, the rest goes on ------------------------------

GOOD = ";good.example;;A;D;2021-01-01"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (";a.example;;A;D", "expected 6 fields"),
        (";a.example;;A;D;2021-01-01;extra", "got 7"),
        ("192.0.2.300;;;A;D;2021-01-01", "ips: invalid IP address '192.0.2.300'"),
        ("a.example;;;A;D;2021-01-01", "ips: 'a.example' is a domain"),
        ("10.1.2.3/8;;;A;D;2021-01-01", "host bits set"),
        (";a.example;;A;D;10.03.2021", "unparseable date '10.03.2021'"),
        (";a.example;;A;D;2021-02-30", "unparseable date"),
        (";xn--zz.example;;A;D;2021-01-01", "domains: invalid IDNA host name"),
        (";a..example;;A;D;2021-01-01", "domains: invalid host name"),
        (";http://a.example/;;A;D;2021-01-01", "is a URL, not a domain"),
        (";;a.example/path;A;D;2021-01-01", "urls: 'a.example/path' is not a URL"),
        (";;http://exa mple.example/;A;D;2021-01-01", "urls: invalid"),
        ("", "empty row"),
        ("   ", "empty row"),
        (";;;A;D;2021-01-01", "row has no targets"),
        (";;;;;", "row has no targets"),
        (";a.example;;A;;2021-01-01", "empty decision reference"),
        (';a.example;;"unterminated;D;2021-01-01', "malformed quoting"),
    ],
)
def test_bad_row_is_a_row_error_and_reading_goes_on(row: str, message: str) -> None:
    items = read(dump(GOOD, row, GOOD))
    assert [type(i) for i in items] == [ItemRecord, RowError, ItemRecord]
    error = items[1]
    assert isinstance(error, RowError)
    assert error.line == 3
    assert message in error.message
    assert error.raw == row
    assert [i.source for i in items if isinstance(i, ItemRecord)] == ["dump.csv:2", "dump.csv:4"]


def test_undecodable_byte_is_a_row_error() -> None:
    data = dump(GOOD) + b";a.example;;\x98;D;2021-01-01\n" + dump(GOOD)[len(HEADER) :]
    items = read(data)
    assert [type(i) for i in items] == [ItemRecord, RowError, ItemRecord]
    assert "not cp1251" in items[1].message  # type: ignore[union-attr]


def test_a_utf8_row_in_a_cp1251_file_is_a_row_error() -> None:
    data = dump(";пример.испытание;;Суд;D;2021-01-01") + ";a.example;;Суд;D;2021-01-01\n".encode()
    items = read(data)
    assert isinstance(items[0], ItemRecord)
    assert isinstance(items[1], RowError)
    assert "UTF-8" in items[1].message
    assert items[1].raw == ";a.example;;Суд;D;2021-01-01"


# --- bad files: InputError naming the file and line ------------------------------------


def file_error(data: bytes) -> InputError:
    with pytest.raises(InputError) as info:
        read(data)
    return info.value


def test_utf8_file_is_refused_by_name() -> None:
    data = (HEADER + GOOD + "\n" + ";пример.испытание;;Суд;D;2021-01-01\n").encode("utf-8")
    error = file_error(data)
    assert "file is UTF-8, expected cp1251" in error.message
    assert error.where == "dump.csv:3"


def test_utf8_bom_is_refused_by_name() -> None:
    error = file_error(b"\xef\xbb\xbf" + dump(GOOD))
    assert "UTF-8" in error.message
    assert error.where == "dump.csv:1"


def test_citizenlab_file_is_named() -> None:
    citizenlab = b"url,category_code,category_description,date_added,source,notes\n"
    error = file_error(citizenlab + b"https://a.example/,NEWS,News Media,2014-04-15,citizenlab,\n")
    assert "Citizen Lab" in error.message
    assert "--format citizenlab" in error.message
    assert error.where == "dump.csv:1"


@pytest.mark.parametrize(
    ("first", "words"),
    [
        ("", "empty first line"),
        (";a.example;;A;D;2021-01-01", "missing 'Updated:"),
        ("Updated: yesterday", "missing 'Updated:"),
        ("Updated: 2021-13-40 25:00:00 +0300", "invalid date"),
        ('{"target": "a.example"}', "JSON Lines"),
        ("id,target,kind,category", "--format csv"),
    ],
)
def test_missing_or_wrong_header_is_a_file_error(first: str, words: str) -> None:
    error = file_error((first + "\n" + GOOD + "\n").encode("cp1251"))
    assert words in error.message
    assert error.where == "dump.csv:1"


# --- streaming --------------------------------------------------------------------------


class CountingStream(io.RawIOBase):
    """An endless-looking dump that counts the lines a reader has pulled."""

    def __init__(self, rows: int) -> None:
        self.pulled = 0
        self._lines = self._generate(rows)

    def _generate(self, rows: int) -> Iterator[bytes]:
        yield HEADER.encode("cp1251")
        for n in range(rows):
            yield f"192.0.2.{n % 250};h{n}.example;;A;D{n};2021-01-01\n".encode("cp1251")

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> bytes:
        self.pulled += 1
        return next(self._lines, b"")

    def __iter__(self) -> Iterator[bytes]:  # type: ignore[override]
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def test_reader_streams_rows_instead_of_loading_the_file() -> None:
    stream = CountingStream(200_000)
    reader = READERS["rkn-csv"](stream, source="big.csv", defaults=ReadDefaults())
    first = [next(reader) for _ in range(6)]
    assert [i.source for i in first] == ["big.csv:2"] * 2 + ["big.csv:3"] * 2 + ["big.csv:4"] * 2
    assert stream.pulled < 10


# --- writing and the round trip ------------------------------------------------------


def entry(
    target: str,
    *,
    authority: str | None = "Суд",
    reference: str = "D-1",
    date: str | None = "2021-03-01",
    state: ItemState = ItemState.OPEN,
    n: int = 1,
) -> RegisterEntry:
    t, flags = parse_target_flags(target)
    record = ItemRecord(t, "other", "basis", Decision(reference, authority, date), flags=flags)
    return RegisterEntry(n, record, state)


def export(entries: list[RegisterEntry]) -> bytes:
    out = io.BytesIO()
    WRITERS["rkn-csv"](entries, out, generated_at=WHEN)
    return out.getvalue()


def test_writer_emits_the_dump_format() -> None:
    data = export(
        [
            entry("пример.испытание"),
            entry("*.пример.испытание"),
            entry("例子.example"),  # cp1251 cannot hold it: punycode
            entry("2001:db8::/32", authority='Суд; "А"'),
            entry("https://t.co/a;b", date=None),
            entry("gone.example", state=ItemState.DELISTED),
        ]
    )
    assert data.decode("cp1251").splitlines() == [
        "Updated: 2021-03-10 06:00:00 +0000",
        ";пример.испытание;;Суд;D-1;2021-03-01",
        ";*.пример.испытание;;Суд;D-1;2021-03-01",
        ";xn--fsqu00a.example;;Суд;D-1;2021-03-01",
        '2001:db8::/32;;;"Суд; ""А""";D-1;2021-03-01',
        ';;"https://t.co/a;b";Суд;D-1;',
    ]


CP1251_TEXT = st.text(
    alphabet=st.sampled_from(list("абвгдЁЯя АБВ abcXYZ019;|\"'№-/.,()«»")), min_size=1, max_size=20
).map(str.strip)
TARGET_TEXTS = st.one_of(
    st.sampled_from(
        [
            "twitter.com",
            "t.co",
            "*.twimg.com",
            "пример.испытание",
            "*.пример.рф",
            "*example.com",
            "*t.co*",
            "192.0.2.1",
            "2001:db8::1",
            "198.51.100.0/24",
            "2001:db8:1::/48",
            "https://twitter.com/user_1/status/1",
            "https://t.co/x|y",
            "https://example.com/a;b?c=d;e",
            "http://пример.испытание/путь?q=а|б",
            "https://[2001:db8::2]:8443/x",
        ]
    ),
    st.builds(
        "{}://{}.example/{}".format,
        st.sampled_from(["http", "https"]),
        st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
        st.text(alphabet='aб|;"% /?=&#~', max_size=12),
    ),
    st.ip_addresses().map(str),
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            TARGET_TEXTS,
            CP1251_TEXT | st.just(""),
            CP1251_TEXT.filter(bool),
            st.dates().map(lambda d: d.isoformat() if d.year >= 1000 else None),
        ),
        max_size=12,
    )
)
def test_export_then_import_gives_the_same_items(
    rows: list[tuple[str, str, str, str | None]],
) -> None:
    entries = [
        entry(t, authority=a or None, reference=r, date=d, n=n)
        for n, (t, a, r, d) in enumerate(rows)
    ]
    items = records(read(export(entries)))
    assert [(i.target, i.flags, i.decision) for i in items] == [
        (e.record.target, e.record.flags, e.record.decision) for e in entries
    ]


# --- fuzz: bad input never escapes as anything but RowError / file-level InputError ------

FUZZ_LINE = st.text(alphabet=st.sampled_from(list(';|" *.:/%-_[]aбZ09\t')), max_size=60)


@given(st.lists(FUZZ_LINE, max_size=8))
def test_fuzzed_rows_give_records_or_row_errors(lines: list[str]) -> None:
    items = read(dump(*lines))
    lines_seen = [
        i.line if isinstance(i, RowError) else int(i.source.rsplit(":", 1)[1]) for i in items
    ]  # type: ignore[union-attr]
    assert lines_seen == sorted(lines_seen)
    assert all(2 <= n <= len(lines) + 1 for n in lines_seen)
    for item in items:
        if isinstance(item, ItemRecord):
            assert parse_target(item.target.value) == item.target


@given(st.binary(max_size=300))
def test_fuzzed_bytes_never_raise_anything_but_input_error(body: bytes) -> None:
    for data in (body, HEADER.encode() + body):
        try:
            items = read(data)
        except InputError as exc:
            assert exc.where is not None and exc.where.startswith("dump.csv:")
            continue
        assert all(isinstance(i, ItemRecord | RowError) for i in items)
