"""The fleet's tables: network operators, their report tokens, their points' reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from takedown.store.schema import Base


class Operator(Base):
    """A network operator running enforcement points that report back."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class OperatorToken(Base):
    """An operator's report token: its SHA-256 and the Ed25519 public key derived from it."""

    __tablename__ = "operator_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    public_key: Mapped[str] = mapped_column(String(64))  # raw Ed25519 key, hex
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class PointReport(Base):
    """One signed report of an enforcement point, as received (append-only)."""

    __tablename__ = "point_reports"
    __table_args__ = (
        UniqueConstraint("operator_id", "point_id", "sent_at"),
        Index("ix_point_reports_latest", "operator_id", "point_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"))
    point_id: Mapped[str] = mapped_column(String(100))
    sent_at: Mapped[datetime]  # the point's clock
    received_at: Mapped[datetime]  # the regulator's clock
    sequence: Mapped[int | None]
    set_age_seconds: Mapped[float | None] = mapped_column(Float)
    fail_open: Mapped[bool] = mapped_column(Boolean)
    fail_open_reason: Mapped[str | None] = mapped_column(Text)
    directives: Mapped[list[Any]] = mapped_column(JSON)  # [{id, measure_id, flows, bytes}]
