"""media evidence (SHA-256, PDQ), re-uploads found or reported, PDQ of checked images

Revision ID: 0006
Revises: 0004

New tables and columns only: ``media_evidence`` (an item's media hashes; the platform hash
feed's cursor is its id), ``reuploads`` (a listed item's media found under another URL) and
``checks.media_pdq`` / ``checks.media_quality`` (the PDQ of an image a probe read).
"""

import sqlalchemy as sa
from alembic import op

import takedown.store.schema

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = takedown.store.schema.UTCDateTime(timezone=True)
    op.create_table(
        "media_evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("pdq", sa.String(length=64), nullable=True),
        sa.Column("quality", sa.Integer(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("kept_path", sa.Text(), nullable=True),
        sa.Column("recorded_at", when, nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_media_evidence_item_id_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_evidence")),
        sa.UniqueConstraint("item_id", "sha256", name="uq_media_evidence_item_sha256"),
    )
    op.create_index(op.f("ix_media_evidence_item_id"), "media_evidence", ["item_id"])
    op.create_index(op.f("ix_media_evidence_sha256"), "media_evidence", ["sha256"])
    op.create_table(
        "reuploads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=True),
        sa.Column("evidence_id", sa.Integer(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("pdq", sa.String(length=64), nullable=True),
        sa.Column("distance", sa.Integer(), nullable=True),
        sa.Column("found_at", when, nullable=False),
        sa.Column("found_by", sa.String(length=16), nullable=False),
        sa.Column("removed_at", when, nullable=True),
        sa.Column("client_key", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_reuploads_item_id_items")),
        sa.ForeignKeyConstraint(
            ["platform_id"], ["platforms.id"], name=op.f("fk_reuploads_platform_id_platforms")
        ),
        sa.ForeignKeyConstraint(
            ["evidence_id"],
            ["media_evidence.id"],
            name=op.f("fk_reuploads_evidence_id_media_evidence"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reuploads")),
        sa.UniqueConstraint("platform_id", "client_key", name="uq_reuploads_key"),
    )
    op.create_index(op.f("ix_reuploads_item_id"), "reuploads", ["item_id"])
    op.create_index(
        "ix_reuploads_platform_found", "reuploads", ["platform_id", "found_at", "removed_at"]
    )
    with op.batch_alter_table("checks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("media_pdq", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("media_quality", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checks", schema=None) as batch_op:
        batch_op.drop_column("media_quality")
        batch_op.drop_column("media_pdq")
    op.drop_index("ix_reuploads_platform_found", table_name="reuploads")
    op.drop_index(op.f("ix_reuploads_item_id"), table_name="reuploads")
    op.drop_table("reuploads")
    op.drop_index(op.f("ix_media_evidence_sha256"), table_name="media_evidence")
    op.drop_index(op.f("ix_media_evidence_item_id"), table_name="media_evidence")
    op.drop_table("media_evidence")
