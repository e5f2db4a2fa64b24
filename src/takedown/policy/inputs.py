"""What evaluation reads from the database: ledger figures, obligations, measures.

Everything here reads; ``policy.measures`` writes what evaluation decides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from takedown import ledger
from takedown.errors import NotFound
from takedown.model import Figures, MeasureAction, MeasureState
from takedown.policy.evaluate import DAY, MeasureView
from takedown.policy.spec import Ladder
from takedown.store.schema import Measure, Obligation, Platform


@dataclass(frozen=True)
class Inputs:
    """Everything evaluation reads for one platform at one moment."""

    figures: Figures
    history: tuple[Figures, ...]
    recent: Mapping[int, Figures]
    obligations: Mapping[str, str]


def platforms(session: Session, platform: str | None) -> dict[int, str]:
    """Platform id -> slug of every platform, or of the one named (unknown: NotFound)."""
    q = select(Platform.id, Platform.slug).order_by(Platform.slug)
    if platform is not None:
        q = q.where(Platform.slug == platform)
    out = {pid: slug for pid, slug in session.execute(q)}
    if platform is not None and not out:
        raise NotFound(f"unknown platform {platform!r}", where="--platform")
    return out


def platform_id(session: Session, slug: str, where: str = "SLUG") -> int:
    """The id of the platform ``slug`` (unknown: NotFound naming ``where``)."""
    pid = session.scalar(select(Platform.id).where(Platform.slug == slug))
    if pid is None:
        raise NotFound(f"unknown platform {slug!r}", where=where)
    return pid


def obligation_history(
    session: Session, pids: Sequence[int]
) -> list[tuple[int, str, str, datetime]]:
    """Every recorded obligation state of these platforms: (platform id, kind, state, at)."""
    rows = session.execute(
        select(Obligation.platform_id, Obligation.kind, Obligation.state, Obligation.at)
        .where(Obligation.platform_id.in_(list(pids)))
        .order_by(Obligation.at, Obligation.id)
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


def obligations_of(session: Session, pids: Sequence[int]) -> dict[int, dict[str, str]]:
    """platform id -> kind -> latest state."""
    out: dict[int, dict[str, str]] = defaultdict(dict)
    for pid, kind, state, _at in obligation_history(session, pids):
        out[pid][kind] = state
    return out


class FigureSource:
    """Ledger figures of many platforms at arbitrary moments from one load of the facts.

    Uses ``takedown.ledger`` (facts replayed as of each moment). New-item windows are the
    same figures over the items listed in the last N days.
    """

    def __init__(self, session: Session, slugs: Sequence[str], until: datetime) -> None:
        facts = ledger.load_facts(session, None, until=until)
        wanted = set(slugs)
        by_item: dict[int, str] = {}
        items: dict[str, list[Any]] = defaultdict(list)
        for item in facts.items:
            if item.platform in wanted:
                items[item.platform].append(item)
                by_item[item.id] = item.platform
        responses: dict[str, list[Any]] = defaultdict(list)
        checks: dict[str, list[Any]] = defaultdict(list)
        for r in facts.responses:
            if r.item_id in by_item:
                responses[by_item[r.item_id]].append(r)
        for c in facts.checks:
            if c.item_id in by_item:
                checks[by_item[c.item_id]].append(c)
        self._facts = {s: ledger.LedgerFacts(items[s], responses[s], checks[s]) for s in wanted}
        self._index = {s: ledger.LedgerIndex(f) for s, f in self._facts.items()}
        self._reuploads: dict[str, list[ledger.ReuploadFact]] = defaultdict(list)
        for r in ledger.reupload_facts(session):
            if r.platform in wanted and r.found_at <= until:
                self._reuploads[r.platform].append(r)

    def figures(self, slug: str, now: datetime) -> Figures:
        return ledger.with_reuploads(self._index[slug].figures(slug, now), self._reuploads[slug])

    def recent(self, slug: str, now: datetime, days: int) -> Figures:
        facts = self._facts[slug]
        since = now - days * DAY
        sub = ledger.LedgerFacts(
            [i for i in facts.items if i.listed_at > since], facts.responses, facts.checks
        )
        return ledger.LedgerIndex(sub).figures(slug, now)

    def inputs(
        self, ladder: Ladder, slug: str, now: datetime, obligations: Mapping[str, str]
    ) -> Inputs:
        return Inputs(
            figures=self.figures(slug, now),
            history=tuple(self.figures(slug, now - n * DAY) for n in sorted(ladder.history_days())),
            recent={n: self.recent(slug, now, n) for n in sorted(ladder.windows())},
            obligations=dict(obligations),
        )


# --- measures as evaluation sees them -------------------------------------------------------


def _ended_at(m: Measure) -> datetime | None:
    if m.state == MeasureState.LIFTED.value:
        return m.lifted_at
    if m.state == MeasureState.EXPIRED.value:
        return m.expires_at or m.review_at
    return None


def views_of(session: Session, pids: Sequence[int]) -> dict[int, list[MeasureView]]:
    """Ladder-made measures per platform as MeasureViews (with their chain's first start)."""
    rows = session.scalars(
        select(Measure).where(Measure.platform_id.in_(list(pids)), Measure.rule.is_not(None))
    ).all()
    by_id = {m.id: m for m in rows}
    slugs = dict(session.execute(select(Platform.id, Platform.slug)).all())
    out: dict[int, list[MeasureView]] = defaultdict(list)
    for m in rows:
        origin = m.starts_at
        cur = m
        while cur.supersedes_id is not None and cur.supersedes_id in by_id:
            cur = by_id[cur.supersedes_id]
            origin = cur.starts_at or origin
        out[m.platform_id].append(
            MeasureView(
                id=m.id,
                platform=slugs[m.platform_id],
                rule=m.rule,
                action=MeasureAction(m.action),
                state=MeasureState(m.state),
                since=m.proposed_at,
                scope={k: float(v) for k, v in (m.scope or {}).items()},
                rate_kbps=m.rate_kbps,
                classes=tuple(m.classes or ()),
                origin_at=origin if m.state == MeasureState.ACTIVE.value else None,
                review_at=m.review_at,
                ended_at=_ended_at(m),
                needs_approval=m.needs_approval,
            )
        )
    return out
