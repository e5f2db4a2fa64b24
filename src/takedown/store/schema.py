"""The database schema (SQLAlchemy 2 declarative). Migrations in store/migrations/."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012 - read by SQLAlchemy at class creation
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Platform(Base):
    __tablename__ = "platforms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    notice_url: Mapped[str | None] = mapped_column(String(2000))
    # The HMAC key must be usable to sign, so it is stored, never logged or listed.
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    profile: Mapped[str] = mapped_column(String(64), default="ru-2021")
    created_at: Mapped[datetime]


class PlatformHost(Base):
    __tablename__ = "platform_hosts"
    __table_args__ = (UniqueConstraint("platform_id", "pattern"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    pattern: Mapped[str] = mapped_column(String(300))
    content_class: Mapped[str] = mapped_column(String(32))


class PlatformToken(Base):
    __tablename__ = "platform_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform_id: Mapped[int] = mapped_column(
        ForeignKey("platforms.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class PlatformRange(Base):
    """An address range a platform declares it serves from (for the steering export)."""

    __tablename__ = "platform_ranges"
    __table_args__ = (UniqueConstraint("platform_id", "prefix"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(64))  # canonical network, e.g. 203.0.113.0/24


class StaffAccount(Base):
    """A regulator staff account: a normalised, unique name, its roles, an Argon2id hash."""

    __tablename__ = "staff_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    roles: Mapped[list[Any]] = mapped_column(JSON, default=list)
    password_hash: Mapped[str | None] = mapped_column(Text)  # None: token use only
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(100))
    password_set_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]


class ApiToken(Base):
    """A staff account's API token for ``/api/…`` (stored as its SHA-256 hex)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("staff_accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))  # the account's name, for listings
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """A console login: the cookie's SHA-256, its account, its CSRF token, its lifetime."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("staff_accounts.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class Appeal(Base):
    """An objection to a measure or an item, by the public or a platform.

    The receipt is shown once to the appellant; only its SHA-256 is stored. ``contact`` is
    never shown on a public page.
    """

    __tablename__ = "appeals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt_hash: Mapped[str] = mapped_column(String(64), unique=True)
    measure_id: Mapped[int | None] = mapped_column(ForeignKey("measures.id"), index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)
    platform_id: Mapped[int | None] = mapped_column(ForeignKey("platforms.id"))  # filed by
    appellant: Mapped[str] = mapped_column(String(16))  # platform, author, user, other
    grounds: Mapped[str] = mapped_column(Text)
    contact: Mapped[str] = mapped_column(Text, default="")
    filed_at: Mapped[datetime]
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default="open")  # open, upheld, reversed
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(100))
    reasons: Mapped[str | None] = mapped_column(Text)


class Obligation(Base):
    __tablename__ = "obligations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform_id: Mapped[int] = mapped_column(
        ForeignKey("platforms.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(64))  # e.g. data-localisation
    state: Mapped[str] = mapped_column(String(32))  # compliant / violating
    decision: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]


def target_key(target: str) -> str:
    """The key of an item's target in the unique index: 128 bits of its SHA-256, as hex."""
    return hashlib.sha256(target.encode("utf-8")).hexdigest()[:32]


def _default_target_key(context: Any) -> str:
    return target_key(context.get_current_parameters()["target"])


class RegisterSource(Base):
    """A register the entries come from (``--source``): what was last read of it."""

    __tablename__ = "register_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    format: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime | None]  # the register's own update time (``Updated:``)
    updated_stamp: Mapped[str | None] = mapped_column(String(40))  # as it said it, offset kept
    synced_at: Mapped[datetime | None]  # when it was last read here
    sha256: Mapped[str | None] = mapped_column(String(64))


class Entry(Base):
    """A register entry (a CSV row, an XML ``<content>``): one decision, one block type.

    Its items are its targets; the cells keep everything it lists as the register wrote
    it (one per line), hints included, so that an ``rkn-csv`` export gives the row back.
    """

    __tablename__ = "entries"
    __table_args__ = (
        # one live entry per key; an entry listed again after its delisting is a new one
        Index(
            "uq_entries_live_register_key",
            "register_id",
            "key",
            unique=True,
            sqlite_where=text("delisted_at IS NULL"),
            postgresql_where=text("delisted_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    register_id: Mapped[int] = mapped_column(ForeignKey("register_sources.id"))
    key: Mapped[str] = mapped_column(String(16))  # registry.entries.entry_key
    # what it said: the fingerprint of its row as written, or registry.entries.entry_digest
    digest: Mapped[str] = mapped_column(String(16))
    targets: Mapped[int] = mapped_column(Integer, default=0)  # how many items it blocks
    external_id: Mapped[str | None] = mapped_column(String(64))  # the register's own id
    block_type: Mapped[str] = mapped_column(String(16))
    ips: Mapped[str] = mapped_column(Text, default="")
    domains: Mapped[str] = mapped_column(Text, default="")
    urls: Mapped[str] = mapped_column(Text, default="")
    decision_ref: Mapped[str] = mapped_column(String(200))
    authority: Mapped[str | None] = mapped_column(String(500))
    decision_date: Mapped[str | None] = mapped_column(String(10))
    category: Mapped[str] = mapped_column(String(64))
    basis: Mapped[str] = mapped_column(Text)
    platform_id: Mapped[int | None] = mapped_column(ForeignKey("platforms.id"))
    listed_at: Mapped[datetime]
    delisted_at: Mapped[datetime | None]
    changed_at: Mapped[datetime | None]
    source: Mapped[str | None] = mapped_column(String(500))  # provenance: file:line
    attrs: Mapped[str] = mapped_column(Text, default="")  # JSON: other facts as given


class EntryRevision(Base):
    """What an entry said before a sync changed it (the history of an entry)."""

    __tablename__ = "entry_revisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"), index=True)
    replaced_at: Mapped[datetime]
    content: Mapped[str] = mapped_column(Text)  # JSON of the entry's columns then


class Item(Base):
    """A register entry. ``state`` and ``deadline_at`` are projections of the facts."""

    __tablename__ = "items"
    __table_args__ = (
        # one live item per target and decision; a target listed again after its
        # delisting is a new item (the old one keeps its history)
        Index(
            "uq_items_live_target_decision",
            "target_key",
            "decision_ref",
            unique=True,
            sqlite_where=text("delisted_at IS NULL"),
            postgresql_where=text("delisted_at IS NULL"),
        ),
        # ledger fast path (takedown.ledger.status_fast): each figure an index-only range
        # count over the platform's items; counts by state and the overdue ranges …
        Index("ix_items_platform_state", "platform_id", "state", "deadline_at", "state_at"),
        # … items due by now and those verified by their deadline …
        Index("ix_items_platform_deadline", "platform_id", "deadline_at", "verified_at"),
        # … the few items outside the register as of now (delisted, listed later) …
        Index("ix_items_platform_listing", "platform_id", "delisted_at", "listed_at"),
        # … TTR quantiles by index walk
        Index("ix_items_platform_ttr", "platform_id", "ttr_s", "listed_at", "delisted_at"),
        # the public lookup's "why": live items per decision and category, by index seek
        Index("ix_items_decision", "decision_ref", "category", "listed_at", "delisted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # the entry that lists it (None: listed before entries were kept, see migration 0003)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("entries.id"), index=True)
    target: Mapped[str] = mapped_column(Text)
    # what the unique index holds instead of the target (a URL may be 8 KiB, more than a
    # PostgreSQL index row can hold)
    target_key: Mapped[str] = mapped_column(String(32), default=_default_target_key)
    kind: Mapped[str] = mapped_column(String(16))
    host: Mapped[str | None] = mapped_column(String(300), index=True)
    # by platform: the composite indexes above all lead with platform_id
    platform_id: Mapped[int | None] = mapped_column(ForeignKey("platforms.id"))
    category: Mapped[str] = mapped_column(String(64), index=True)
    basis: Mapped[str] = mapped_column(Text)
    decision_ref: Mapped[str] = mapped_column(String(200))
    authority: Mapped[str | None] = mapped_column(String(500))
    decision_date: Mapped[str | None] = mapped_column(String(10))
    listed_at: Mapped[datetime]
    delisted_at: Mapped[datetime | None]
    delist_decision: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(500))
    # who listed it (the audit actor of the add, import or sync; None: listed before 0004).
    # An appeal against it is decided by someone else (takedown.appeals).
    listed_by: Mapped[str | None] = mapped_column(String(100))
    flags: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(16), default="open")
    state_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    # ledger projection: first in-country verified removal/withholding, and seconds from
    # the first notice to it (see takedown.ledger)
    verified_at: Mapped[datetime | None]
    ttr_s: Mapped[float | None] = mapped_column(Float)


class Notice(Base):
    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_outbox", "delivery_state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime]
    deadline_at: Mapped[datetime]
    delivery_state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_until: Mapped[datetime | None]


class NoticeItem(Base):
    __tablename__ = "notice_items"

    notice_id: Mapped[int] = mapped_column(
        ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True, index=True)


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None] = mapped_column(Float)


class Response(Base):
    __tablename__ = "responses"
    __table_args__ = (UniqueConstraint("platform_id", "client_key", name="uq_responses_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"))
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    policy: Mapped[str | None] = mapped_column(String(500))
    at: Mapped[datetime]
    client_key: Mapped[str | None] = mapped_column(String(200))


class VantagePoint(Base):
    __tablename__ = "vantage_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    country: Mapped[str | None] = mapped_column(String(8))
    in_country: Mapped[bool] = mapped_column(Boolean, default=True)
    source_address: Mapped[str | None] = mapped_column(String(64))
    proxy: Mapped[str | None] = mapped_column(String(500))


class Check(Base):
    __tablename__ = "checks"
    __table_args__ = (Index("ix_checks_item_at", "item_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    vantage_id: Mapped[int | None] = mapped_column(ForeignKey("vantage_points.id"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("check_rounds.id"), index=True)
    at: Mapped[datetime]
    verdict: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None]
    digest: Mapped[str | None] = mapped_column(String(64))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # the PDQ hash and quality of an image answer (takedown.media; None: not an image)
    media_pdq: Mapped[str | None] = mapped_column(String(64))
    media_quality: Mapped[int | None]


class CheckRound(Base):
    __tablename__ = "check_rounds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vantage_id: Mapped[int | None] = mapped_column(ForeignKey("vantage_points.id"))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class CheckTask(Base):
    """Probe work for a round; workers claim rows (FOR UPDATE SKIP LOCKED on PostgreSQL)."""

    __tablename__ = "check_tasks"
    __table_args__ = (
        UniqueConstraint("round_id", "item_id", name="uq_check_tasks_round_item"),
        Index("ix_check_tasks_due", "round_id", "done_at", "claimed_until"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("check_rounds.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_until: Mapped[datetime | None]
    done_at: Mapped[datetime | None]


class Measure(Base):
    __tablename__ = "measures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    rate_kbps: Mapped[int | None]
    classes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    scope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # class -> percent
    state: Mapped[str] = mapped_column(String(16), default="proposed")
    proposed_at: Mapped[datetime]
    starts_at: Mapped[datetime | None]
    review_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    lifted_at: Mapped[datetime | None]
    rule: Mapped[str | None] = mapped_column(String(200))  # ladder rule that fired
    ladder: Mapped[str | None] = mapped_column(String(500))
    figures: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(Text)
    decision_ref: Mapped[str | None] = mapped_column(String(200))
    lift_decision: Mapped[str | None] = mapped_column(String(200))
    needs_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(100))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("measures.id"))


class Approval(Base):
    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("measure_id", "by", name="uq_approvals_measure_by"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    measure_id: Mapped[int] = mapped_column(ForeignKey("measures.id", ondelete="CASCADE"))
    by: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime]


class FeedPublication(Base):
    __tablename__ = "feed_publications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer, unique=True)
    generated_at: Mapped[datetime]
    published_at: Mapped[datetime]
    digest: Mapped[str] = mapped_column(String(64))
    directives: Mapped[int]
    accepted_collateral: Mapped[str | None] = mapped_column(Text)


class Measurement(Base):
    """A measured transfer through an enforcement point (rate achieved vs. target)."""

    __tablename__ = "measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    phase: Mapped[str | None] = mapped_column(String(64))
    subscriber_class: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(64))  # the subscriber address used
    content_class: Mapped[str | None] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(300))
    kbps: Mapped[float] = mapped_column(Float)
    target_kbps: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str | None] = mapped_column(String(16))


class Event(Base):
    """Append-only audit record; ``hash`` chains each event to the previous one."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the chain's last sequence number and hash, updated under a write lock."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))


# Tables kept in modules of their own, imported here so that every mapper is registered
# with Base.metadata (migrations compare against it) and importable from this module.
from takedown.store.fleet_schema import Operator as Operator  # noqa: E402
from takedown.store.fleet_schema import OperatorToken as OperatorToken  # noqa: E402
from takedown.store.fleet_schema import PointReport as PointReport  # noqa: E402
from takedown.store.media_schema import MediaEvidence as MediaEvidence  # noqa: E402
from takedown.store.media_schema import Reupload as Reupload  # noqa: E402
