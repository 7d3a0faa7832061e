"""rewards redemptions: the catalog side of the points redemption saga

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "redemptions",
        sa.Column("redemption_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reward_id", sa.String(length=36), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('fulfilled', 'failed', 'refunded')", name=op.f("ck_redemptions_known_status")
        ),
        sa.PrimaryKeyConstraint("redemption_id", name=op.f("pk_redemptions")),
    )
    op.create_index("ix_redemptions_member", "redemptions", ["member_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_redemptions_member", table_name="redemptions")
    op.drop_table("redemptions")
