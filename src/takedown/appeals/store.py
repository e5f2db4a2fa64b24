"""Appeals in the database: filing (``file_appeal``), reading (``get_appeal``,
``list_appeals``, counts), deciding (``decide``, whose reversal lifts or delists in the same
transaction). The checks it applies are ``appeals.rules``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from takedown import config as config_mod
from takedown.accounts import Actor, authorise, digest_matches
from takedown.appeals.rules import (
    MAX_PAGE,
    PUBLIC_DECISIONS,
    AppealRecord,
    AppealState,
    Filing,
    check_decision,
    check_filing,
    check_impartial,
    due_at,
    new_receipt,
    receipt_digest,
    row_id,
)
from takedown.errors import Conflict, InputError, NotFound
from takedown.model import MeasureState
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Appeal, Item, Measure, Platform

# --- filing ---------------------------------------------------------------------------------


def _profile(cfg: config_mod.Config, code: str | None) -> config_mod.Profile:
    """The profile ``code`` (the default one for no platform, or for a code the
    configuration no longer knows: a config mistake must not refuse the public)."""
    return cfg.profiles.get(code or config_mod.DEFAULT_PROFILE) or cfg.profile()


@dataclass(frozen=True, slots=True)
class Subject:
    """What an appeal contests, as far as the public may know it: a measure (with what it
    does) or an item (its id only: never its target)."""

    kind: str  # measure, item
    id: int
    platform_id: int | None
    profile: str | None  # the platform's jurisdiction profile code
    describe: str | None  # a measure's "Twitter: throttle 128 kbit/s"; None for an item
    # a measure's platform (display name, else slug), action and rate, for pages in words
    platform: str | None = None
    action: str | None = None
    rate_kbps: int | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.id}"

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "describe": self.describe}


def check_subject(
    db: Database,
    *,
    measure_id: object = None,
    item_id: object = None,
    now: datetime,
    platform_id: int | None = None,
) -> Subject:
    """The measure or item an appeal filed now would contest, refused as ``file_appeal``
    refuses it (for the form that precedes the filing)."""
    mid, iid = row_id(measure_id, "measure"), row_id(item_id, "item")
    if (mid is None) == (iid is None):
        raise InputError("name exactly one measure or one item", where="measure")
    probe = Filing(mid, iid, "other", "", "")
    with db.reading() as session:
        return _subject(session, probe, now, platform_id)


def _subject(session: Session, filing: Filing, now: datetime, filer: int | None) -> Subject:
    """What ``filing`` contests, refusing what is not public (NotFound, as if it did not
    exist), not the filing platform's own (NotFound: a platform learns nothing of others)
    or no longer in force (Conflict)."""
    if filing.measure_id is not None:
        from takedown.policy.records import measure_record

        row = session.execute(
            select(Measure, Platform.slug, Platform.profile, Platform.name)
            .join(Platform, Platform.id == Measure.platform_id)
            .where(Measure.id == filing.measure_id)
        ).first()
        missing = NotFound(f"no public measure {filing.measure_id}", where="measure_id")
        if row is None or row[0].starts_at is None or row[0].starts_at > now:
            raise missing  # a proposal awaiting approval is not public
        m = row[0]
        if filer is not None and m.platform_id != filer:
            raise missing
        record = measure_record(m, row[1])
        state = record.state_at(now)
        if state in (MeasureState.LIFTED, MeasureState.EXPIRED):
            raise Conflict(
                f"measure {m.id} is {state.value}; there is nothing left to contest",
                where="measure_id",
            )
        describe = f"{row[3] or row[1]}: {record.describe()}"
        return Subject(
            "measure",
            m.id,
            m.platform_id,
            row[2],
            describe,
            platform=row[3] or row[1],
            action=record.action.value,
            rate_kbps=record.rate_kbps,
        )
    item_row = session.execute(
        select(Item.platform_id, Item.listed_at, Item.delisted_at, Platform.profile)
        .outerjoin(Platform, Platform.id == Item.platform_id)
        .where(Item.id == filing.item_id)
    ).first()
    missing = NotFound(f"no listed item {filing.item_id}", where="item_id")
    if item_row is None or item_row[1] > now:
        raise missing
    pid, _listed, delisted, profile = item_row
    if filer is not None and pid != filer:
        raise missing
    if delisted is not None and delisted <= now:
        raise Conflict(
            f"item {filing.item_id} was delisted on {delisted:%Y-%m-%d}; there is nothing "
            "left to contest",
            where="item_id",
        )
    assert filing.item_id is not None
    return Subject("item", filing.item_id, pid, profile, None)


def deadline_of(subject: Subject, config: config_mod.Config | None = None) -> timedelta:
    """How long staff have to decide an appeal against ``subject`` (its platform's
    profile)."""
    return _profile(config or config_mod.default(), subject.profile).appeal_deadline


def file_appeal(
    db: Database,
    *,
    measure_id: object = None,
    item_id: object = None,
    appellant: object,
    grounds: object,
    contact: object = "",
    now: datetime,
    platform_id: int | None = None,
    config: config_mod.Config | None = None,
) -> tuple[AppealRecord, str]:
    """File an appeal against a measure in effect or a listed item; return the record and
    its receipt (shown once: only its hash is stored).

    ``platform_id``: the platform filing through its API (its appellant kind must be
    ``platform``; it may appeal only its own measures and items: NotFound otherwise).
    ``config``: the jurisdiction profiles (default: ``config.default()``); the subject's
    platform's profile sets the deadline.
    """
    filing = check_filing(
        measure_id=measure_id,
        item_id=item_id,
        appellant=appellant,
        grounds=grounds,
        contact=contact,
    )
    if platform_id is not None and filing.appellant != "platform":
        raise InputError("a platform files as appellant 'platform'", where="appellant")
    cfg = config or config_mod.default()
    receipt = new_receipt()
    digest = receipt_digest(receipt)
    assert digest is not None
    with db.session() as session:
        subject = _subject(session, filing, now, platform_id)
        row = Appeal(
            receipt_hash=digest,
            measure_id=filing.measure_id,
            item_id=filing.item_id,
            platform_id=platform_id,
            appellant=filing.appellant,
            grounds=filing.grounds,
            contact=filing.contact,
            filed_at=now,
            due_at=due_at(now, _profile(cfg, subject.profile)),
            state=AppealState.OPEN.value,
        )
        session.add(row)
        session.flush()
        slugs = _slugs(session, {subject.platform_id, platform_id})
        filer = slugs.get(platform_id)
        audit.record(
            session,
            at=now,
            actor=f"platform:{filer}" if filer else "public",
            type="appeal.filed",
            payload={
                "appeal": row.id,
                "measure_id": row.measure_id,
                "item_id": row.item_id,
                "appellant": row.appellant,
                "due_at": row.due_at,
                # what was filed, pinned by the chain; the contact never enters the log
                "grounds_sha256": hashlib.sha256(row.grounds.encode("utf-8")).hexdigest(),
                "contact_given": bool(row.contact),
            },
        )
        return _record(row, slugs.get(subject.platform_id), filer), receipt


# --- reading --------------------------------------------------------------------------------


def _slugs(session: Session, ids: set[int | None]) -> dict[int | None, str]:
    wanted = sorted(i for i in ids if i is not None)
    if not wanted:
        return {}
    query = select(Platform.id, Platform.slug).where(Platform.id.in_(wanted))
    return {pid: slug for pid, slug in session.execute(query)}


def _record(row: Appeal, platform: str | None, filed_by: str | None) -> AppealRecord:
    return AppealRecord(
        id=row.id,
        measure_id=row.measure_id,
        item_id=row.item_id,
        platform=platform,
        filed_by=filed_by,
        appellant=row.appellant,
        grounds=row.grounds,
        contact=row.contact,
        filed_at=row.filed_at,
        due_at=row.due_at,
        state=AppealState(row.state),
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        reasons=row.reasons,
    )


def _records(session: Session, rows: list[Appeal]) -> list[AppealRecord]:
    """Records for ``rows``, each with its subject's platform and its filer (3 queries)."""
    measures = {r.measure_id for r in rows if r.measure_id is not None}
    items = {r.item_id for r in rows if r.item_id is not None}
    of_measure: dict[int, int] = {}
    if measures:
        query = select(Measure.id, Measure.platform_id).where(Measure.id.in_(measures))
        of_measure = {mid: pid for mid, pid in session.execute(query)}
    of_item: dict[int, int | None] = {}
    if items:
        query = select(Item.id, Item.platform_id).where(Item.id.in_(items))
        of_item = {iid: pid for iid, pid in session.execute(query)}
    subject = {
        r.id: of_measure.get(r.measure_id) if r.measure_id is not None else of_item.get(r.item_id)
        for r in rows
    }
    slugs = _slugs(session, set(subject.values()) | {r.platform_id for r in rows})
    return [_record(r, slugs.get(subject[r.id]), slugs.get(r.platform_id)) for r in rows]


def get_appeal(db: Database, appeal_id: int) -> AppealRecord:
    """Appeal ``appeal_id`` (NotFound if there is none)."""
    with db.reading() as session:
        row = session.get(Appeal, appeal_id)
        if row is None:
            raise NotFound(f"no appeal {appeal_id}", where="ID")
        return _records(session, [row])[0]


def get_by_receipt(db: Database, receipt: str, *, platform_id: int | None = None) -> AppealRecord:
    """The appeal a receipt was issued for (NotFound for an unknown receipt, and, with
    ``platform_id``, for an appeal that platform did not file)."""
    digest = receipt_digest(receipt)
    with db.reading() as session:
        row = (
            session.scalar(select(Appeal).where(Appeal.receipt_hash == digest))
            if digest is not None
            else None
        )
        stored = row.receipt_hash if row is not None else None
        if (
            not digest_matches(stored, digest or "")
            or row is None
            or (platform_id is not None and row.platform_id != platform_id)
        ):
            raise NotFound("no appeal with this receipt", where="receipt")
        return _records(session, [row])[0]


def list_appeals(
    db: Database,
    *,
    state: str | None = None,
    overdue_at: datetime | None = None,
    measure_id: int | None = None,
    item_id: int | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[AppealRecord]:
    """Appeals in id (filing) order, a page at a time: those with id > ``after``, at most
    ``limit`` (1..``MAX_PAGE``); pass the last id as ``after`` for the next page.

    ``state``: open, upheld or reversed; ``overdue_at``: only those still open at that
    time past their deadline; ``measure_id`` / ``item_id``: only those against it.
    """
    if state is not None and state not in {s.value for s in AppealState}:
        known = ", ".join(s.value for s in AppealState)
        raise InputError(f"state must be one of {known}", where="--state")
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"limit must be 1..{MAX_PAGE}", where="limit")
    query = select(Appeal).where(Appeal.id > after)
    if state is not None:
        query = query.where(Appeal.state == state)
    if overdue_at is not None:
        query = query.where(Appeal.state == AppealState.OPEN.value, Appeal.due_at <= overdue_at)
    if measure_id is not None:
        query = query.where(Appeal.measure_id == measure_id)
    if item_id is not None:
        query = query.where(Appeal.item_id == item_id)
    with db.reading() as session:
        rows = list(session.scalars(query.order_by(Appeal.id).limit(limit)))
        return _records(session, rows)


def counts(db: Database, now: datetime) -> dict[str, int]:
    """Appeals by state, and how many are overdue at ``now`` (for the dashboard)."""
    with db.reading() as session:
        by_state = dict(
            session.execute(select(Appeal.state, func.count()).group_by(Appeal.state)).all()
        )
        late = session.scalar(
            select(func.count())
            .select_from(Appeal)
            .where(Appeal.state == AppealState.OPEN.value, Appeal.due_at <= now)
        )
    out = {s.value: int(by_state.get(s.value, 0)) for s in AppealState}
    return {"filed": sum(out.values()), **out, "overdue": int(late or 0)}


def overdue_count(db: Database, now: datetime) -> int:
    """How many appeals are still open past their deadline at ``now``."""
    return counts(db, now)["overdue"]


def _measure_counts(session: Session, measure_id: int) -> dict[str, int]:
    by_state = dict(
        session.execute(
            select(Appeal.state, func.count())
            .where(Appeal.measure_id == measure_id)
            .group_by(Appeal.state)
        ).all()
    )
    out = {s.value: int(by_state.get(s.value, 0)) for s in AppealState}
    return {"filed": sum(out.values()), **out}


def counts_for_measure(db: Database, measure_id: int) -> dict[str, int]:
    """``{"filed", "open", "upheld", "reversed"}``: the appeals against a measure."""
    with db.reading() as session:
        return _measure_counts(session, measure_id)


def public_summary(session: Session, measure_id: int) -> dict[str, Any]:
    """What a measure's public page says of its appeals: counts by state and the decided
    ones' outcomes with reasons (newest first, at most ``PUBLIC_DECISIONS``) — never who
    appealed, their grounds or contact."""
    decided = session.execute(
        select(Appeal.state, Appeal.decided_at, Appeal.decided_by, Appeal.reasons)
        .where(Appeal.measure_id == measure_id, Appeal.state != AppealState.OPEN.value)
        .order_by(Appeal.decided_at.desc(), Appeal.id.desc())
        .limit(PUBLIC_DECISIONS)
    ).all()
    return {
        **_measure_counts(session, measure_id),
        "decisions": [
            {"outcome": state, "decided_at": at, "decided_by": by, "reasons": reasons}
            for state, at, by, reasons in decided
        ],
    }


# --- deciding -------------------------------------------------------------------------------


def decide(
    db: Database,
    appeal_id: int,
    *,
    outcome: str,
    reasons: str,
    actor: Actor,
    now: datetime,
) -> AppealRecord:
    """Decide an open appeal: ``upheld`` (the measure or listing stands) or ``reversed``
    (the measure is lifted, with any measure that replaced it, or the item delisted), with
    reasons, in one transaction with its audit event ``appeal.decided``.

    Forbidden unless ``actor`` may ``decide`` (accounts.authorise) and neither proposed
    the measure nor listed the item; Conflict if the appeal was decided already.
    """
    authorise(actor, "decide")
    state, text = check_decision(outcome, reasons)
    with db.session() as session:
        row = session.get(Appeal, appeal_id)
        if row is None:
            raise NotFound(f"no appeal {appeal_id}", where="ID")
        subject = f"measure {row.measure_id}" if row.measure_id else f"item {row.item_id}"
        proposed_by = (
            session.scalar(select(Measure.created_by).where(Measure.id == row.measure_id))
            if row.measure_id is not None
            else None
        )
        listed_by = (
            session.scalar(select(Item.listed_by).where(Item.id == row.item_id))
            if row.item_id is not None
            else None
        )
        _check_open(row)
        check_impartial(actor, subject=subject, proposed_by=proposed_by, listed_by=listed_by)
        # the state moves only from open, whoever else decides at the same moment
        won = session.execute(
            update(Appeal)
            .where(Appeal.id == appeal_id, Appeal.state == AppealState.OPEN.value)
            .values(state=state.value, decided_at=now, decided_by=actor.label, reasons=text)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            session.refresh(row)
            _check_open(row)
        effect: dict[str, Any] = {}
        if state == AppealState.REVERSED:
            decision = f"appeal {appeal_id} reversed: {text}"[:200]
            effect = _reverse(session, row, decision, actor, now)
        audit.record(
            session,
            at=now,
            actor=actor.label,
            type="appeal.decided",
            payload={
                "appeal": appeal_id,
                "outcome": state.value,
                "measure_id": row.measure_id,
                "item_id": row.item_id,
                "reasons": text,
                **effect,
            },
        )
        session.refresh(row)
        return _records(session, [row])[0]


def _check_open(row: Appeal) -> None:
    if row.state != AppealState.OPEN.value:
        at = f" on {row.decided_at:%Y-%m-%d}" if row.decided_at else ""
        raise Conflict(
            f"appeal {row.id} was already decided: {row.state} by {row.decided_by}{at}",
            where="ID",
        )


def _reverse(
    session: Session, row: Appeal, decision: str, actor: Actor, now: datetime
) -> dict[str, Any]:
    """Undo what the appeal contested, through the normal paths; what was done."""
    if row.item_id is not None:
        from takedown.registry.service import delist_in

        delisted_at = session.scalar(select(Item.delisted_at).where(Item.id == row.item_id))
        if delisted_at is not None and delisted_at <= now:
            return {"delisted": [], "already_ended": True}
        delist_in(session, row.item_id, decision, now=now, actor=actor.label)
        return {"delisted": [row.item_id]}
    from takedown.policy.measures import lift_in
    from takedown.policy.records import measure_record

    lifted = []
    for m in _chain(session, row.measure_id):
        state = measure_record(m, "").state_at(now)
        if state in (MeasureState.ACTIVE, MeasureState.PROPOSED):
            lift_in(session, m.id, decision, now, actor.label)
            lifted.append(m.id)
    return {"lifted": lifted, "already_ended": not lifted}


def _chain(session: Session, measure_id: int | None) -> list[Measure]:
    """The measure and every measure that replaced it since (the ladder changes a measure's
    scope by lifting it and starting a successor), oldest first."""
    out: list[Measure] = []
    frontier = [measure_id]
    seen: set[int] = set()
    while frontier:
        rows = session.scalars(
            select(Measure).where(Measure.id.in_([i for i in frontier if i is not None]))
        ).all()
        rows = [m for m in rows if m.id not in seen]
        seen.update(m.id for m in rows)
        out.extend(rows)
        frontier = list(
            session.scalars(
                select(Measure.id).where(Measure.supersedes_id.in_([m.id for m in rows]))
            )
        )
    return sorted(out, key=lambda m: m.id)
