"""staff accounts (Argon2id), console sessions, appeals; tokens belong to accounts; who
listed each item

Revision ID: 0004
Revises: 0003

Each name that held a staff token becomes an account (its name normalised, no password:
it logs in to the console only after ``takedown staff reset``), and the token stays valid
for it. The old default role ``regulator`` read the API only: it becomes ``auditor``.
Items get ``listed_by`` (the actor of the add, import or sync that listed them; unknown,
NULL, for items listed before), so that an appeal against an item is decided by someone
else.
"""

import unicodedata
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import takedown.store.schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ROLE = {"regulator": "auditor"}


def upgrade() -> None:
    when = takedown.store.schema.UTCDateTime(timezone=True)
    op.create_table(
        "staff_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("created_at", when, nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("password_set_at", when, nullable=True),
        sa.Column("disabled_at", when, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_staff_accounts_name")),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("expires_at", when, nullable=False),
        sa.Column("ended_at", when, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["staff_accounts.id"],
            name=op.f("fk_console_sessions_account_id_staff_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_sessions_token_hash")),
    )
    op.create_index(
        op.f("ix_console_sessions_account_id"), "console_sessions", ["account_id"], unique=False
    )
    op.create_table(
        "appeals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("receipt_hash", sa.String(length=64), nullable=False),
        sa.Column("measure_id", sa.Integer(), nullable=True),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("platform_id", sa.Integer(), nullable=True),
        sa.Column("appellant", sa.String(length=16), nullable=False),
        sa.Column("grounds", sa.Text(), nullable=False),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("filed_at", when, nullable=False),
        sa.Column("due_at", when, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("decided_at", when, nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_appeals_item_id_items")),
        sa.ForeignKeyConstraint(
            ["measure_id"], ["measures.id"], name=op.f("fk_appeals_measure_id_measures")
        ),
        sa.ForeignKeyConstraint(
            ["platform_id"], ["platforms.id"], name=op.f("fk_appeals_platform_id_platforms")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appeals")),
        sa.UniqueConstraint("receipt_hash", name=op.f("uq_appeals_receipt_hash")),
    )
    op.create_index(op.f("ix_appeals_item_id"), "appeals", ["item_id"], unique=False)
    op.create_index(op.f("ix_appeals_measure_id"), "appeals", ["measure_id"], unique=False)
    # nullable, no default: metadata only, however many items there are
    op.add_column("items", sa.Column("listed_by", sa.String(length=100), nullable=True))

    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
    conn = op.get_bind()
    accounts = sa.table(
        "staff_accounts",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("roles", sa.JSON),
        sa.column("created_at", when),
        sa.column("created_by", sa.String),
    )
    tokens = sa.table(
        "api_tokens",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("role", sa.String),
        sa.column("account_id", sa.Integer),
        sa.column("created_at", when),
    )
    by_name: dict[str, tuple[set[str], datetime, list[int]]] = {}
    for tid, name, role, created in conn.execute(
        sa.select(tokens.c.id, tokens.c.name, tokens.c.role, tokens.c.created_at).order_by(
            tokens.c.id
        )
    ):
        key = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
        roles, first, ids = by_name.setdefault(key, (set(), created, []))
        roles.add(_ROLE.get(role, role))
        ids.append(tid)
    now = datetime.now(UTC)
    for key, (roles, first, ids) in by_name.items():
        aid = conn.execute(
            sa.insert(accounts)
            .values(
                name=key,
                roles=sorted(roles),
                created_at=first or now,
                created_by="migration 0004",
            )
            .returning(accounts.c.id)
        ).scalar_one()
        conn.execute(sa.update(tokens).where(tokens.c.id.in_(ids)).values(account_id=aid))
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column("account_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f("ix_api_tokens_account_id"), ["account_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_account_id_staff_accounts"),
            "staff_accounts",
            ["account_id"],
            ["id"],
        )
        batch_op.drop_index(batch_op.f("ix_api_tokens_name"))
        batch_op.drop_column("role")


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=32), nullable=False, server_default="regulator")
        )
        batch_op.create_index(batch_op.f("ix_api_tokens_name"), ["name"], unique=False)
        batch_op.drop_constraint(
            batch_op.f("fk_api_tokens_account_id_staff_accounts"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_api_tokens_account_id"))
        batch_op.drop_column("account_id")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("listed_by")
    op.drop_index(op.f("ix_appeals_measure_id"), table_name="appeals")
    op.drop_index(op.f("ix_appeals_item_id"), table_name="appeals")
    op.drop_table("appeals")
    op.drop_index(op.f("ix_console_sessions_account_id"), table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("staff_accounts")
