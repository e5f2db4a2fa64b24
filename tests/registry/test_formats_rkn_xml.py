"""The rkn-xml operator dump: entries, bad entries, bad files, attacks, zip and signature,
streaming memory, fuzz."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tracemalloc
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from takedown.errors import InputError
from takedown.model import BlockType, Decision, EntryCells, EntryRecord, TargetKind
from takedown.registry.formats import READERS, ReadDefaults, RowError
from takedown.registry.formats._base import FileFacts
from takedown.registry.formats.rkn_xml import open_dump, read

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CP1251 = FIXTURES / "rkn-dump-cp1251.xml"
UTF8 = FIXTURES / "rkn-dump-utf8.xml"
BAD_ROWS = FIXTURES / "rkn-dump-bad-rows.xml"

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<register updateTime="2021-03-10T12:00:00+03:00">\n'
TAIL = "</register>\n"

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def read_all(
    data: bytes, defaults: ReadDefaults | None = None, facts: FileFacts | None = None
) -> list[EntryRecord | RowError]:
    return list(
        read(io.BytesIO(data), source="dump.xml", defaults=defaults or ReadDefaults(), facts=facts)
    )


def read_file(path: Path, facts: FileFacts | None = None) -> list[EntryRecord | RowError]:
    with path.open("rb") as stream:
        return list(read(stream, source=path.name, defaults=ReadDefaults(), facts=facts))


def entries(items: list[EntryRecord | RowError]) -> dict[str, EntryRecord]:
    assert not [i for i in items if isinstance(i, RowError)]
    return {i.source_id: i for i in items if isinstance(i, EntryRecord) and i.source_id}


def dump(*contents: str) -> bytes:
    return (HEAD + "".join(contents) + TAIL).encode("utf-8")


def content(cells: str, *, attrs: str = 'id="1"', decision: str = 'number="1/21" org="суд"') -> str:
    return f"<content {attrs}>\n<decision {decision}/>\n{cells}\n</content>\n"


def targets(entry: EntryRecord) -> list[str]:
    return [target.value for target, _ in entry.targets]


# --- reading ----------------------------------------------------------------------------


def test_registered_as_rkn_xml() -> None:
    assert READERS["rkn-xml"] is read


def test_windows_1251_dump() -> None:
    facts = FileFacts()
    got = entries(read_file(CP1251, facts))
    assert facts.updated_at == datetime(2021, 3, 10, 9, 0, tzinfo=UTC)
    assert facts.format_version == "2.4"
    assert facts.signature is None
    assert {i: e.block_type for i, e in got.items()} == {
        "101": BlockType.URL,  # no blockType, URLs listed
        "102": BlockType.DOMAIN,
        "103": BlockType.DOMAIN_MASK,
        "104": BlockType.IP,
        "105": BlockType.URL,
        "106": BlockType.URL,  # blockType="default"
    }
    first = got["101"]
    assert first.cells == EntryCells(
        ips=("192.0.2.10", "192.0.2.11"),
        domains=("forum.example.org",),
        urls=(  # exactly as written: fragment, case, ';' and '&' kept
            "http://forum.example.org/viewtopic.php?f=5&t=100;sid=ab12#post-7",
            "https://forum.example.org/Files/Report.PDF?X=1&y=2",
        ),
    )
    assert targets(first) == [
        "http://forum.example.org/viewtopic.php?f=5&t=100;sid=ab12",
        "https://forum.example.org/Files/Report.PDF?X=1&y=2",
    ]
    assert first.decision == Decision("27-31-2021/Ид1234-21", "Генпрокуратура", "2021-03-01")
    assert first.basis == "Генпрокуратура decision 27-31-2021/Ид1234-21"
    assert first.listed_at == datetime(2021, 3, 1, 7, 0, tzinfo=UTC)  # naive = Moscow
    assert first.source == "rkn-dump-cp1251.xml:3"
    assert first.attrs == (
        ("entryType", "1"),
        ("urgencyType", "0"),
        ("hash", "4C2D6E0F1A9B8C7D5E3F2A1B0C9D8E7F"),
        ("ts", "2021-03-01T10:00:00+03:00"),
    )
    assert first.category == "other" and first.platform is None

    domain = got["102"]
    assert domain.cells.domains == ("пример.испытание",)
    assert targets(domain) == ["xn--e1afmkfd.xn--80akhbyknj4f"]  # its IP is a hint
    assert domain.cells.ips == ("198.51.100.7",)
    assert domain.decision.authority == "Роскомнадзор"
    assert domain.attrs == (("entryType", "1"), ("hash", "0A1B2C3D4E5F60718293A4B5C6D7E8F9"))

    mask = got["103"]
    assert [t.kind for t, _ in mask.targets] == [TargetKind.WILDCARD]
    assert targets(mask) == ["*.example.com"]
    assert mask.listed_at == datetime(2021, 3, 3, 8, 15, tzinfo=UTC)  # stated offset +00:00
    assert mask.decision == Decision("2а-577/2021", "ФНС", "2021-03-03")

    ip = got["104"]
    assert ip.cells.ips == ("198.51.100.1", "203.0.113.0/24", "2001:DB8::1", "2001:db8:10::/48")
    assert targets(ip) == ["198.51.100.1", "203.0.113.0/24", "2001:db8::1", "2001:db8:10::/48"]
    assert [t.kind for t, _ in ip.targets] == [
        TargetKind.IP,
        TargetKind.CIDR,
        TargetKind.IP,
        TargetKind.CIDR,
    ]

    no_org = got["105"]
    assert no_org.decision == Decision("9-3/2021", None, "2021-03-05")
    assert no_org.basis == "decision 9-3/2021"
    assert no_org.cells.urls == ("http://shop.example.net/item;jsessionid=ABC123?ref=1",)


def test_court_order_against_one_video_blocks_the_url_only() -> None:
    video = entries(read_file(CP1251))["106"]
    assert video.block_type is BlockType.URL
    assert targets(video) == ["https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s"]
    assert [i.target.value for i in video.items()] == targets(video)
    # the host and its addresses are kept as hints, never targets
    assert video.cells.domains == ("www.youtube.com",)
    assert video.cells.ips == ("142.250.74.110", "2a00:1450:4010:c05::5b")
    assert video.decision.authority == "Тверской районный суд г. Москвы"


def test_utf8_dump_without_namespace() -> None:
    facts = FileFacts()
    got = entries(read_file(UTF8, facts))
    assert facts.updated_at == datetime(2021, 4, 1, 6, 0, tzinfo=UTC)
    assert facts.format_version == "2.3"
    video = got["201"]
    assert video.block_type is BlockType.URL
    assert video.cells.urls == (
        "https://video.example.ru/Watch/ABC?list=1&index=2#t=1m",
        "https://video.example.ru/embed/ABC;autoplay=1",  # CDATA amid whitespace
    )
    assert video.decision == Decision("2-4821/2021", "Мосгорсуд", "2021-03-19")
    assert video.source == "rkn-dump-utf8.xml:4"
    assert video.listed_at == datetime(2021, 3, 20, 20, 30, tzinfo=UTC)
    assert video.attrs == (("entryType", "1"), ("hash", "ABCDEF0123456789ABCDEF0123456789"))
    domain = got["202"]
    assert domain.cells.domains == ("ПРИМЕР.рф.",)
    assert targets(domain) == ["xn--e1afmkfd.xn--p1ai"]
    assert domain.listed_at == datetime(2021, 3, 21, 7, 0, tzinfo=UTC)


def test_same_entries_whatever_the_encoding() -> None:
    text = CP1251.read_bytes().decode("cp1251")
    as_utf8 = text.replace('encoding="windows-1251"', 'encoding="UTF-8"').encode("utf-8")
    assert read_all(as_utf8) == [
        EntryRecord(**{**_fields(e), "source": e.source.replace(CP1251.name, "dump.xml")})
        if isinstance(e, EntryRecord)
        else e
        for e in read_file(CP1251)
    ]


def _fields(entry: EntryRecord) -> dict[str, object]:
    return {name: getattr(entry, name) for name in EntryRecord.__slots__}


class Trickle(io.RawIOBase):
    """A stream that hands out a few bytes per read, to cut the XML anywhere."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        piece = self.data[self.pos : self.pos + min(self.step, size if size >= 0 else self.step)]
        self.pos += len(piece)
        return piece


@pytest.mark.parametrize("step", [1, 7, 64])
def test_chunking_does_not_change_anything(step: int) -> None:
    for path in (CP1251, UTF8, BAD_ROWS):
        data = path.read_bytes()
        whole = read_all(data)
        trickled = list(read(Trickle(data, step), source="dump.xml", defaults=ReadDefaults()))  # type: ignore[arg-type]
        assert trickled == whole


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"  \n\n" + dump(), None),
        (b"\n\nUpdated: 2021-03-10 09:00:00 +0300\n", "an rkn-csv dump"),
        (b"", "empty file"),
    ],
)
def test_short_reads_do_not_fool_the_sniff(data: bytes, message: str | None) -> None:
    stream = Trickle(data.replace(b'<?xml version="1.0" encoding="UTF-8"?>', b""), 1)
    got = read(stream, source="dump.xml", defaults=ReadDefaults())  # type: ignore[arg-type]
    if message is None:
        assert list(got) == []
    else:
        with pytest.raises(InputError, match=message):
            list(got)


def test_defaults_fill_empty_decision_and_org() -> None:
    data = dump(content("<url>http://a.example/</url>", decision='number="" org=""'))
    assert read_all(data)[0] == RowError(
        3, "empty decision number", "content id=1; decision number= org=; url http://a.example/"
    )
    defaults = ReadDefaults(
        category="extremism", platform="example", decision="D-1", authority="RKN", basis="law 149"
    )
    (entry,) = read_all(data, defaults)
    assert isinstance(entry, EntryRecord)
    assert entry.decision == Decision("D-1", "RKN", None)
    assert (entry.basis, entry.category, entry.platform) == ("law 149", "extremism", "example")
    # given ones win over the defaults
    (given,) = read_all(dump(content("<url>http://a.example/</url>")), defaults)
    assert isinstance(given, EntryRecord)
    assert given.decision == Decision("1/21", "суд", None)


def test_no_decision_element() -> None:
    data = (HEAD + '<content id="9">\n<url>http://a.example/</url>\n</content>\n' + TAIL).encode()
    (error,) = read_all(data)
    assert isinstance(error, RowError) and error.message == "<content> has no <decision>"
    (entry,) = read_all(data, ReadDefaults(decision="D-1"))
    assert isinstance(entry, EntryRecord) and entry.decision == Decision("D-1")


def test_stated_block_type_wins_over_what_the_cells_imply() -> None:
    data = dump(
        content(
            "<url>http://a.example/x</url><domain>a.example</domain>",
            attrs='id="1" blockType="domain"',
        )
    )
    (entry,) = read_all(data)
    assert isinstance(entry, EntryRecord)
    assert entry.block_type is BlockType.DOMAIN
    assert targets(entry) == ["a.example"]


def test_bad_entries_are_row_errors_at_their_start_tag() -> None:
    got = read_file(BAD_ROWS)
    errors = [(e.line, e.message) for e in got if isinstance(e, RowError)]
    assert errors == [
        (3, "unknown blockType 'url' (expected one of: default, domain, domain-mask, ip)"),
        (7, "<content> has no id"),
        (11, "includeTime: unparseable time 'yesterday' (expected ISO 8601)"),
        (17, "ips: invalid IP address '999.1.2.3'"),
        (21, "empty decision number"),
        (29, "block type ip but the entry lists no ip"),
        (33, "decision date: unparseable date '22.03.2021' (expected YYYY-MM-DD)"),
        (37, "unknown element <ipRange> in <content>"),
    ]
    # the good entry amid them is read, and the reader went on after each bad one
    assert [e.source for e in got if isinstance(e, EntryRecord)] == ["rkn-dump-bad-rows.xml:25"]
    raw = next(e.raw for e in got if isinstance(e, RowError) and e.line == 17)
    assert raw == (
        "content id=304 includeTime=2021-03-22T10:00:00 blockType=ip; "
        "decision date=2021-03-22 number=4/21 org=суд; ip 999.1.2.3"
    )


def test_structural_faults_are_row_errors() -> None:
    data = dump(
        content("<url>http://a.example/</url>", decision='number="1"/><decision number="2"'),
        content("<url>http://a.example/<b>x</b></url>", attrs='id="2"'),
        "<note>not a content</note>\n",
        content("<url>http://a.example/</url>", attrs='id="4"'),
    )
    got = read_all(data)
    assert [(e.line, e.message) for e in got if isinstance(e, RowError)] == [
        (3, "more than one <decision>"),
        (7, "unexpected <b> nested in a <content> child"),
        (11, "unexpected <note> in <register> (expected <content>)"),
    ]
    assert [e.source_id for e in got if isinstance(e, EntryRecord)] == ["4"]


def test_a_huge_cell_is_refused_not_kept() -> None:
    data = dump(content(f"<url>http://a.example/{'a' * 70000}</url>"))
    (error,) = read_all(data)
    assert isinstance(error, RowError) and "longer than 65536" in error.message
    assert len(error.raw) <= 400


# --- bad files --------------------------------------------------------------------------


def test_malformed_xml_names_line_and_column() -> None:
    data = dump(content("<url>http://a.example/</url>"), "<content id='2'>\n  <url>x</uri>\n")
    stream = read(io.BytesIO(data), source="dump.xml", defaults=ReadDefaults())
    first = next(stream)  # entries before the fault come out first
    assert isinstance(first, EntryRecord)
    with pytest.raises(InputError) as caught:
        list(stream)
    assert caught.value.where == "dump.xml:8:11"  # the '</uri>' (1-based column)
    assert caught.value.message == "malformed XML: mismatched tag"


def test_unclosed_and_truncated_files() -> None:
    whole = dump(content("<url>http://a.example/</url>"))
    with pytest.raises(InputError, match="malformed XML: no element found") as caught:
        read_all(whole[: -len(TAIL)])  # cut at a tag
    assert caught.value.where == "dump.xml:7:1"  # the end of the file
    with pytest.raises(InputError, match="malformed XML: unclosed token"):
        read_all(whole[:-20])  # cut inside one
    with pytest.raises(InputError, match="junk after document element") as caught:
        read_all(dump() + b"<register/>")
    assert caught.value.where == "dump.xml:4:1"


def test_undeclared_cp1251_hints_at_the_declaration() -> None:
    data = (
        '<register updateTime="2021-03-10T12:00:00+03:00">\n<content id="1">\n'
        '<decision number="1" org="суд"/>\n</content>\n</register>\n'
    ).encode("cp1251")
    with pytest.raises(InputError, match='encoding="windows-1251"') as caught:
        read_all(data)
    assert caught.value.where == "dump.xml:3:27"  # the first cp1251 byte


@pytest.mark.parametrize("encoding", ["bogus", "rot13", "utf-32", "shift_jis", "idna", "punycode"])
def test_unsupported_declared_encoding(encoding: str) -> None:
    data = f'<?xml version="1.0" encoding="{encoding}"?>\n<register a="\u00e9"/>'.encode("latin-1")
    with pytest.raises(InputError, match="encoding") as caught:
        read_all(data)
    assert caught.value.where is not None and caught.value.where.startswith("dump.xml:1")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"  \n", "empty file"),
        (b"Updated: 2021-03-10 09:00:00 +0300\n1.2.3.4;;;;1;\n", "an rkn-csv dump"),
        (b'{"target": "a.example"}\n', "JSON Lines"),
        (b"url,category_code,category_description\n", "Citizen Lab"),
        (b"id,target,kind\n", "takedown CSV export"),
        (b"PK\x03\x04rest-of-a-zip", "zip archive"),
        (b"hello world", "not XML (it starts with 'hello world')"),
        (b'<?xml version="1.0"?>\n<rss version="2.0"><channel/></rss>', "other XML (<rss>)"),
        (b"<html><body>502 Bad Gateway</body></html>", "an HTML page"),
        (b"<!DOCTYPE html>\n<html><body>Login</body></html>", "an HTML page"),
    ],
)
def test_not_a_dump(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as caught:
        read_all(data)
    assert caught.value.where is not None and caught.value.where.startswith("dump.xml:")


def test_other_xml_names_its_root_line() -> None:
    with pytest.raises(InputError) as caught:
        read_all(b'<?xml version="1.0"?>\n\n<feed xmlns="http://www.w3.org/2005/Atom"/>')
    assert caught.value.where == "dump.xml:3"
    assert "root element is <feed>, not <register>" in caught.value.message


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("<register>", "<register> has no updateTime"),
        ('<register updateTime="">', "<register> has no updateTime"),
        ('<register updateTime="10.03.2021 12:00">', "updateTime '10.03.2021 12:00' is not a time"),
    ],
)
def test_update_time_is_required(root: str, message: str) -> None:
    data = f'<?xml version="1.0"?>\n{root}\n</register>\n'.encode()
    with pytest.raises(InputError, match=message) as caught:
        read_all(data)
    assert caught.value.where == "dump.xml:2"


def test_naive_update_time_is_moscow_time_and_no_version_is_none() -> None:
    facts = FileFacts(format_version="stale")
    read_all(b'<register updateTime="2021-03-10T12:00:00"/>', facts=facts)
    assert facts.updated_at == datetime(2021, 3, 10, 9, 0, tzinfo=UTC)
    assert facts.format_version is None


# --- XML attacks ------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE register [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<register updateTime="2021-03-10T12:00:00+03:00">
<content id="1"><decision number="&lol9;"/><url>http://a.example/</url></content>
</register>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE register [ <!ENTITY secret SYSTEM "file:///etc/passwd"> ]>
<register updateTime="2021-03-10T12:00:00+03:00">
<content id="1"><decision number="1"/><url>http://a.example/&secret;</url></content>
</register>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE register SYSTEM "http://127.0.0.1:9/evil.dtd">
<register updateTime="2021-03-10T12:00:00+03:00"/>
"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD])
def test_doctype_and_entities_are_refused(data: bytes) -> None:
    with pytest.raises(InputError, match="DOCTYPE declaration <!DOCTYPE register> refused") as e:
        read_all(data)
    assert e.value.where == "dump.xml:2"


def test_undefined_entity_is_malformed_not_expanded() -> None:
    data = dump(content("<url>http://a.example/&secret;</url>"))
    with pytest.raises(InputError, match="undefined entity"):
        read_all(data)


# --- zip and signature ------------------------------------------------------------------


def test_plain_file_without_certificate(tmp_path: Path) -> None:
    path = tmp_path / "dump.xml"
    shutil.copy(UTF8, path)
    facts = FileFacts(signature="stale")
    with open_dump(path, signer_cert=None, facts=facts) as stream:
        got = list(read(stream, source=str(path), defaults=ReadDefaults(), facts=facts))
    assert facts.signature is None
    assert sorted(entries(got)) == ["201", "202"]


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_zip_is_known_by_its_magic_and_streamed(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "register.download", {"dump.xml": CP1251.read_bytes()})
    facts = FileFacts()
    with open_dump(path, signer_cert=None, facts=facts) as stream:
        assert isinstance(stream, zipfile.ZipExtFile)  # not extracted
        got = entries(list(read(stream, source="dump.xml", defaults=ReadDefaults(), facts=facts)))
    assert len(got) == 6
    assert facts.signature is None
    assert facts.updated_at == datetime(2021, 3, 10, 9, 0, tzinfo=UTC)


def test_zip_without_dump_names_what_it_holds(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "dump.zip", {"data/dump.xml": b"<x/>", "readme.txt": b"hi"})
    with pytest.raises(InputError) as caught, open_dump(path, signer_cert=None, facts=FileFacts()):
        pass
    assert caught.value.where == str(path)
    assert "no dump.xml at its top level (it holds: data/dump.xml, readme.txt)" in str(caught.value)


def test_broken_zip_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "dump.zip"
    broken.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with (
        pytest.raises(InputError, match="unreadable zip"),
        open_dump(broken, signer_cert=None, facts=FileFacts()),
    ):
        pass
    with (
        pytest.raises(InputError, match="cannot open"),
        open_dump(tmp_path / "absent.xml", signer_cert=None, facts=FileFacts()),
    ):
        pass


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key, made for the test."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    folder = tmp_path_factory.mktemp("signer")
    cert, key = folder / "cert.pem", folder / "key.pem"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
        "-days", "2", "-subj", "/CN=Test Register Signer/O=Test Regulator",
    )  # fmt: skip
    return cert, key


def sign(data: bytes, signer: tuple[Path, Path], folder: Path, form: str = "DER") -> bytes:
    cert, key = signer
    content, sig = folder / "to-sign.xml", folder / "to-sign.sig"
    content.write_bytes(data)
    openssl(
        "cms", "-sign", "-binary", "-in", content, "-signer", cert, "-inkey", key,
        "-outform", form, "-out", sig,
    )  # fmt: skip
    return sig.read_bytes()


SUBJECT = "verified: CN = Test Register Signer, O = Test Regulator"


@needs_openssl
def test_signed_zip_verifies(signer: tuple[Path, Path], tmp_path: Path) -> None:
    data = CP1251.read_bytes()
    members = {"dump.xml": data, "dump.xml.sig": sign(data, signer, tmp_path)}
    path = make_zip(tmp_path / "dump.zip", members)
    facts = FileFacts()
    with open_dump(path, signer_cert=signer[0], facts=facts) as stream:
        got = entries(list(read(stream, source="dump.xml", defaults=ReadDefaults(), facts=facts)))
    assert facts.signature == SUBJECT
    assert len(got) == 6


@needs_openssl
def test_tampered_zip_is_refused(signer: tuple[Path, Path], tmp_path: Path) -> None:
    data = CP1251.read_bytes()
    tampered = data.replace(b"www.youtube.com/watch", b"www.youtube.com/WATCH")
    members = {"dump.xml": tampered, "dump.xml.sig": sign(data, signer, tmp_path)}
    path = make_zip(tmp_path / "dump.zip", members)
    facts = FileFacts()
    with (
        pytest.raises(InputError, match="signature does not verify") as caught,
        open_dump(path, signer_cert=signer[0], facts=facts),
    ):
        pass
    assert caught.value.where is not None and caught.value.where.endswith("dump.xml.sig")
    assert facts.signature is None


@needs_openssl
def test_zip_without_signature_when_a_certificate_is_given(
    signer: tuple[Path, Path], tmp_path: Path
) -> None:
    path = make_zip(tmp_path / "dump.zip", {"dump.xml": CP1251.read_bytes()})
    with (
        pytest.raises(InputError, match=r"no dump\.xml\.sig"),
        open_dump(path, signer_cert=signer[0], facts=FileFacts()),
    ):
        pass


@needs_openssl
def test_plain_file_with_pem_signature_and_der_certificate(
    signer: tuple[Path, Path], tmp_path: Path
) -> None:
    path = tmp_path / "dump.xml"
    shutil.copy(UTF8, path)
    (tmp_path / "dump.xml.sig").write_bytes(sign(path.read_bytes(), signer, tmp_path, "PEM"))
    der = tmp_path / "cert.der"
    openssl("x509", "-in", signer[0], "-outform", "DER", "-out", der)
    for cert in (signer[0], der):
        facts = FileFacts()
        with open_dump(path, signer_cert=cert, facts=facts) as stream:
            got = list(read(stream, source=str(path), defaults=ReadDefaults(), facts=facts))
        assert facts.signature == SUBJECT
        assert sorted(entries(got)) == ["201", "202"]


@needs_openssl
def test_plain_file_signature_missing_or_by_someone_else(
    signer: tuple[Path, Path], tmp_path: Path
) -> None:
    path = tmp_path / "dump.xml"
    shutil.copy(UTF8, path)
    with (
        pytest.raises(InputError, match=r"no detached signature dump\.xml\.sig"),
        open_dump(path, signer_cert=signer[0], facts=FileFacts()),
    ):
        pass
    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other-key.pem"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", other_key, "-out",
        other_cert, "-days", "2", "-subj", "/CN=Impostor",
    )  # fmt: skip
    forged = sign(path.read_bytes(), (other_cert, other_key), tmp_path)
    (tmp_path / "dump.xml.sig").write_bytes(forged)
    with (
        pytest.raises(InputError, match="signature does not verify"),
        open_dump(path, signer_cert=signer[0], facts=FileFacts()),
    ):
        pass
    (tmp_path / "dump.xml.sig").write_bytes(b"not a signature")
    with (
        pytest.raises(InputError, match="signature does not verify"),
        open_dump(path, signer_cert=signer[0], facts=FileFacts()),
    ):
        pass


# --- streaming memory -------------------------------------------------------------------


def generated_dump(path: Path, count: int) -> Path:
    """A dump of ``count`` entries. Targets repeat (50 distinct) so that the shared, bounded
    target-parsing cache stays the same size and the test measures the reader itself."""
    with path.open("wb") as out:
        out.write(b'<?xml version="1.0" encoding="windows-1251"?>\n')
        out.write(
            b'<reg:register updateTime="2021-03-10T12:00:00+03:00" xmlns:reg="http://rsoc.ru">\n'
        )
        for n in range(count):
            k = n % 50
            out.write(
                f'<content id="{n}" includeTime="2021-03-01T10:00:00" hash="{n:032X}">\n'
                f'<decision date="2021-03-01" number="{k}-31-2021/Ид{k}" org="Суд {k}"/>\n'
                f"<url><![CDATA[http://site{k}.example/page?a={k}&b=2#top]]></url>\n"
                f"<domain>site{k}.example</domain>\n<ip>192.0.2.{k}</ip>\n</content>\n".encode(
                    "cp1251"
                )
            )
        out.write(b"</reg:register>\n")
    return path


def peak_memory(path: Path) -> tuple[int, int]:
    count = 0
    with path.open("rb") as stream:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            for item in read(stream, source=path.name, defaults=ReadDefaults()):
                assert isinstance(item, EntryRecord)
                count += 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return peak, count


@pytest.mark.slow
def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    small = generated_dump(tmp_path / "small.xml", 2000)
    large = generated_dump(tmp_path / "large.xml", 20000)
    assert large.stat().st_size > 9 * small.stat().st_size
    peak_memory(small)  # warm the caches
    small_peak, small_count = peak_memory(small)
    large_peak, large_count = peak_memory(large)
    assert (small_count, large_count) == (2000, 20000)
    print(f"peak {small_peak} B for 2000 entries, {large_peak} B for 20000")
    assert large_peak / small_peak < 1.5, (small_peak, large_peak)


# --- fuzz -------------------------------------------------------------------------------

SEEDS = [CP1251.read_bytes(), UTF8.read_bytes(), BAD_ROWS.read_bytes()]
FUZZ = settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow])


def only_input_errors(data: bytes) -> None:
    try:
        for item in read(io.BytesIO(data), source="fuzz.xml", defaults=ReadDefaults()):
            assert isinstance(item, EntryRecord | RowError)
    except InputError as exc:
        assert exc.where is not None and exc.where.startswith("fuzz.xml:")


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    only_input_errors(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(
            st.one_of(
                st.binary(min_size=1, max_size=8),
                st.sampled_from(
                    [b"<", b">", b"&", b"]]>", b"<![CDATA[", b"</content>", b"<content>",
                     b'"', b"\xd0", b"\x98", b"<!DOCTYPE x>", b"&#0;", b"\n"]
                ),
            )
        )  # fmt: skip
        if op == "insert":
            data[at:at] = piece
        elif op == "delete":
            del data[at : at + len(piece)]
        else:
            data[at : at + len(piece)] = piece
    return bytes(data)


@FUZZ
@given(mutated())
def test_fuzz_near_valid_dumps(data: bytes) -> None:
    only_input_errors(data)


xml_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="<&]\x00"),
    max_size=40,
)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["url", "domain", "ip", "ipSubnet", "ipv6", "ipv6Subnet", "x"]),
            xml_text,
        ),
        max_size=6,
    ),
    st.sampled_from(["", 'blockType="ip"', 'blockType="domain"', 'blockType="domain-mask"']),
    xml_text,
    xml_text,
)
def test_fuzz_well_formed_contents(
    cells: list[tuple[str, str]], block: str, number: str, when: str
) -> None:
    body = "".join(f"<{tag}><![CDATA[{text}]]></{tag}>" for tag, text in cells)
    number = number.replace('"', "'")
    when = when.replace('"', "'")
    data = dump(
        content(body, attrs=f'id="1" {block} includeTime="{when}"', decision=f'number="{number}"')
    )
    only_input_errors(data)
    for item in read_all(data):
        assert isinstance(item, RowError) or item.source_id == "1"
