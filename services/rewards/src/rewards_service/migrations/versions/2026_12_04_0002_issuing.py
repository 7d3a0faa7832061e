"""rewards issuing: catalog and restocks, budgets, participants, rewards, refusals

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 05:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=18, scale=4)
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "catalog_items",
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("value", MONEY, nullable=False),
        sa.Column("points_price", sa.Integer(), nullable=True),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column(
            "tiers", postgresql.ARRAY(sa.String(length=32)), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("valid_from", TIME, nullable=True),
        sa.Column("valid_until", TIME, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint("stock >= 0", name=op.f("ck_catalog_items_stock_not_negative")),
        sa.CheckConstraint("value >= 0", name=op.f("ck_catalog_items_value_not_negative")),
        sa.CheckConstraint(
            "points_price IS NULL OR points_price > 0", name=op.f("ck_catalog_items_points_price_positive")
        ),
        sa.CheckConstraint("kind IN ('gift', 'service', 'coupon')", name=op.f("ck_catalog_items_known_kind")),
        sa.CheckConstraint("status IN ('active', 'withdrawn')", name=op.f("ck_catalog_items_known_status")),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_catalog_items")),
    )
    op.create_table(
        "restocks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_restocks_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["item_id"], ["catalog_items.item_id"], name=op.f("fk_restocks_item_id_catalog_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restocks")),
        sa.UniqueConstraint("item_id", "idempotency_key", name=op.f("uq_restocks_item_id_idempotency_key")),
    )
    op.create_table(
        "budgets",
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("committed", MONEY, server_default=sa.text("0"), nullable=False),
        sa.Column("spent", MONEY, server_default=sa.text("0"), nullable=False),
        sa.Column("refusals", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("exhausted_at", TIME, nullable=True),
        sa.CheckConstraint("committed >= 0 AND spent >= 0", name=op.f("ck_budgets_amounts_not_negative")),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_budgets_program_id_programs")),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_budgets")),
    )
    op.create_table(
        "participants",
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("grp", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("enrolled_at", TIME, nullable=False),
        sa.Column("given", MONEY, server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("grp IN ('treatment', 'control')", name=op.f("ck_participants_known_group")),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_participants_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", "member_id", name=op.f("pk_participants")),
    )
    op.create_index("ix_participants_member", "participants", ["member_id"], unique=False)
    op.create_table(
        "rewards",
        sa.Column("reward_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("measure_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("cycle", sa.String(length=16), nullable=True),
        sa.Column("item_id", sa.String(length=64), nullable=True),
        sa.Column("points", sa.Integer(), nullable=True),
        sa.Column("amount", MONEY, nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("cost", MONEY, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("dedupe", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("issued_at", TIME, nullable=False),
        sa.Column("status_changed_at", TIME, nullable=False),
        sa.CheckConstraint("kind IN ('gift', 'coupon', 'rebate')", name=op.f("ck_rewards_known_kind")),
        sa.CheckConstraint(
            "status IN ('issued', 'shipped', 'delivered', 'cancelled', 'credited', 'used', 'expired')",
            name=op.f("ck_rewards_known_status"),
        ),
        sa.CheckConstraint("cost >= 0", name=op.f("ck_rewards_cost_not_negative")),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_rewards_program_id_programs")),
        sa.ForeignKeyConstraint(
            ["item_id"], ["catalog_items.item_id"], name=op.f("fk_rewards_item_id_catalog_items")
        ),
        sa.PrimaryKeyConstraint("reward_id", name=op.f("pk_rewards")),
        sa.UniqueConstraint("dedupe", name=op.f("uq_rewards_dedupe")),
    )
    op.create_index("ix_rewards_member", "rewards", ["member_id", "issued_at"], unique=False)
    op.create_index("ix_rewards_program", "rewards", ["program_id", "cycle"], unique=False)
    op.create_table(
        "refusals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("measure_id", sa.String(length=64), nullable=True),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("cycle", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("cost", MONEY, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_refusals_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refusals")),
    )
    op.create_index("ix_refusals_program", "refusals", ["program_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_refusals_program", table_name="refusals")
    op.drop_table("refusals")
    op.drop_index("ix_rewards_program", table_name="rewards")
    op.drop_index("ix_rewards_member", table_name="rewards")
    op.drop_table("rewards")
    op.drop_index("ix_participants_member", table_name="participants")
    op.drop_table("participants")
    op.drop_table("budgets")
    op.drop_table("restocks")
    op.drop_table("catalog_items")
