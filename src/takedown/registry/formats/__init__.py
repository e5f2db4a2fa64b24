"""Register formats, one module each; ``READERS`` and ``WRITERS`` by format name.

A reader is ``read(stream, *, source, defaults) -> Iterator[ItemRecord | RowError]``: it
streams, yields a RowError for a bad row and goes on, and raises InputError (naming the
file and line) only for a file-level problem -- wrong encoding, wrong format, a missing
header. A file-level InputError may come after some rows were yielded (the encoding of
a cp1251 dump is judged at its first non-ASCII line); callers import in one transaction.

A writer is ``write(entries, out, *, generated_at) -> int``: it streams and returns the
number of entries it wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import BinaryIO

from takedown.model import ItemRecord, RegisterEntry
from takedown.registry.formats import citizenlab, hosts, jsonl, nft, rkn_csv, rkn_xml, rpz, table
from takedown.registry.formats._base import ReadDefaults, RowError

Reader = Callable[..., Iterator[ItemRecord | RowError]]
Writer = Callable[..., int]

READERS: dict[str, Reader] = {
    "rkn-csv": rkn_csv.read,
    "rkn-xml": rkn_xml.read,
    "citizenlab": citizenlab.read,
    "jsonl": jsonl.read,
    "csv": table.read,
}

WRITERS: dict[str, Writer] = {
    "rkn-csv": rkn_csv.write,
    "jsonl": jsonl.write,
    "csv": table.write,
    "rpz": rpz.write,
    "nft": nft.write,
    "hosts": hosts.write,
}

__all__ = ["READERS", "WRITERS", "ReadDefaults", "RowError", "read", "write"]


def read(
    fmt: str, stream: BinaryIO, *, source: str, defaults: ReadDefaults
) -> Iterator[ItemRecord | RowError]:
    """Read ``stream`` in format ``fmt`` (a key of READERS)."""
    return READERS[fmt](stream, source=source, defaults=defaults)


def write(
    fmt: str, entries: Iterable[RegisterEntry], out: BinaryIO, *, generated_at: datetime
) -> int:
    """Write ``entries`` to ``out`` in format ``fmt`` (a key of WRITERS)."""
    return WRITERS[fmt](entries, out, generated_at=generated_at)
