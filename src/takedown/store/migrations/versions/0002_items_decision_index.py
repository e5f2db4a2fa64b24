"""items: index by decision (the public lookup's counts per decision and category)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 22:05:00
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_items_decision",
            ["decision_ref", "category", "listed_at", "delisted_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index("ix_items_decision")
