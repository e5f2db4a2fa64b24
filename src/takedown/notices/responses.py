"""What platforms tell us: acknowledgements and responses (the platform API's core).

State rule (``items.state`` projection, written by ``ledger.projection.apply_response``): a
``removed`` or ``restricted`` response moves an ``open`` item to ``claimed`` in the same
transaction as the response row. Only the verification helper moves an item from
``claimed`` to ``removed`` / ``restricted`` (when its checks confirm the claim) or back to
``open`` (when they refute it). ``rejected`` and ``needs_info`` leave the state as it is;
the item stays open and is re-noticed after its deadline. Responses for an item that is
already removed, restricted or delisted are recorded as facts and change nothing else.

Idempotency: a response with a client key (per-response ``key``, or ``<Idempotency-Key>#<n>``
for the n-th response of a batch sent with that header) is stored once per platform; a
repeat with the same content returns the stored response, with different content it is a
conflict and the whole request changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from takedown.errors import Conflict, InputError, NotFound
from takedown.ledger import projection
from takedown.model import ItemState, ResponseAction
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Item, Notice, NoticeItem, Platform, Response

MAX_TEXT = 4000
MAX_KEY = 200
MAX_ID = 2**31 - 1  # ids are INTEGER columns


@dataclass(frozen=True)
class ResponseIn:
    item_id: int
    action: ResponseAction
    reason: str | None = None
    policy: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class ResponseOut:
    id: int
    item_id: int
    action: str
    state: str  # the item's state afterwards
    duplicate: bool
    key: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "item_id": self.item_id,
            "action": self.action,
            "item_state": self.state,
            "duplicate": self.duplicate,
            "key": self.key,
        }


def parse_response(data: object, *, where: str, key: str | None = None) -> ResponseIn:
    """Validate one response object from JSON; raise InputError naming the field."""
    if not isinstance(data, dict):
        raise InputError("a response must be a JSON object", where=where)
    unknown = set(data) - {"item_id", "action", "reason", "policy", "key"}
    if unknown:
        raise InputError(f"unknown fields {sorted(unknown)}", where=where)
    item_id = data.get("item_id")
    if isinstance(item_id, float) and item_id.is_integer():  # JSON has one kind of number
        item_id = int(item_id)
    if not isinstance(item_id, int) or isinstance(item_id, bool) or not 0 < item_id <= MAX_ID:
        raise InputError(f"item_id must be an integer 1..{MAX_ID}", where=f"{where}.item_id")
    action_text = data.get("action")
    try:
        action = ResponseAction(action_text)
    except ValueError:
        known = ", ".join(a.value for a in ResponseAction)
        raise InputError(
            f"unknown action {action_text!r}; one of {known}", where=f"{where}.action"
        ) from None
    fields: dict[str, str | None] = {}
    for name in ("reason", "policy", "key"):
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise InputError(
                f"{name} must be a string of at most {MAX_TEXT}", where=f"{where}.{name}"
            )
        if isinstance(value, str) and "\x00" in value:  # no text column holds one
            raise InputError(f"{name} holds a NUL character", where=f"{where}.{name}")
        fields[name] = value.strip() if isinstance(value, str) and value.strip() else None
    if action is ResponseAction.REJECTED and not (fields["reason"] and fields["policy"]):
        raise InputError(
            "a rejection needs a reason and the policy it relies on", where=f"{where}.reason"
        )
    resp_key = fields["key"] or key
    if resp_key is not None and len(resp_key) > MAX_KEY:
        raise InputError(f"key longer than {MAX_KEY} characters", where=f"{where}.key")
    return ResponseIn(item_id, action, fields["reason"], fields["policy"], resp_key)


def _slug(session: Session, platform_id: int) -> str:
    return session.scalar(select(Platform.slug).where(Platform.id == platform_id)) or "?"


def _load_items(
    session: Session, platform_id: int, responses: Sequence[ResponseIn]
) -> dict[int, Item]:
    """The platform's items the responses name; another platform's item is NotFound."""
    ids = sorted({r.item_id for r in responses})
    items: dict[int, Item] = {}
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        for item in session.scalars(
            select(Item).where(Item.id.in_(chunk), Item.platform_id == platform_id)
        ):
            items[item.id] = item
    for n, r in enumerate(responses):
        if r.item_id not in items:
            # another platform's item looks exactly like a missing one
            raise NotFound(f"no item {r.item_id}", where=f"responses[{n}].item_id")
    return items


def _stored_by_key(session: Session, platform_id: int, keys: list[str]) -> dict[str, Response]:
    """The platform's responses already stored under these client keys."""
    existing: dict[str, Response] = {}
    for start in range(0, len(keys), 900):
        chunk = keys[start : start + 900]
        for row in session.scalars(
            select(Response).where(
                Response.platform_id == platform_id, Response.client_key.in_(chunk)
            )
        ):
            existing[row.client_key or ""] = row
    return existing


def _check_repeat(prior: Response, r: ResponseIn, n: int) -> None:
    """A repeated key must carry the same response (else Conflict)."""
    same = (prior.item_id, prior.action, prior.reason, prior.policy) == (
        r.item_id,
        r.action.value,
        r.reason,
        r.policy,
    )
    if not same:
        raise Conflict(
            f"key {r.key!r} was used before for a different response",
            where=f"responses[{n}].key",
        )


def _audit_received(
    session: Session, platform_id: int, rows: list[Response], now: datetime
) -> None:
    audit.record(
        session,
        at=now,
        actor=f"platform:{_slug(session, platform_id)}",
        type="response.received",
        payload={
            "platform_id": platform_id,
            "responses": [
                {
                    "id": row.id,
                    "item": row.item_id,
                    "action": row.action,
                    "reason": row.reason,
                    "policy": row.policy,
                    "key": row.client_key,
                }
                for row in rows
            ],
        },
    )


def record_responses(
    db: Database, platform_id: int, responses: Sequence[ResponseIn], *, now: datetime
) -> list[ResponseOut]:
    """Store a batch of responses in one transaction (all or nothing)."""
    if not responses:
        raise InputError("no responses", where="responses")
    keys = [r.key for r in responses if r.key is not None]
    if len(set(keys)) != len(keys):
        raise InputError("a key is used twice in one request", where="responses")
    with db.session() as session:
        items = _load_items(session, platform_id, responses)
        existing = _stored_by_key(session, platform_id, keys)
        out: list[ResponseOut] = []
        new_rows: list[Response] = []
        for n, r in enumerate(responses):
            item = items[r.item_id]
            prior = existing.get(r.key) if r.key is not None else None
            if prior is not None:
                _check_repeat(prior, r, n)
                out.append(ResponseOut(prior.id, r.item_id, prior.action, item.state, True, r.key))
                continue
            row = Response(
                item_id=r.item_id,
                platform_id=platform_id,
                action=r.action.value,
                reason=r.reason,
                policy=r.policy,
                at=now,
                client_key=r.key,
            )
            session.add(row)
            new_rows.append(row)
            projection.apply_response(session, r.item_id, r.action.value, now)
            out.append(ResponseOut(0, r.item_id, r.action.value, item.state, False, r.key))
        session.flush()
        fresh = iter(new_rows)
        out = [
            o
            if o.duplicate
            else ResponseOut(next(fresh).id, o.item_id, o.action, o.state, False, o.key)
            for o in out
        ]
        if new_rows:
            _audit_received(session, platform_id, new_rows, now)
        return out


def acknowledge(db: Database, platform_id: int, notice_id: int, *, now: datetime) -> datetime:
    """Record that the platform received a notice (idempotent); return when it first did."""
    with db.session() as session:
        notice = session.scalar(
            select(Notice).where(Notice.id == notice_id, Notice.platform_id == platform_id)
        )
        if notice is None:
            raise NotFound(f"no notice {notice_id}", where="notice")
        if notice.acknowledged_at is not None:
            return notice.acknowledged_at
        notice.acknowledged_at = now
        audit.record(
            session,
            at=now,
            actor=f"platform:{_slug(session, platform_id)}",
            type="notice.acknowledged",
            payload={"notice": notice_id},
        )
        return now


def _open_clause():  # type: ignore[no-untyped-def]
    return exists().where(
        NoticeItem.notice_id == Notice.id,
        NoticeItem.item_id == Item.id,
        Item.state == ItemState.OPEN.value,
    )


def platform_notices(
    db: Database,
    platform_id: int,
    *,
    after: int = 0,
    limit: int = 100,
    include_closed: bool = False,
) -> tuple[list[dict[str, object]], int | None]:
    """A page of the platform's notices (open ones: some item still open), oldest first.

    Returns (notices, next cursor or None). Each notice lists its items and their states.
    """
    with db.reading() as session:
        query = select(Notice).where(Notice.platform_id == platform_id, Notice.id > after)
        if not include_closed:
            query = query.where(_open_clause())
        notices = session.scalars(query.order_by(Notice.id).limit(limit + 1)).all()
        more = len(notices) > limit
        notices = notices[:limit]
        ids = [n.id for n in notices]
        items: dict[int, list[dict[str, object]]] = {i: [] for i in ids}
        if ids:
            rows = session.execute(
                select(NoticeItem.notice_id, Item.id, Item.target, Item.category, Item.state)
                .join(Item, and_(Item.id == NoticeItem.item_id))
                .where(NoticeItem.notice_id.in_(ids))
                .order_by(NoticeItem.notice_id, Item.id)
            ).all()
            for nid, iid, target, category, state in rows:
                items[nid].append(
                    {"id": iid, "target": target, "category": category, "state": state}
                )
        page = [
            {
                "id": n.id,
                "kind": n.kind,
                "issued_at": n.issued_at.isoformat(),
                "deadline_at": n.deadline_at.isoformat(),
                "acknowledged_at": n.acknowledged_at.isoformat() if n.acknowledged_at else None,
                "items": items[n.id],
            }
            for n in notices
        ]
        return page, (ids[-1] if more else None)


def platform_notice(db: Database, platform_id: int, notice_id: int) -> dict[str, object]:
    """One of the platform's own notices; another platform's is NotFound."""
    page, _ = platform_notices(db, platform_id, after=notice_id - 1, limit=1, include_closed=True)
    if not page or page[0]["id"] != notice_id:
        raise NotFound(f"no notice {notice_id}", where="notice")
    return page[0]


def count_responses(db: Database, platform_id: int) -> int:
    with db.reading() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Response)
                .where(Response.platform_id == platform_id)
            )
            or 0
        )


__all__ = [
    "ResponseIn",
    "ResponseOut",
    "acknowledge",
    "count_responses",
    "parse_response",
    "platform_notice",
    "platform_notices",
    "record_responses",
]
