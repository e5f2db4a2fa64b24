"""Citizen Lab test lists (``url,category_code,category_description,date_added,source,notes``).

UTF-8 CSV, one URL per row. The test lists name sites to *test* for blocking, not legal
decisions, so an import needs a category and a decision from the command line to mean
anything; without them:

- category: the list's own code is kept with the entry (``category_code``); only codes
  that correspond to a takedown category without stretching are mapped -- ``ALDR``
  (alcohol & drugs) -> ``drugs``, ``GMB`` -> ``gambling``, ``MILX`` (terrorism and
  militants) -> ``terrorism``; every other code (``HATE``, ``PORN``,
  ``POLR``, ``NEWS``, ...) gets ``defaults.category``. Hate speech is not mapped to
  ``extremism``: the two are different legal categories in every profile we carry.
- decision: ``defaults.decision`` or ``citizenlab-test-list:<date_added>``, dated
  ``date_added``; basis: ``defaults.basis`` or the row's category description.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import BinaryIO

from takedown.errors import InputError
from takedown.model import BlockType, Decision, EntryCells, EntryRecord, TargetKind
from takedown.registry.formats._base import FileFacts, ReadDefaults, RowError, valid_date
from takedown.registry.targets import parse_target_flags

COLUMNS = ("url", "category_code", "category_description", "date_added", "source", "notes")
CATEGORY_MAP = {"ALDR": "drugs", "GMB": "gambling", "MILX": "terrorism"}


def read(
    stream: BinaryIO, *, source: str, defaults: ReadDefaults, facts: FileFacts | None = None
) -> Iterator[EntryRecord | RowError]:
    """Stream the entries (one URL each) and RowErrors of a Citizen Lab test-list CSV."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield from _read(text, source, defaults)
    except UnicodeDecodeError as exc:
        raise InputError(f"file is not UTF-8 ({exc.reason})", where=source) from None
    finally:
        text.detach()


def _read(
    text: io.TextIOWrapper, source: str, defaults: ReadDefaults
) -> Iterator[EntryRecord | RowError]:
    rows = csv.reader(text)
    header = next(rows, None)
    if header is None:
        raise InputError("empty file; expected the Citizen Lab header", where=f"{source}:1")
    if tuple(h.strip().lower() for h in header[: len(COLUMNS)]) != COLUMNS:
        first = ",".join(header)[:60]
        hint = " (an rkn-csv dump? use --format rkn-csv)" if first.startswith("Updated:") else ""
        raise InputError(
            f"not a Citizen Lab test-list CSV: header must start {','.join(COLUMNS)}, "
            f"got {first!r}{hint}",
            where=f"{source}:1",
        )
    width = len(header)
    line = rows.line_num
    for row in rows:
        lineno = line + 1  # where the row starts (a quoted field may span lines)
        line = rows.line_num
        raw = ",".join(row)
        if not row or not any(cell.strip() for cell in row):
            yield RowError(lineno, "empty row", raw)
            continue
        if len(row) != width:
            yield RowError(lineno, f"expected {width} fields, got {len(row)}", raw)
            continue
        url, code, description, added = (c.strip() for c in row[:4])
        try:
            target, flags = parse_target_flags(url)
        except InputError as exc:
            yield RowError(lineno, f"url: {exc.message}", raw)
            continue
        if target.kind is not TargetKind.URL:
            yield RowError(lineno, f"url: {url!r} is not a URL", raw)
            continue
        if added and not valid_date(added):
            yield RowError(lineno, f"unparseable date_added {added!r} (expected YYYY-MM-DD)", raw)
            continue
        reference = defaults.decision or (
            f"citizenlab-test-list:{added}" if added else "citizenlab-test-list"
        )
        yield EntryRecord(
            block_type=BlockType.URL,
            targets=((target, flags),),
            cells=EntryCells(urls=(url,)),
            category=CATEGORY_MAP.get(code.upper(), defaults.category),
            basis=defaults.basis or description or f"Citizen Lab test list ({code})",
            decision=Decision(reference, defaults.authority, added or None),
            platform=defaults.platform,
            source=f"{source}:{lineno}",
            attrs=(("category_code", code),) if code else (),
        )
