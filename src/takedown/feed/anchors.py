"""The audit-chain heads a feed has published, read back from a feed directory or URL.

Every publication signs the audit log's head (sequence + hash) into its targets metadata
(``Repository.publish_bytes(audit_head=…)``). Anyone who keeps a copy of the feed holds
those heads; ``store.audit.verify_anchors`` then shows whether the regulator's chain still
contains each of them. Only heads whose targets metadata verifies against a root version
of the same repository are returned: an edited copy proves nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets

from takedown.errors import InputError, NotFound
from takedown.feed.bins import MANIFEST_NAME
from takedown.feed.directives import TARGET_NAME
from takedown.feed.repository import AUDIT_HEAD_FIELD
from takedown.store.audit import AnchorReport, ChainHead, ChainReport, verify_anchors, verify_chain
from takedown.store.db import Database

MAX_ROOTS = 1000  # a root chain longer than this is not ours
_VERSIONED = re.compile(r"^(\d+)\.targets\.json$")


def _parse(data: bytes, where: str) -> Metadata[Any]:
    try:
        return Metadata.from_bytes(data)
    except Exception as exc:  # the metadata library raises several kinds for bad input
        raise InputError(f"not TUF metadata: {exc}", where=where) from None


def _head_of(targets: Metadata[Targets]) -> ChainHead | None:
    # format 1 signs the head beside the set; format 2 beside the set's manifest
    tf = targets.signed.targets.get(TARGET_NAME) or targets.signed.targets.get(MANIFEST_NAME)
    custom = tf.custom if tf is not None and isinstance(tf.custom, dict) else {}
    return ChainHead.from_json(custom.get(AUDIT_HEAD_FIELD))


def _signed_by_some_root(targets: Metadata[Targets], roots: list[Root]) -> bool:
    for root in roots:
        try:
            root.verify_delegate("targets", targets.signed_bytes, targets.signatures)
            return True
        except UnsignedMetadataError:
            continue
    return False


def heads_from(
    roots: Iterable[tuple[str, bytes]], targets: Iterable[tuple[str, bytes]]
) -> tuple[list[ChainHead], list[str]]:
    """The heads in ``targets`` (name, bytes) that a root in ``roots`` vouches for, and one
    line per targets file that was refused (unsigned) or carried no head."""
    root_list = [_parse(data, name).signed for name, data in roots]
    if not root_list or not all(isinstance(r, Root) for r in root_list):
        raise InputError("no root metadata to verify the published heads with", where="root")
    heads: list[ChainHead] = []
    skipped: list[str] = []
    for name, data in targets:
        md = _parse(data, name)
        if not isinstance(md.signed, Targets):
            raise InputError("not targets metadata", where=name)
        if not _signed_by_some_root(md, root_list):
            skipped.append(f"{name}: not signed by a targets key of this repository; ignored")
            continue
        head = _head_of(md)
        if head is None:
            skipped.append(f"{name}: carries no audit head (published before anchoring)")
        else:
            heads.append(head)
    return heads, skipped


def _from_directory(base: Path) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    meta = base / "metadata"
    if not (meta / "root.json").is_file():
        raise NotFound("not a feed repository (no metadata/root.json)", where=str(base))
    roots = [(str(p), p.read_bytes()) for p in sorted(meta.glob("*.root.json"))]
    roots.append((str(meta / "root.json"), (meta / "root.json").read_bytes()))
    targets = [(str(p), p.read_bytes()) for p in sorted(meta.iterdir()) if _VERSIONED.match(p.name)]
    if (meta / "targets.json").is_file():
        targets.append((str(meta / "targets.json"), (meta / "targets.json").read_bytes()))
    return roots, targets


def _from_url(url: str, client: httpx.Client) -> tuple[list[tuple[str, bytes]], ...]:
    base = url.rstrip("/") + "/metadata/"

    def get(name: str) -> bytes | None:
        response = client.get(base + name)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.content

    roots: list[tuple[str, bytes]] = []
    for version in range(1, MAX_ROOTS + 1):
        data = get(f"{version}.root.json")
        if data is None:
            break
        roots.append((base + f"{version}.root.json", data))
    current = get("targets.json")
    if current is None:
        raise NotFound("no targets metadata", where=base + "targets.json")
    targets = [(base + "targets.json", current)]
    version = _parse(current, base + "targets.json").signed.version
    for older in range(version - 1, 0, -1):  # the versions the server still keeps
        data = get(f"{older}.targets.json")
        if data is None:
            break
        targets.append((base + f"{older}.targets.json", data))
    return roots, targets


def published_heads(source: str, *, timeout: float = 10.0) -> tuple[list[ChainHead], list[str]]:
    """The audit heads published by the feed at ``source`` (a directory or http(s) URL)."""
    if re.match(r"^https?://", source):
        try:
            with httpx.Client(timeout=timeout, follow_redirects=False) as client:
                roots, targets = _from_url(source, client)
        except httpx.HTTPError as exc:
            raise InputError(f"cannot read the feed: {exc}", where=source) from None
    else:
        roots, targets = _from_directory(Path(source))
    return heads_from(roots, targets)


def verify_against(
    db: Database, sources: Iterable[str]
) -> tuple[ChainReport, AnchorReport | None, list[str]]:
    """The chain's own check, then every head the feeds at ``sources`` published checked
    against it (None without sources), and notes on feed files that were passed over."""
    heads: list[ChainHead] = []
    notes: list[str] = []
    sources = list(sources)
    for source in sources:
        found, skipped = published_heads(source)
        heads.extend(found)
        notes.extend(skipped)
    with db.reading() as session:
        chain = verify_chain(session)
        anchors = verify_anchors(session, heads) if sources else None
    return chain, anchors, notes
