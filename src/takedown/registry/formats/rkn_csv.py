"""The public register dump (``rkn-csv``): cp1251, ``Updated:`` line, six ``;`` fields.

::

    Updated: 2021-03-10 12:00:00 +0300
    1.2.3.4 | 10.0.0.0/8;example.com|*.example.net;http://example.com/a | http://x.example/;\
    "Authority; dept";27-31-2021/Ид1234-21;2021-03-01

(one line, broken here for width)

Fields: ``ips;domains;urls;authority;decision;date``. Several IPs/CIDRs or domains in a
cell are separated by ``|`` (spaces optional); several URLs by ``" | "`` exactly, since a
URL may contain ``|``. Any field may be quoted CSV-style (``"…"``, ``""`` for a quote),
which is how an authority or a URL holding ``;`` is written. A row is one register entry
(``registry.entries``): a row with URLs blocks those URLs and its domain and IP cells are
resolution hints; a row with a domain and no URL blocks the domain (a mask: names under
it); a row with only IPs blocks them. The date may be empty (no decision date); an empty
authority or decision takes the import's ``--authority`` / ``--decision``.

Reading is strict per row (a bad cell rejects the whole row as a RowError) and lenient
about the file (it goes on after a bad row). A file that is UTF-8 -- a byte-order mark, or
its first line with non-ASCII bytes reads as UTF-8 Cyrillic, which cp1251 text practically
never does (later such lines are RowErrors) -- or that is another format, or lacks the
``Updated:`` line, is an InputError.

The writer emits one row per live register entry, its cells as the register gave them
(URLs as written, fragment and case kept), under the register's own ``Updated:`` time,
so that export, import and export again give the same bytes. Text cp1251 cannot hold
becomes ``?``. Category, basis and platform are not part of this format: an import takes
them from the command line.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Container, Iterable, Iterator
from datetime import datetime
from encodings import cp1251
from typing import BinaryIO
from urllib.parse import quote

from takedown.errors import InputError, PatternError
from takedown.model import Decision, EntryCells, EntryRecord
from takedown.names import normalise_host
from takedown.registry.entries import Reject, build_entry
from takedown.registry.formats._base import (
    FileFacts,
    Known,
    ReadDefaults,
    RowError,
    as_utc,
    fingerprint_salt,
    raw_text,
    row_fingerprinter,
    valid_date,
)

ENCODING = "cp1251"
FIELDS = ("ips", "domains", "urls", "authority", "decision", "date")
URL_SEPARATOR = " | "

# raw.decode(ENCODING) is the codec's Python-level wrapper around this (a frame per row)
_charmap_decode = codecs.charmap_decode
_CP1251_TABLE = cp1251.decoding_table
_HEADER = re.compile(r"Updated: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4})\Z")
_CYRILLIC = re.compile("[\u0401\u0410-\u044f\u0451]")


def read(
    stream: BinaryIO,
    *,
    source: str,
    defaults: ReadDefaults,
    facts: FileFacts | None = None,
    known: Container[int] | None = None,
) -> Iterator[EntryRecord | RowError | Known]:
    """Stream the entries (and RowErrors) of an rkn-csv dump.

    Each entry carries the fingerprint of its row as written (under these defaults); a
    row whose fingerprint is in ``known`` is not parsed at all and comes as ``Known`` --
    a daily snapshot is mostly rows read the day before.
    """
    updated = _check_header(stream.readline(), source)
    if facts is not None:
        facts.updated_at = updated
    row_fingerprint = row_fingerprinter(fingerprint_salt(defaults))
    judged_encoding = False
    basis_cache: dict[tuple[str | None, str], str] = {}
    for lineno, raw in enumerate(stream, start=2):
        raw = raw.rstrip(b"\r\n")
        fingerprint = row_fingerprint(raw)
        if known is not None and fingerprint in known and judged_encoding:
            yield Known(fingerprint)  # read before as it is, encoding and all
            continue
        if not raw.isascii():
            utf8 = _is_utf8(raw)
            if not judged_encoding:
                judged_encoding = True
                if utf8:
                    raise InputError(
                        "file is UTF-8, expected cp1251 (convert it: iconv -f utf-8 -t cp1251)",
                        where=f"{source}:{lineno}",
                    )
            elif utf8:
                yield RowError(
                    lineno, "row is UTF-8 encoded, expected cp1251", raw_text(raw, "utf-8")
                )
                continue
        if known is not None and fingerprint in known:
            yield Known(fingerprint)
            continue
        try:
            line = _charmap_decode(raw, "strict", _CP1251_TABLE)[0]
        except UnicodeDecodeError as exc:
            yield RowError(lineno, f"not cp1251 text: {exc.reason}", raw_text(raw, ENCODING))
            continue
        try:
            yield _row(line, lineno, source, defaults, basis_cache, fingerprint)
        except Reject as exc:
            yield RowError(lineno, str(exc), line)


def _check_header(first: bytes, source: str) -> datetime:
    """The register's update time from the ``Updated:`` line; InputError if there is none."""
    where = f"{source}:1"
    if first.startswith(codecs.BOM_UTF8):
        raise InputError(
            "file is UTF-8 (it starts with a byte-order mark), expected cp1251", where=where
        )
    text = first.decode(ENCODING, errors="replace").strip()
    if not text:
        raise InputError(
            "empty first line; expected 'Updated: YYYY-MM-DD HH:MM:SS +ZZZZ'", where=where
        )
    lowered = text.lower()
    if lowered.startswith("url,category_code"):
        raise InputError(
            "this is a Citizen Lab test-list CSV, not an rkn-csv dump (use --format citizenlab)",
            where=where,
        )
    if text.startswith("{"):
        raise InputError(
            "this looks like JSON Lines, not an rkn-csv dump (use --format jsonl)", where=where
        )
    if lowered.startswith("id,target,"):
        raise InputError(
            "this is a takedown CSV export, not an rkn-csv dump (use --format csv)", where=where
        )
    match = _HEADER.match(text)
    if match is None:
        raise InputError(
            f"missing 'Updated: YYYY-MM-DD HH:MM:SS +ZZZZ' header line (got {text[:60]!r})",
            where=where,
        )
    try:
        return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        raise InputError(f"invalid date in the 'Updated:' header: {text!r}", where=where) from None


# The UTF-8 encodings of the letters _CYRILLIC matches (Ё, А-я, ё): a line without any of
# these byte pairs cannot be UTF-8 Cyrillic, so most cp1251 lines skip the decode attempt.
_UTF8_CYRILLIC = re.compile(rb"\xd0[\x81\x90-\xbf]|\xd1[\x80-\x8f\x91]")


def _is_utf8(raw: bytes) -> bool:
    """True if ``raw`` reads as UTF-8 Cyrillic. cp1251 Cyrillic text is practically never
    valid UTF-8 (two adjacent letters already make it invalid), and the Cyrillic-letter
    test rules out the rare line such as ``В№`` that is (it would read as ``¹``)."""
    if _UTF8_CYRILLIC.search(raw) is None:
        return False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _CYRILLIC.search(text) is not None


def _row(
    line: str,
    lineno: int,
    source: str,
    defaults: ReadDefaults,
    basis_cache: dict[tuple[str | None, str], str],
    fingerprint: int | None = None,
) -> EntryRecord:
    fields = line.split(";") if '"' not in line else split_row(line)
    if fields is None or len(fields) != 6:
        if not line.strip():
            raise Reject("empty row")
        if fields is None:
            raise Reject("malformed quoting (a quoted field must end with '\"' before ';')")
        raise Reject(f"expected 6 fields ({';'.join(FIELDS)}), got {len(fields)}")
    ips, domains, urls, authority, reference, date = fields
    date = date.strip()
    if date and not valid_date(date):
        raise Reject(f"unparseable date {date!r} (expected YYYY-MM-DD)")
    reference = reference.strip() or (defaults.decision or "")
    if not reference:
        raise Reject("empty decision reference (give one with --decision)")
    authority = authority.strip() or defaults.authority or None
    basis = defaults.basis or basis_cache.get((authority, reference))
    if basis is None:
        basis = f"{authority} decision {reference}" if authority else f"decision {reference}"
        if len(basis_cache) > 10000:
            basis_cache.clear()
        basis_cache[(authority, reference)] = basis
    return build_entry(
        ips=ips.split("|") if ips else (),
        domains=domains.split("|") if domains else (),
        urls=urls.split(URL_SEPARATOR) if urls else (),
        decision=Decision(reference, authority, date or None),
        category=defaults.category,
        basis=basis,
        platform=defaults.platform,
        source=f"{source}:{lineno}",
        fingerprint=fingerprint,
    )


def split_row(line: str) -> list[str] | None:
    """Split on ``;`` honouring CSV-style quoted fields; None if the quoting is malformed."""
    fields: list[str] = []
    i, n = 0, len(line)
    while True:
        if i < n and line[i] == '"':
            pieces: list[str] = []
            i += 1
            while True:
                j = line.find('"', i)
                if j < 0:
                    return None
                pieces.append(line[i:j])
                if j + 1 < n and line[j + 1] == '"':
                    pieces.append('"')
                    i = j + 2
                    continue
                i = j + 1
                break
            fields.append("".join(pieces))
            if i == n:
                return fields
            if line[i] != ";":
                return None
            i += 1
        else:
            k = line.find(";", i)
            if k < 0:
                fields.append(line[i:])
                return fields
            fields.append(line[i:k])
            i = k + 1


def _quote(field: str) -> str:
    field = " ".join(field.split()) if not field.isprintable() else field.strip()
    if ";" in field or '"' in field:
        return '"' + field.replace('"', '""') + '"'
    return field


def format_row(cells: EntryCells, decision: Decision) -> str:
    """One entry as a dump row (without the line end)."""
    return (
        f"{'|'.join(cells.ips)};{_quote('|'.join(map(_dump_name, cells.domains)))};"
        f"{_quote(URL_SEPARATOR.join(map(_dump_url, cells.urls)))};"
        f"{_quote(decision.authority or '')};{_quote(decision.reference)};{decision.date or ''}"
    )


def _fits(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode(ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def _dump_name(name: str) -> str:
    """A name as the dump can hold it: as given, or punycode if cp1251 cannot hold it."""
    if _fits(name):
        return name
    star, base = ("*.", name[2:]) if name.startswith("*.") else ("", name)
    try:
        return star + normalise_host(base)
    except PatternError:
        return name  # not a name at all; the writer's "?" is all the dump can say


def _dump_url(url: str) -> str:
    """A URL as the dump can hold it, the same URL: a host cp1251 cannot hold in punycode,
    other characters it lacks percent-encoded (UTF-8), and a " | " inside it (the cell's
    separator) written %20|%20."""
    if URL_SEPARATOR in url:
        url = url.replace(URL_SEPARATOR, "%20|%20")
    if _fits(url):
        return url
    scheme, sep, rest = url.partition("://")
    cut = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    host, tail = rest[:cut], rest[cut:]
    if not _fits(host):
        name, colon, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
        host = _dump_name(name) + colon + port
    tail = "".join(c if _fits(c) else quote(c, safe="") for c in tail)
    return f"{scheme}{sep}{host}{tail}"


def format_stored(
    ips: str, domains: str, urls: str, authority: str | None, reference: str, date: str | None
) -> str:
    """A stored entry (its cells one per line) as a dump row: what ``format_row`` writes,
    without building the entry when nothing in it needs quoting or re-encoding."""
    names = domains + urls  # what must reach the dump intact (an authority may become "?")
    text = f"{names}{authority or ''}{reference}"
    if ";" in text or '"' in text or URL_SEPARATOR in urls or not _fits(names):
        cells = EntryCells(*(tuple(c.split("\n")) if c else () for c in (ips, domains, urls)))
        return format_row(cells, Decision(reference, authority, date))
    return (
        f"{ips.replace(chr(10), '|')};{domains.replace(chr(10), '|')};"
        f"{urls.replace(chr(10), URL_SEPARATOR)};{authority or ''};{reference};{date or ''}"
    )


def write_rows(
    rows: Iterable[tuple[EntryCells, Decision]], out: BinaryIO, *, updated_at: datetime
) -> int:
    """Write entries as an rkn-csv dump under the register's ``updated_at``; return how many."""
    return write_lines((format_row(c, d) for c, d in rows), out, updated_at=updated_at)


def write_lines(lines: Iterable[str], out: BinaryIO, *, updated_at: datetime) -> int:
    """Write formatted rows as an rkn-csv dump under ``updated_at``; return how many."""
    if updated_at.tzinfo is None:
        updated_at = as_utc(updated_at)
    stamp = updated_at.strftime("%Y-%m-%d %H:%M:%S %z")  # in the register's own offset
    out.write(f"Updated: {stamp}\n".encode(ENCODING))
    count = 0
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        count += 1
        if len(batch) >= 8192:
            out.write(("\n".join(batch) + "\n").encode(ENCODING, errors="replace"))
            batch.clear()
    if batch:
        out.write(("\n".join(batch) + "\n").encode(ENCODING, errors="replace"))
    return count
