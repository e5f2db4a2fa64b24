"""Register formats, one module each; ``READERS`` and ``WRITERS`` by format name.

A reader is ``read(stream, *, source, defaults, facts=None) -> Iterator[EntryRecord |
RowError]``: it streams register entries (``registry.entries``), yields a RowError for a
bad row and goes on, fills ``facts`` (the register's update time) as it learns them, and
raises InputError (naming the file and line) only for a file-level problem -- wrong
encoding, wrong format, a missing header. A file-level InputError may come after some
rows were yielded (the encoding of a cp1251 dump is judged at its first non-ASCII line);
callers import in one transaction. A format whose files need more than ``open`` (a zip,
a signature) has an opener in ``OPENERS``: ``open(path, *, signer_cert, facts)``, a
context manager giving the stream.

A writer is ``write(items, out, *, generated_at) -> int``: it streams stored items and
returns how many it wrote. ``rkn-csv`` is written per entry (``rkn_csv.write_rows``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import BinaryIO

from takedown.model import EntryRecord, RegisterEntry
from takedown.registry.formats import citizenlab, hosts, jsonl, nft, rkn_csv, rkn_xml, rpz, table
from takedown.registry.formats._base import FileFacts, Known, ReadDefaults, RowError

Reader = Callable[..., Iterator[EntryRecord | RowError]]
Writer = Callable[..., int]

READERS: dict[str, Reader] = {
    "rkn-csv": rkn_csv.read,
    "rkn-xml": rkn_xml.read,
    "citizenlab": citizenlab.read,
    "jsonl": jsonl.read,
    "csv": table.read,
}

# formats whose rows state their own legal basis (a ``basis`` field; ``--basis`` fills the
# rows that leave it empty). Every other format needs ``--basis`` on import and sync: an
# RKN dump (rkn-csv, rkn-xml) names the authority and the decision, not the law they
# apply, and a Citizen Lab test list names no legal ground at all.
STATES_BASIS = frozenset({"jsonl", "csv"})

# readers that fingerprint rows and take ``known=`` (fingerprints not to parse again)
FINGERPRINTING = frozenset({"rkn-csv"})

# the DNS and address writers also take listed items as (id, kind, target, host) rows
TARGET_WRITERS: dict[str, Writer] = {
    "rpz": rpz.write_targets,
    "nft": nft.write_targets,
    "hosts": hosts.write_targets,
}

OPENERS: dict[str, Callable[..., contextlib.AbstractContextManager[BinaryIO]]] = {
    "rkn-xml": rkn_xml.open_dump,
}

WRITERS: dict[str, Writer] = {
    "jsonl": jsonl.write,
    "csv": table.write,
    "rpz": rpz.write,
    "nft": nft.write,
    "hosts": hosts.write,
}

__all__ = [
    "FINGERPRINTING",
    "OPENERS",
    "READERS",
    "STATES_BASIS",
    "TARGET_WRITERS",
    "WRITERS",
    "FileFacts",
    "Known",
    "ReadDefaults",
    "RowError",
    "read",
    "write",
]


def read(
    fmt: str, stream: BinaryIO, *, source: str, defaults: ReadDefaults
) -> Iterator[EntryRecord | RowError]:
    """Read ``stream`` in format ``fmt`` (a key of READERS)."""
    return READERS[fmt](stream, source=source, defaults=defaults)


def write(
    fmt: str, entries: Iterable[RegisterEntry], out: BinaryIO, *, generated_at: datetime
) -> int:
    """Write ``entries`` to ``out`` in format ``fmt`` (a key of WRITERS)."""
    return WRITERS[fmt](entries, out, generated_at=generated_at)
