"""rewards coupons and the tier discount benefit

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 06:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=18, scale=4)
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("members", sa.Column("discount_rate", sa.Numeric(precision=6, scale=4), nullable=True))
    op.create_table(
        "coupons",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("reward_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("percent", MONEY, nullable=True),
        sa.Column("amount", MONEY, nullable=True),
        sa.Column("min_order", MONEY, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("discount", MONEY, nullable=True),
        sa.Column("use_key", sa.String(length=200), nullable=True),
        sa.Column("use_hash", sa.String(length=64), nullable=True),
        sa.Column("used_at", TIME, nullable=True),
        sa.CheckConstraint("status IN ('open', 'used', 'expired')", name=op.f("ck_coupons_known_status")),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_coupons_program_id_programs")),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.reward_id"], name=op.f("fk_coupons_reward_id_rewards")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_coupons")),
        sa.UniqueConstraint("reward_id", name=op.f("uq_coupons_reward_id")),
    )
    op.create_index("ix_coupons_member", "coupons", ["member_id", "status"], unique=False)
    op.create_index(
        "ix_coupons_open_expiry",
        "coupons",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'open'"),
    )


def downgrade() -> None:
    op.drop_index("ix_coupons_open_expiry", table_name="coupons", postgresql_where=sa.text("status = 'open'"))
    op.drop_index("ix_coupons_member", table_name="coupons")
    op.drop_table("coupons")
    op.drop_column("members", "discount_rate")
