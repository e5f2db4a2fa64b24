"""Media evidence and re-uploads in the database (the I/O shell around hashing and matcher).

Evidence keeps an item's media hashes (SHA-256, PDQ and its quality), never the media
unless asked to (``keep_dir``), and never for CSAM. Re-uploads are a listed item's media
found again under another URL, by verification or reported by the platform; a platform's
report that it acted on one counts as its removal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from takedown import config
from takedown.errors import Conflict, InputError, NotFound
from takedown.media.hashing import MediaHash, check_pdq_hex, hash_media
from takedown.media.matcher import IndexedHash, MediaMatch, MediaMatcher
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Item, MediaEvidence, Platform, Reupload

NEVER_KEPT = frozenset({"csam"})  # categories whose media is never stored, hash only
FOUND_BY = ("verify", "probe", "platform")
MATCH_ACTIONS = ("removed", "restricted")


@dataclass(frozen=True, slots=True)
class Evidence:
    id: int
    item_id: int
    kind: str
    sha256: str
    size: int
    pdq: str | None
    quality: int | None
    source: str
    kept: bool
    created: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "item_id": self.item_id,
            "kind": self.kind,
            "sha256": self.sha256,
            "size": self.size,
            "pdq": self.pdq,
            "quality": self.quality,
            "source": self.source,
            "kept": self.kept,
            "created": self.created,
        }


def _evidence(row: MediaEvidence, created: bool) -> Evidence:
    return Evidence(
        row.id,
        row.item_id,
        row.kind,
        row.sha256,
        row.size,
        row.pdq,
        row.quality,
        row.source,
        row.kept_path is not None,
        created,
    )


def record_evidence(
    db: Database,
    item_id: int,
    data: bytes,
    *,
    source: str,
    now: datetime,
    actor: str,
    keep_dir: Path | None = None,
) -> Evidence:
    """Hash ``data`` as evidence of item ``item_id``; keep the bytes under ``keep_dir`` only
    when given, and never for a CSAM item (refused, nothing stored). The same media for the
    same item is recorded once."""
    hashed = hash_media(data, where=source)
    with db.session() as session:
        item = session.get(Item, item_id)
        if item is None:
            raise NotFound(f"no item {item_id}", where="ITEM")
        if keep_dir is not None and item.category in NEVER_KEPT:
            raise InputError(
                f"media of {item.category} items is never kept, only its hashes; "
                "run without --keep",
                where="--keep",
            )
        existing = session.scalar(
            select(MediaEvidence).where(
                MediaEvidence.item_id == item_id, MediaEvidence.sha256 == hashed.sha256
            )
        )
        if existing is not None:
            if keep_dir is not None and existing.kept_path is None:
                existing.kept_path = _keep(keep_dir, hashed, data)
            return _evidence(existing, False)
        kept_path = _keep(keep_dir, hashed, data) if keep_dir is not None else None
        row = MediaEvidence(
            item_id=item_id,
            kind=hashed.kind,
            sha256=hashed.sha256,
            size=hashed.size,
            pdq=hashed.pdq,
            quality=hashed.quality,
            source=source,
            kept_path=kept_path,
            recorded_at=now,
            recorded_by=actor,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            at=now,
            actor=actor,
            type="media.evidence",
            payload={
                "item_id": item_id,
                "evidence_id": row.id,
                "kind": hashed.kind,
                "sha256": hashed.sha256,
                "pdq": hashed.pdq,
                "quality": hashed.quality,
                "kept": kept_path is not None,
            },
        )
        return _evidence(row, True)


def _keep(keep_dir: Path, hashed: MediaHash, data: bytes) -> str:
    """Write the media content-addressed under ``keep_dir``; its path."""
    keep_dir.mkdir(parents=True, exist_ok=True)
    path = keep_dir / hashed.sha256
    if not path.exists():
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return str(path)


def list_evidence(db: Database, item_id: int) -> list[Evidence]:
    with db.reading() as session:
        rows = session.scalars(
            select(MediaEvidence).where(MediaEvidence.item_id == item_id).order_by(MediaEvidence.id)
        )
        return [_evidence(r, False) for r in rows]


# --- matching -------------------------------------------------------------------------------


def load_matcher(session: Session, cfg: config.Config | None = None) -> MediaMatcher:
    """A matcher over the evidence of every item still on the register."""
    cfg = cfg or config.default()
    rows = session.execute(
        select(
            MediaEvidence.id,
            MediaEvidence.item_id,
            Item.platform_id,
            Item.category,
            MediaEvidence.sha256,
            MediaEvidence.pdq,
            MediaEvidence.quality,
        )
        .join(Item, Item.id == MediaEvidence.item_id)
        .where(Item.delisted_at.is_(None))
        .order_by(MediaEvidence.id)
    ).all()
    return MediaMatcher([IndexedHash(*r) for r in rows], cfg.pdq_threshold)


def record_found(
    session: Session,
    matches: list[MediaMatch],
    *,
    url: str,
    hashed: MediaHash | None,
    found_by: str,
    now: datetime,
    actor: str,
) -> list[int]:
    """Record ``url`` as a re-upload of each matched item (once while it is open); the
    ids of the re-uploads recorded now."""
    out = []
    for m in matches:
        if m.item_id in {r for r in _open_items_at(session, url)}:
            continue
        row = Reupload(
            item_id=m.item_id,
            platform_id=m.platform_id,
            evidence_id=m.evidence_id,
            url=url,
            sha256=hashed.sha256 if hashed else None,
            pdq=hashed.pdq if hashed else None,
            distance=m.distance,
            found_at=now,
            found_by=found_by,
        )
        session.add(row)
        session.flush()
        out.append(row.id)
        audit.record(
            session,
            at=now,
            actor=actor,
            type="media.reupload_found",
            payload={"reupload_id": row.id, "item_id": m.item_id, "url": url,
                     "distance": m.distance, "found_by": found_by},
        )  # fmt: skip
    return out


def _open_items_at(session: Session, url: str) -> list[int]:
    return list(
        session.scalars(
            select(Reupload.item_id).where(Reupload.url == url, Reupload.removed_at.is_(None))
        )
    )


def record_gone(session: Session, url: str, *, now: datetime, actor: str) -> int:
    """Verification found ``url`` no longer serving the media: its open re-uploads are
    removed. The number closed."""
    ids = list(
        session.scalars(
            select(Reupload.id).where(Reupload.url == url, Reupload.removed_at.is_(None))
        )
    )
    if ids:
        session.execute(update(Reupload).where(Reupload.id.in_(ids)).values(removed_at=now))
        audit.record(
            session,
            at=now,
            actor=actor,
            type="media.reupload_gone",
            payload={"url": url, "reupload_ids": ids},
        )
    return len(ids)


# --- the platform API -----------------------------------------------------------------------


def platform_hashes(
    db: Database, platform_id: int, *, since: int = 0, limit: int = 500
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of the PDQ hashes of the platform's own live items, oldest first, after
    evidence id ``since``; (page, next cursor or None)."""
    with db.reading() as session:
        rows = session.execute(
            select(MediaEvidence, Item.target, Item.category)
            .join(Item, Item.id == MediaEvidence.item_id)
            .where(
                Item.platform_id == platform_id,
                Item.delisted_at.is_(None),
                MediaEvidence.pdq.is_not(None),
                MediaEvidence.id > since,
            )
            .order_by(MediaEvidence.id)
            .limit(limit + 1)
        ).all()
    more = len(rows) > limit
    page = [
        {
            "id": ev.id,
            "signal_type": "pdq",
            "signal_value": ev.pdq,
            "quality": ev.quality,
            "item_id": ev.item_id,
            "item_target": target,
            "category": category,
            "recorded_at": ev.recorded_at.isoformat(),
        }
        for ev, target, category in rows[:limit]
    ]
    return page, (page[-1]["id"] if more else None)


@dataclass(frozen=True, slots=True)
class ReportedMatch:
    item_id: int
    action: str
    url: str | None = None
    hash: str | None = None
    key: str | None = None


def parse_match(data: Any, *, where: str) -> ReportedMatch:
    """One reported match from a JSON object; InputError naming the field."""
    if not isinstance(data, dict):
        raise InputError("expected an object", where=where)
    unknown = set(data) - {"item_id", "action", "url", "hash", "signal_type", "key"}
    if unknown:
        raise InputError(f"unknown fields {sorted(unknown)}", where=where)
    item_id = data.get("item_id")
    if isinstance(item_id, float) and item_id.is_integer():  # JSON has one kind of number
        item_id = int(item_id)
    if isinstance(item_id, bool) or not isinstance(item_id, int) or not 1 <= item_id < 2**31:
        raise InputError("must be an item id", where=f"{where}.item_id")
    action = data.get("action")
    if action not in MATCH_ACTIONS:
        raise InputError(f"must be one of {', '.join(MATCH_ACTIONS)}", where=f"{where}.action")
    if data.get("signal_type", "pdq") != "pdq":
        raise InputError("only 'pdq' is exchanged", where=f"{where}.signal_type")
    url = _text(data.get("url"), 8000, f"{where}.url")
    key = _text(data.get("key"), 200, f"{where}.key")
    value = data.get("hash")
    pdq = None if value is None else check_pdq_hex(value, where=f"{where}.hash")
    return ReportedMatch(item_id, action, url, pdq, key)


# white space as the API's JSON Schema patterns mean it (ECMA-262 ``\s``)
_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def _text(value: Any, limit: int, where: str) -> str | None:
    """Optional text (null: absent); not blank, no NUL, at most ``limit`` characters."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise InputError(f"must be text of at most {limit} characters", where=where)
    if not value.strip(_SPACE):
        raise InputError("must not be blank", where=where)
    return value.strip(_SPACE)


def record_platform_matches(
    db: Database, platform_id: int, matches: list[ReportedMatch], *, now: datetime
) -> list[dict[str, Any]]:
    """Store the platform's matches it acted on (all or nothing) as removed re-uploads of
    its own items (another platform's item: 404). A repeated key is not stored twice."""
    out = []
    with db.session() as session:
        slug = session.scalar(select(Platform.slug).where(Platform.id == platform_id))
        actor = f"platform:{slug}"
        for n, m in enumerate(matches):
            owner = session.scalar(select(Item.platform_id).where(Item.id == m.item_id))
            if owner != platform_id:
                raise NotFound(f"no item {m.item_id}", where=f"matches[{n}].item_id")
            if m.key is not None:
                prior = session.scalar(
                    select(Reupload).where(
                        Reupload.platform_id == platform_id, Reupload.client_key == m.key
                    )
                )
                if prior is not None:
                    if prior.item_id != m.item_id or (m.url and prior.url != m.url):
                        raise Conflict(
                            "key already used for another match", where=f"matches[{n}].key"
                        )
                    out.append(_match_json(prior, duplicate=True))
                    continue
            row = None
            if m.url is not None:  # one the regulator found: the platform's report closes it
                row = session.scalar(
                    select(Reupload).where(
                        Reupload.item_id == m.item_id,
                        Reupload.url == m.url,
                        Reupload.removed_at.is_(None),
                        Reupload.client_key.is_(None),
                    )
                )
            if row is None:
                row = Reupload(
                    item_id=m.item_id,
                    platform_id=platform_id,
                    url=m.url,
                    pdq=m.hash,
                    found_at=now,
                    found_by="platform",
                )
                session.add(row)
            row.removed_at = now
            row.client_key = m.key
            session.flush()
            audit.record(
                session,
                at=now,
                actor=actor,
                type="media.reupload_removed",
                payload={"reupload_id": row.id, "item_id": m.item_id, "url": m.url,
                         "action": m.action, "found_by": row.found_by},
            )  # fmt: skip
            out.append(_match_json(row, duplicate=False))
    return out


def _match_json(row: Reupload, *, duplicate: bool) -> dict[str, Any]:
    return {
        "id": row.id,
        "item_id": row.item_id,
        "url": row.url,
        "found_by": row.found_by,
        "removed_at": row.removed_at.isoformat() if row.removed_at else None,
        "duplicate": duplicate,
    }


# --- figures --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReuploadFact:
    platform_id: int | None
    found_at: datetime
    removed_at: datetime | None


def reupload_facts(session: Session) -> list[ReuploadFact]:
    return [
        ReuploadFact(*r)
        for r in session.execute(
            select(Reupload.platform_id, Reupload.found_at, Reupload.removed_at)
        )
    ]


def reupload_counts(session: Session, platform_id: int | None, now: datetime) -> tuple[int, int]:
    """(found, removed) re-uploads of the platform's items as of ``now``."""
    scope = [Reupload.found_at <= now]
    if platform_id is not None:
        scope.append(Reupload.platform_id == platform_id)
    found, removed = session.execute(
        select(
            func.count(),
            func.count().filter(and_(Reupload.removed_at.is_not(None), Reupload.removed_at <= now)),
        ).where(*scope)
    ).one()
    return int(found), int(removed)


def list_reuploads(
    db: Database, *, platform_id: int | None = None, only_open: bool = False
) -> list[dict[str, Any]]:
    """Re-uploads for people (``takedown reuploads``, the demo report)."""
    with db.reading() as session:
        q = (
            select(Reupload, Item.target, Item.category, Platform.slug)
            .join(Item, Item.id == Reupload.item_id)
            .outerjoin(Platform, Platform.id == Reupload.platform_id)
            .order_by(Reupload.id)
        )
        if platform_id is not None:
            q = q.where(Reupload.platform_id == platform_id)
        if only_open:
            q = q.where(or_(Reupload.removed_at.is_(None)))
        return [
            {
                "id": r.id,
                "item_id": r.item_id,
                "item_target": target,
                "category": category,
                "platform": slug,
                "url": r.url,
                "distance": r.distance,
                "found_by": r.found_by,
                "found_at": r.found_at,
                "removed_at": r.removed_at,
            }
            for r, target, category, slug in session.execute(q)
        ]
