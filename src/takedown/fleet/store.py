"""Operators, their report tokens and their points' reports in the database.

A token is random text shown once; only its SHA-256 (looked up, compared in constant
time as every token is, see ``takedown.accounts``) and the Ed25519 public key derived
from it (``fleet.reports``) are stored. A report is checked whole before anything is
written: token, signature, body, and that it speaks for the token's own operator.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from takedown.accounts import Actor, authorise, digest_matches, hash_token, presented_digest
from takedown.errors import AuthError, Conflict, Forbidden, InputError, NotFound
from takedown.fleet import reports as rep
from takedown.fleet.status import DEFAULT_MAX_LAG, OperatorStatus, ReportRow, fleet_status
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import FeedPublication, Operator, OperatorToken, PointReport


@dataclass(frozen=True)
class OperatorInfo:
    id: int
    name: str
    created_at: datetime
    tokens: int  # active
    points: int  # points that ever reported
    last_report_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "tokens": self.tokens,
            "points": self.points,
            "last_report_at": self.last_report_at,
        }


def check_name(name: str, *, where: str = "NAME") -> str:
    if not rep.OPERATOR.match(name):
        raise InputError(
            f"bad operator name {name[:80]!r}: lower-case letters, digits, '-'", where=where
        )
    return name


def _new_token(session: Session, operator_id: int, name: str, now: datetime) -> str:
    # the name rides in the token so a point given only its token knows whom it reports for
    token = f"tdo_{name}.{secrets.token_urlsafe(32)}"
    session.add(
        OperatorToken(
            operator_id=operator_id,
            token_hash=hash_token(token),
            public_key=rep.public_key_hex(token),
            created_at=now,
        )
    )
    return token


def add_operator(db: Database, name: str, *, now: datetime, actor: Actor) -> tuple[int, str]:
    """Register operator ``name``; return its id and its report token (shown once). Issuing
    a credential is account management (``accounts``)."""
    authorise(actor, "accounts")
    check_name(name)
    with db.session() as session:
        if session.scalar(select(Operator.id).where(Operator.name == name)) is not None:
            raise Conflict(f"operator {name!r} exists", where="NAME")
        row = Operator(name=name, created_at=now)
        session.add(row)
        session.flush()
        token = _new_token(session, row.id, name, now)
        audit.record(
            session,
            at=now,
            actor=actor.label,
            type="operator.added",
            payload={"operator": name, "token_sha256_prefix": hash_token(token)[:12]},
        )
        return row.id, token


def issue_token(db: Database, name: str, *, now: datetime, actor: Actor) -> str:
    """A new report token for ``name``; its earlier tokens are revoked."""
    authorise(actor, "accounts")
    with db.session() as session:
        op = session.scalar(select(Operator).where(Operator.name == name))
        if op is None:
            raise NotFound(f"unknown operator {name!r}", where="NAME")
        for old in session.scalars(
            select(OperatorToken).where(
                OperatorToken.operator_id == op.id, OperatorToken.revoked_at.is_(None)
            )
        ):
            old.revoked_at = now
        token = _new_token(session, op.id, name, now)
        audit.record(
            session,
            at=now,
            actor=actor.label,
            type="operator.token_issued",
            payload={"operator": name, "token_sha256_prefix": hash_token(token)[:12]},
        )
        return token


def list_operators(db: Database) -> list[OperatorInfo]:
    """Every operator with its active tokens, reporting points and last report time."""
    with db.reading() as session:
        tokens = dict(
            session.execute(
                select(OperatorToken.operator_id, func.count())
                .where(OperatorToken.revoked_at.is_(None))
                .group_by(OperatorToken.operator_id)
            ).all()
        )
        reports = {
            oid: (points, last)
            for oid, points, last in session.execute(
                select(
                    PointReport.operator_id,
                    func.count(func.distinct(PointReport.point_id)),
                    func.max(PointReport.received_at),
                ).group_by(PointReport.operator_id)
            )
        }
        out = []
        for op in session.scalars(select(Operator).order_by(Operator.name)):
            points, last = reports.get(op.id, (0, None))
            out.append(
                OperatorInfo(op.id, op.name, op.created_at, tokens.get(op.id, 0), points, last)
            )
        return out


def _authenticate(session: Session, token: str | None) -> tuple[int, str, str]:
    """(operator id, name, public key) of a report token; AuthError otherwise."""
    digest = presented_digest(token)
    row = session.execute(
        select(OperatorToken.token_hash, Operator.id, Operator.name, OperatorToken.public_key)
        .join(Operator, Operator.id == OperatorToken.operator_id)
        .where(OperatorToken.token_hash == digest, OperatorToken.revoked_at.is_(None))
    ).first()
    if not digest_matches(row[0] if row else None, digest) or row is None:
        raise AuthError("invalid token", where="Authorization")
    return int(row[1]), str(row[2]), str(row[3])


def receive_report(
    db: Database, token: str | None, signature: str | None, body: bytes, now: datetime
) -> tuple[int, rep.Report]:
    """Check a report (token, signature at ``now``, body, own operator) and store it;
    return its row id. Nothing is stored unless every check passes."""
    with db.session() as session:
        operator_id, name, public = _authenticate(session, token)
        rep.verify(public, signature, body, now)
        report = rep.parse_report(body)
        if report.operator != name:
            raise Forbidden(
                f"this token reports for {name!r}, not {report.operator!r}", where="operator"
            )
        row = PointReport(
            operator_id=operator_id,
            point_id=report.point_id,
            sent_at=report.sent_at,
            received_at=now,
            sequence=report.sequence,
            set_age_seconds=report.set_age_seconds,
            fail_open=report.fail_open,
            fail_open_reason=report.fail_open_reason or None,
            directives=[d.as_json() for d in report.directives],
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(
                f"point {report.point_id!r} already reported at {rep.format_time(report.sent_at)}",
                where="sent_at",
            ) from None
        return int(row.id), report


def _row(name: str, r: PointReport) -> ReportRow:
    return ReportRow(
        name,
        r.point_id,
        r.sent_at,
        r.received_at,
        r.sequence,
        r.fail_open,
        r.fail_open_reason,
        list(r.directives or []),
    )


def status(db: Database, now: datetime, *, max_lag: int = DEFAULT_MAX_LAG) -> list[OperatorStatus]:
    """``fleet_status`` over each point's last two reports and the feed's publications."""
    with db.reading() as session:
        names = dict(session.execute(select(Operator.id, Operator.name)).all())
        rank = (
            func.row_number()
            .over(
                partition_by=(PointReport.operator_id, PointReport.point_id),
                order_by=PointReport.id.desc(),
            )
            .label("rank")
        )
        ranked = select(PointReport.id, rank).subquery()
        rows = session.scalars(
            select(PointReport)
            .join(ranked, ranked.c.id == PointReport.id)
            .where(ranked.c.rank <= 2)
            .order_by(PointReport.operator_id, PointReport.point_id, PointReport.id.desc())
        ).all()
        pairs: dict[tuple[int, str], list[ReportRow]] = {}
        for r in rows:
            pairs.setdefault((r.operator_id, r.point_id), []).append(_row(names[r.operator_id], r))
        published = list(session.scalars(select(FeedPublication.sequence)))
    reports = [(p[0], p[1] if len(p) > 1 else None) for p in pairs.values()]
    return fleet_status(names.values(), reports, published, now, max_lag=max_lag)


def recent_reports(db: Database, *, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` reports, newest first, as stored."""
    with db.reading() as session:
        names = dict(session.execute(select(Operator.id, Operator.name)).all())
        rows = session.scalars(select(PointReport).order_by(PointReport.id.desc()).limit(limit))
        return [
            {
                "id": r.id,
                "operator": names[r.operator_id],
                "point_id": r.point_id,
                "sent_at": rep.format_time(r.sent_at),
                "received_at": rep.format_time(r.received_at),
                "sequence": r.sequence,
                "set_age_seconds": r.set_age_seconds,
                "fail_open": r.fail_open,
                "fail_open_reason": r.fail_open_reason,
                "directives": list(r.directives or []),
            }
            for r in rows
        ]
