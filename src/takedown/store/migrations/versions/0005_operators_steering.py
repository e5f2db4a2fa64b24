"""network operators, their report tokens and their points' reports; platforms' declared
address ranges (the steering export)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import takedown.store.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = takedown.store.schema.UTCDateTime(timezone=True)
    op.create_table(
        "platform_ranges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["platform_id"],
            ["platforms.id"],
            name=op.f("fk_platform_ranges_platform_id_platforms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_ranges")),
        sa.UniqueConstraint("platform_id", "prefix", name=op.f("uq_platform_ranges_platform_id")),
    )
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("name", name=op.f("uq_operators_name")),
    )
    op.create_table(
        "operator_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("revoked_at", when, nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_operator_tokens_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_operator_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_operator_tokens_operator_id"), "operator_tokens", ["operator_id"], unique=False
    )
    op.create_table(
        "point_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("point_id", sa.String(length=100), nullable=False),
        sa.Column("sent_at", when, nullable=False),
        sa.Column("received_at", when, nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.Column("set_age_seconds", sa.Float(), nullable=True),
        sa.Column("fail_open", sa.Boolean(), nullable=False),
        sa.Column("fail_open_reason", sa.Text(), nullable=True),
        sa.Column("directives", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_point_reports_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_reports")),
        sa.UniqueConstraint(
            "operator_id", "point_id", "sent_at", name=op.f("uq_point_reports_operator_id")
        ),
    )
    op.create_index(
        "ix_point_reports_latest", "point_reports", ["operator_id", "point_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_point_reports_latest", table_name="point_reports")
    op.drop_table("point_reports")
    op.drop_index(op.f("ix_operator_tokens_operator_id"), table_name="operator_tokens")
    op.drop_table("operator_tokens")
    op.drop_table("operators")
    op.drop_table("platform_ranges")
