"""The operator XML dump (``rkn-xml``): ``dump.xml`` format 2.x, often in a signed zip.

::

    <?xml version="1.0" encoding="windows-1251"?>
    <reg:register updateTime="2021-03-10T12:00:00+03:00" formatVersion="2.4"
                  xmlns:reg="http://rsoc.ru">
      <content id="123" includeTime="2021-03-01T10:00:00" entryType="1"
               blockType="domain" urgencyType="0" hash="9F1C..." ts="2021-03-01T10:00:00+03:00">
        <decision date="2021-03-01" number="27-31-2021/Ид1234-21" org="суд"/>
        <url><![CDATA[http://example.com/page?a=1&b=2]]></url>
        <domain><![CDATA[example.com]]></domain>
        <ip>192.0.2.1</ip>
        <ipSubnet>198.51.100.0/24</ipSubnet>
      </content>
    </reg:register>

The root (namespaced or not) carries the register's update time -- required, it becomes
``FileFacts.updated_at`` in UTC -- and its ``formatVersion``. Each ``<content>`` is one
register entry (one decision, one block type): its ``<url>``, ``<domain>`` and ``<ip>`` /
``<ipSubnet>`` / ``<ipv6>`` / ``<ipv6Subnet>`` children are the entry's cells, kept as
written. ``blockType`` says what the entry blocks: ``domain``, ``domain-mask``, ``ip``;
``default`` (or none) means the URLs if it lists any, else what its domains or IPs
imply. Whatever an entry lists beyond its block type -- a URL entry's domain and IPs --
is a resolution hint, never a target (DESIGN.md, "Register entries"). ``includeTime``
becomes the entry's ``listed_at`` (a time without an offset is Moscow time, +03:00);
``id`` its ``source_id``; ``entryType``, ``urgencyType``, ``hash`` and ``ts`` are kept as
given in its ``attrs``. Elements' own ``ts`` attributes are not kept.

The text encoding is whatever the XML declaration says (windows-1251 or UTF-8 in
practice); the XML parser decodes it. Reading streams with expat in fixed-size chunks and
keeps only the ``<content>`` being read, so memory does not grow with the file.

Reading is strict per ``<content>`` (a bad cell, id, date or block type rejects the entry
as a RowError at the line of its start tag) and goes on after it. Malformed XML, a
DOCTYPE (refused outright: no DTD, no entities, so no entity expansion or external
fetches), a root other than ``<register>`` or a missing update time is a file-level
InputError naming ``file:line`` (and column, for malformed XML), raised when met.

:func:`open_dump` opens a plain ``dump.xml`` or a zip holding it, and verifies the
detached CMS signature (``dump.xml.sig``) with ``openssl cms`` when given a certificate.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, cast
from xml.parsers import expat

from takedown.errors import InputError
from takedown.model import BlockType, Decision, EntryRecord
from takedown.registry.entries import Reject, build_entry
from takedown.registry.formats._base import FileFacts, ReadDefaults, RowError, valid_date

MOSCOW = timezone(timedelta(hours=3), "MSK")
ROOT = "register"
DUMP_NAME = "dump.xml"
SIG_NAME = "dump.xml.sig"
ZIP_MAGIC = b"PK\x03\x04"

CHUNK = 1 << 16
SNIFF = 64  # bytes that tell an XML dump from other formats
MAX_CELL_CHARS = 1 << 16  # one <url> / <domain> / <ip> text
MAX_CELLS = 100_000  # cells of one <content>
RAW_CHARS = 400  # how much of a rejected <content> a RowError shows
OPENSSL_TIMEOUT = 600.0

# cell element -> build_entry argument
_CELLS = {
    "url": "urls",
    "domain": "domains",
    "ip": "ips",
    "ipSubnet": "ips",
    "ipv6": "ips",
    "ipv6Subnet": "ips",
}
_BLOCK_TYPES: dict[str, BlockType | None] = {
    "default": None,
    "domain": BlockType.DOMAIN,
    "domain-mask": BlockType.DOMAIN_MASK,
    "ip": BlockType.IP,
}
_KEPT_ATTRS = ("entryType", "urgencyType", "hash", "ts")


def read(
    stream: BinaryIO, *, source: str, defaults: ReadDefaults, facts: FileFacts | None = None
) -> Iterator[EntryRecord | RowError]:
    """Stream the EntryRecords (and RowErrors) of an rkn-xml dump; fill ``facts``."""
    reader = _Reader(source, defaults, facts if facts is not None else FileFacts())
    chunk = stream.read(CHUNK)
    while chunk and len(chunk) < SNIFF:  # a short read (a pipe) must not fool the sniff
        more = stream.read(CHUNK)
        if not more:
            break
        chunk += more
    _sniff(chunk, source)
    while chunk:
        yield from reader.feed(chunk)
        chunk = stream.read(CHUNK)
    yield from reader.feed(b"", final=True)


def _sniff(head: bytes, source: str) -> None:
    """Refuse, by its first bytes, a file that is plainly not an XML dump."""
    where = f"{source}:1"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not text:
        raise InputError("empty file; expected an rkn-xml dump (<register>)", where=where)
    if head.startswith(ZIP_MAGIC):
        raise InputError(
            "this is a zip archive, not dump.xml (open it with rkn_xml.open_dump)", where=where
        )
    lowered = text[:40].lower()
    hints = (
        (b"updated:", "an rkn-csv dump (use --format rkn-csv)"),
        (b"url,category_code", "a Citizen Lab test-list CSV (use --format citizenlab)"),
        (b"id,target,", "a takedown CSV export (use --format csv)"),
        (b"{", "JSON Lines (use --format jsonl)"),
    )
    for prefix, what in hints:
        if lowered.startswith(prefix):
            raise InputError(f"this looks like {what}, not an rkn-xml dump", where=where)
    if not text.startswith(b"<") and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        shown = text[:40].decode("utf-8", errors="replace")
        raise InputError(
            f"not XML (it starts with {shown!r}); expected an rkn-xml dump", where=where
        )


@dataclass(slots=True)
class _Content:
    """The ``<content>`` being read."""

    line: int
    attrs: dict[str, str]
    decision: dict[str, str] | None = None
    cells: list[tuple[str, str]] = field(default_factory=list)  # (element, text)
    problem: str | None = None  # the first structural fault found

    def fault(self, message: str) -> None:
        if self.problem is None:
            self.problem = message


class _Reader:
    """Expat handlers turning a dump into entries, chunk by chunk (pending in ``out``)."""

    def __init__(self, source: str, defaults: ReadDefaults, facts: FileFacts) -> None:
        self.source = source
        self.defaults = defaults
        self.facts = facts
        self.out: list[EntryRecord | RowError] = []
        self.depth = 0
        self.content: _Content | None = None
        self.text: list[str] | None = None  # the text of the cell being read
        self.text_chars = 0
        self.declared_encoding: str | None = None
        self.root_seen = False
        self.basis_cache: dict[tuple[str | None, str], str] = {}
        parser = expat.ParserCreate()
        parser.buffer_text = True
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.XmlDeclHandler = self._xml_decl
        parser.StartDoctypeDeclHandler = self._doctype
        parser.EntityDeclHandler = self._entity
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._chars
        self.parser = parser

    def feed(self, data: bytes, *, final: bool = False) -> Iterator[EntryRecord | RowError]:
        """Parse ``data``; yield the entries it completes, even those before a fault."""
        try:
            self.parser.Parse(data, final)
        except InputError:
            yield from self.take()
            raise
        except (LookupError, ValueError) as exc:
            if self.root_seen:
                raise  # not from the declaration: a bug, not the file's fault
            # Python's codecs decode a declared encoding expat does not know itself
            raise InputError(
                f"unsupported encoding in the XML declaration: {exc}", where=f"{self.source}:1"
            ) from None
        except expat.ExpatError as exc:
            yield from self.take()
            message = expat.ErrorString(exc.code) or str(exc)
            if exc.code == _INVALID_TOKEN and self.declared_encoding is None:
                message += (
                    " (the file declares no encoding, so it is read as UTF-8; a windows-1251"
                    ' dump must begin <?xml version="1.0" encoding="windows-1251"?>)'
                )
            where = f"{self.source}:{exc.lineno}:{exc.offset + 1}"
            raise InputError(f"malformed XML: {message}", where=where) from None
        yield from self.take()

    def take(self) -> list[EntryRecord | RowError]:
        out, self.out = self.out, []
        return out

    def _where(self) -> str:
        return f"{self.source}:{self.parser.CurrentLineNumber}"

    # --- handlers -----------------------------------------------------------------------

    def _xml_decl(self, version: str | None, encoding: str | None, standalone: int) -> None:
        self.declared_encoding = encoding

    def _doctype(self, name: str, sysid: str | None, pubid: str | None, internal: int) -> None:
        if name.lower() == "html":
            raise InputError(
                "this is an HTML page, not an rkn-xml dump (an error or login page?)",
                where=self._where(),
            )
        raise InputError(
            f"DOCTYPE declaration <!DOCTYPE {name}> refused: a dump has none, and a DTD"
            " could expand entities or fetch external ones",
            where=self._where(),
        )

    def _entity(self, name: str, *args: object) -> None:  # pragma: no cover (needs a DTD)
        raise InputError(f"entity declaration {name!r} refused", where=self._where())

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        local = name.rpartition(":")[2]
        depth, content = self.depth, self.content
        if depth == 1:
            self.root_seen = True
            self._root(local, attrs)
        elif depth == 2:
            line = self.parser.CurrentLineNumber
            if local == "content":
                self.content = _Content(line, attrs)
            else:
                message = f"unexpected <{local}> in <{ROOT}> (expected <content>)"
                self.out.append(RowError(line, message, f"<{name}>"))
        elif content is None:
            return  # inside an element already reported
        elif depth > 3:
            content.fault(f"unexpected <{local}> nested in a <content> child")
        elif local == "decision":
            if content.decision is not None:
                content.fault("more than one <decision>")
            else:
                content.decision = attrs
        elif local in _CELLS:
            if len(content.cells) >= MAX_CELLS:
                content.fault(f"more than {MAX_CELLS} url/domain/ip elements")
            else:
                self.text, self.text_chars = [], 0
        else:
            content.fault(f"unknown element <{local}> in <content>")

    def _end(self, name: str) -> None:
        depth = self.depth
        self.depth -= 1
        content = self.content
        if content is None:
            return
        if depth == 3 and self.text is not None:
            content.cells.append((name.rpartition(":")[2], "".join(self.text)))
            self.text = None
        elif depth == 2:
            self.content = None
            self.out.append(self._entry(content))

    def _chars(self, data: str) -> None:
        text = self.text
        if text is None:
            return
        self.text_chars += len(data)
        if self.text_chars > MAX_CELL_CHARS:
            if self.content is not None:
                self.content.fault(f"an element's text is longer than {MAX_CELL_CHARS}")
            text.clear()
            return
        text.append(data)

    def _root(self, local: str, attrs: dict[str, str]) -> None:
        where = self._where()
        if local != ROOT:
            what = "an HTML page" if local.lower() == "html" else f"some other XML (<{local}>)"
            raise InputError(
                f"root element is <{local}>, not <{ROOT}>: this is {what}, not an rkn-xml dump",
                where=where,
            )
        stamp = attrs.get("updateTime", "").strip()
        if not stamp:
            raise InputError(f"<{ROOT}> has no updateTime", where=where)
        try:
            self.facts.updated_at = _moment(stamp)
        except ValueError:
            raise InputError(
                f"<{ROOT}> updateTime {stamp!r} is not a time (expected ISO 8601)", where=where
            ) from None
        self.facts.format_version = attrs.get("formatVersion") or None

    # --- one <content> ------------------------------------------------------------------

    def _entry(self, content: _Content) -> EntryRecord | RowError:
        try:
            return self._build(content)
        except Reject as exc:
            return RowError(content.line, str(exc), _render(content))

    def _build(self, content: _Content) -> EntryRecord:
        if content.problem is not None:
            raise Reject(content.problem)
        attrs = content.attrs
        source_id = attrs.get("id", "").strip()
        if not source_id:
            raise Reject("<content> has no id")
        kind = attrs.get("blockType", "default").strip()
        if kind not in _BLOCK_TYPES:
            expected = ", ".join(_BLOCK_TYPES)
            raise Reject(f"unknown blockType {kind!r} (expected one of: {expected})")
        listed = attrs.get("includeTime", "").strip()
        try:
            listed_at = _moment(listed) if listed else None
        except ValueError:
            raise Reject(f"includeTime: unparseable time {listed!r} (expected ISO 8601)") from None
        given = content.decision or {}
        date = given.get("date", "").strip()
        if date and not valid_date(date):
            raise Reject(f"decision date: unparseable date {date!r} (expected YYYY-MM-DD)")
        defaults = self.defaults
        reference = given.get("number", "").strip() or (defaults.decision or "")
        if not reference:
            raise Reject("empty decision number" if given else "<content> has no <decision>")
        authority = given.get("org", "").strip() or defaults.authority or None
        columns: dict[str, list[str]] = {"ips": [], "domains": [], "urls": []}
        for element, text in content.cells:
            columns[_CELLS[element]].append(text)
        return build_entry(
            ips=columns["ips"],
            domains=columns["domains"],
            urls=columns["urls"],
            decision=Decision(reference, authority, date or None),
            category=defaults.category,
            basis=defaults.basis or self._basis(authority, reference),
            platform=defaults.platform,
            source=f"{self.source}:{content.line}",
            stated=_BLOCK_TYPES[kind],
            listed_at=listed_at,
            source_id=source_id,
            attrs=tuple((key, attrs[key]) for key in _KEPT_ATTRS if key in attrs),
        )

    def _basis(self, authority: str | None, reference: str) -> str:
        key = (authority, reference)
        basis = self.basis_cache.get(key)
        if basis is None:
            basis = f"{authority} decision {reference}" if authority else f"decision {reference}"
            if len(self.basis_cache) > 10000:
                self.basis_cache.clear()
            self.basis_cache[key] = basis
        return basis


_INVALID_TOKEN = 4  # XML_ERROR_INVALID_TOKEN


def _moment(text: str) -> datetime:
    """An ISO 8601 time in UTC; one without an offset is Moscow time. Raise ValueError."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=MOSCOW)
    return moment.astimezone(UTC)


def _render(content: _Content) -> str:
    """A short one-line rendering of a ``<content>`` for a RowError."""
    attrs = " ".join(f"{k}={v}" for k, v in content.attrs.items() if k != "hash")
    parts = [f"content {attrs}"]
    if content.decision is not None:
        parts.append("decision " + " ".join(f"{k}={v}" for k, v in content.decision.items()))
    parts.extend(f"{element} {text.strip()}" for element, text in content.cells)
    shown = "; ".join(parts)
    return shown if len(shown) <= RAW_CHARS else shown[: RAW_CHARS - 1] + "…"


# --- opening a dump ---------------------------------------------------------------------


def open_dump(
    path: Path, *, signer_cert: Path | None, facts: FileFacts
) -> contextlib.AbstractContextManager[BinaryIO]:
    """Open ``dump.xml``, plain or in a zip (by its magic, not its name), for :func:`read`.

    With ``signer_cert`` (PEM or DER), verify the detached CMS signature first --
    ``dump.xml.sig`` in the zip, or ``<path>.sig`` beside a plain file -- and set
    ``facts.signature`` to ``"verified: <signer subject>"``; a missing or failing
    signature is an InputError. Without it, ``facts.signature`` is None (not checked).
    """
    return _open_dump(path, signer_cert, facts)


@contextlib.contextmanager
def _open_dump(path: Path, signer_cert: Path | None, facts: FileFacts) -> Iterator[BinaryIO]:
    facts.signature = None
    try:
        with path.open("rb") as probe:
            magic = probe.read(len(ZIP_MAGIC))
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror or exc}", where=str(path)) from None
    if magic == ZIP_MAGIC:
        with _zip_dump(path, signer_cert, facts) as stream:
            yield stream
        return
    if signer_cert is not None:
        sig = path.with_name(path.name + ".sig")
        if not sig.is_file():
            raise InputError(
                f"no detached signature {sig.name} beside the dump, and a signer certificate"
                " was given",
                where=str(path),
            )
    with path.open("rb") as stream:
        if signer_cert is not None:
            # openssl reads the very file this stream reads, even if the path is replaced
            fd = stream.fileno()
            same = Path(f"/dev/fd/{fd}")
            content, fds = (same, (fd,)) if same.exists() else (path, ())
            with tempfile.TemporaryDirectory(prefix="takedown-sig-") as tmp:
                facts.signature = verify_signature(
                    content, sig, signer_cert, Path(tmp), pass_fds=fds
                )
            stream.seek(0)
        yield stream


@contextlib.contextmanager
def _zip_dump(path: Path, signer_cert: Path | None, facts: FileFacts) -> Iterator[BinaryIO]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"unreadable zip archive: {exc}", where=str(path)) from None
    with archive:
        names = archive.namelist()
        if DUMP_NAME not in names:
            held = ", ".join(names[:10]) + (
                f" and {len(names) - 10} more" if len(names) > 10 else ""
            )
            raise InputError(
                f"the zip holds no {DUMP_NAME} at its top level (it holds: {held or 'nothing'})",
                where=str(path),
            )
        try:
            if signer_cert is None:
                with archive.open(DUMP_NAME) as stream:
                    yield cast(BinaryIO, stream)
                return
            if SIG_NAME not in names:
                raise InputError(
                    f"the zip holds no {SIG_NAME}, and a signer certificate was given",
                    where=str(path),
                )
            # openssl needs both as files: extract them, then read the verified copy
            with tempfile.TemporaryDirectory(prefix="takedown-dump-") as tmp:
                folder = Path(tmp)
                dump, sig = folder / DUMP_NAME, folder / SIG_NAME
                for name, target in ((DUMP_NAME, dump), (SIG_NAME, sig)):
                    with archive.open(name) as member, target.open("wb") as out:
                        shutil.copyfileobj(member, out, CHUNK)
                facts.signature = verify_signature(dump, sig, signer_cert, folder)
                with dump.open("rb") as stream:
                    yield stream
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
            raise InputError(f"unreadable zip member: {exc}", where=str(path)) from None


def verify_signature(
    content: Path, sig: Path, cert: Path, workdir: Path, *, pass_fds: tuple[int, ...] = ()
) -> str:
    """Verify ``sig`` (detached CMS, DER or PEM) over ``content`` against ``cert`` (its
    signer, PEM or DER, trusted as is); return ``"verified: <signer subject>"``.
    Raise InputError if it does not verify. ``pass_fds``: descriptors openssl inherits."""
    where = str(sig)
    try:
        with sig.open("rb") as f:
            sig_form = "PEM" if f.read(11) == b"-----BEGIN " else "DER"
    except OSError as exc:
        raise InputError(f"cannot read signature: {exc.strerror or exc}", where=where) from None
    cert_pem = _pem_certificate(cert, workdir)
    signer = workdir / "signer.pem"
    result = _openssl(
        "cms",
        "-verify",
        "-binary",
        "-inform",
        sig_form,
        "-in",
        str(sig),
        "-content",
        str(content),
        "-certfile",
        str(cert_pem),
        "-CAfile",
        str(cert_pem),
        "-purpose",
        "any",
        "-signer",
        str(signer),
        "-out",
        "/dev/null",
        where=where,
        pass_fds=pass_fds,
    )
    if result.returncode != 0:
        raise InputError(
            f"signature does not verify with {cert.name}: {_openssl_reason(result.stderr)}",
            where=where,
        )
    subject = _openssl("x509", "-noout", "-subject", "-in", str(signer), where=where)
    if subject.returncode != 0:  # pragma: no cover (openssl just wrote it)
        raise InputError(f"cannot read the signer: {_openssl_reason(subject.stderr)}", where=where)
    text = subject.stdout.decode("utf-8", errors="replace").strip()
    return f"verified: {text.removeprefix('subject=').strip()}"


def _pem_certificate(cert: Path, workdir: Path) -> Path:
    """``cert`` as a PEM file (``-CAfile`` takes PEM only)."""
    try:
        with cert.open("rb") as f:
            pem = f.read(11) == b"-----BEGIN "
    except OSError as exc:
        raise InputError(
            f"cannot read certificate: {exc.strerror or exc}", where=str(cert)
        ) from None
    if pem:
        return cert
    out = workdir / "signer-cert.pem"
    args = ("x509", "-inform", "DER", "-in", str(cert), "-out", str(out))
    result = _openssl(*args, where=str(cert))
    if result.returncode != 0:
        raise InputError(
            f"not a PEM or DER certificate: {_openssl_reason(result.stderr)}", where=str(cert)
        )
    return out


def _openssl(
    *args: str, where: str, pass_fds: tuple[int, ...] = ()
) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["openssl", *args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=OPENSSL_TIMEOUT,
            check=False,
            pass_fds=pass_fds,
        )
    except FileNotFoundError:
        raise InputError("openssl is not installed; cannot verify", where=where) from None
    except subprocess.TimeoutExpired:
        raise InputError("openssl took too long verifying", where=where) from None


def _openssl_reason(stderr: bytes) -> str:
    """What openssl said went wrong: the reasons of its error lines, else its first line."""
    lines = [line.strip() for line in stderr.decode("utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line]
    # "40971663:error:1700006D:CMS routines:CMS_verify:content verify error:file:line:"
    reasons = [line.split(":")[5] for line in lines if line.count(":") >= 6 and ":error:" in line]
    if reasons:
        return "; ".join(dict.fromkeys(reasons))
    return lines[0] if lines else "openssl failed"
