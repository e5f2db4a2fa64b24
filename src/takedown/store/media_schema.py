"""Media evidence of listed items and the re-uploads found of it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from takedown.store.schema import Base


class MediaEvidence(Base):
    """What is kept of an item's media: its hashes, never the media unless kept on purpose
    (``kept_path``; never for CSAM). Its id is the platform hash feed's cursor."""

    __tablename__ = "media_evidence"
    __table_args__ = (UniqueConstraint("item_id", "sha256", name="uq_media_evidence_item_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # image, video
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    pdq: Mapped[str | None] = mapped_column(String(64))
    quality: Mapped[int | None]
    source: Mapped[str] = mapped_column(Text)  # the file's name or the URL fetched
    kept_path: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(100))


class Reupload(Base):
    """Media of a listed item found again under another URL: by verification (``verify``,
    ``probe``) or reported by the platform (``platform``), removed when ``removed_at``."""

    __tablename__ = "reuploads"
    __table_args__ = (
        UniqueConstraint("platform_id", "client_key", name="uq_reuploads_key"),
        Index("ix_reuploads_platform_found", "platform_id", "found_at", "removed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    platform_id: Mapped[int | None] = mapped_column(ForeignKey("platforms.id"))
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("media_evidence.id"))
    url: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    pdq: Mapped[str | None] = mapped_column(String(64))
    distance: Mapped[int | None]
    found_at: Mapped[datetime]
    found_by: Mapped[str] = mapped_column(String(16))  # verify, probe, platform
    removed_at: Mapped[datetime | None]
    client_key: Mapped[str | None] = mapped_column(String(200))
