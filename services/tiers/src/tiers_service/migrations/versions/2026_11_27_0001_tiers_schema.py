"""tiers schema: members, qualifying orders and refunds, history, ladders, kit tables

Revision ID: 0001
Revises:
Create Date: 2026-11-27 18:50:57.317507
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from loyalty_shared.migrations import create_kit_tables, drop_kit_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_kit_tables()
    op.create_table(
        "ladders",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_ladders")),
    )
    op.create_table(
        "members",
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("tier_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("earned_tier", sa.String(length=32), nullable=False),
        sa.Column("earned_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_evaluation_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_evaluation_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("grace_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("grace_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("override_tier", sa.String(length=32), nullable=True),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.Column("override_by", sa.String(length=128), nullable=True),
        sa.Column("override_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("override_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_members")),
    )
    op.create_index(
        "ix_members_grace_until",
        "members",
        ["grace_until"],
        unique=False,
        postgresql_where=sa.text("grace_until IS NOT NULL"),
    )
    op.create_index("ix_members_next_evaluation_at", "members", ["next_evaluation_at"], unique=False)
    op.create_index(
        "ix_members_override_until",
        "members",
        ["override_until"],
        unique=False,
        postgresql_where=sa.text("override_until IS NOT NULL"),
    )
    op.create_table(
        "qualifying_orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("qualifying", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("refunded", sa.Numeric(precision=18, scale=4), server_default=sa.text("0"), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "refunded >= 0 AND refunded <= qualifying",
            name=op.f("ck_qualifying_orders_refunded_within_qualifying"),
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_qualifying_orders")),
    )
    op.create_index(
        "ix_qualifying_orders_member_paid", "qualifying_orders", ["member_id", "paid_at"], unique=False
    )
    op.create_table(
        "qualifying_refunds",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("refund_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("qualifying", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["qualifying_orders.order_id"],
            name=op.f("fk_qualifying_refunds_order_id_qualifying_orders"),
        ),
        sa.PrimaryKeyConstraint("order_id", "refund_id", name=op.f("pk_qualifying_refunds")),
    )
    op.create_table(
        "tier_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_tier", sa.String(length=32), nullable=True),
        sa.Column("to_tier", sa.String(length=32), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("figures", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("ladder_version", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.member_id"], name=op.f("fk_tier_history_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_history")),
    )
    op.create_index("ix_tier_history_member", "tier_history", ["member_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tier_history_member", table_name="tier_history")
    op.drop_table("tier_history")
    op.drop_table("qualifying_refunds")
    op.drop_index("ix_qualifying_orders_member_paid", table_name="qualifying_orders")
    op.drop_table("qualifying_orders")
    op.drop_index(
        "ix_members_override_until",
        table_name="members",
        postgresql_where=sa.text("override_until IS NOT NULL"),
    )
    op.drop_index("ix_members_next_evaluation_at", table_name="members")
    op.drop_index(
        "ix_members_grace_until", table_name="members", postgresql_where=sa.text("grace_until IS NOT NULL")
    )
    op.drop_table("members")
    op.drop_table("ladders")
    drop_kit_tables()
