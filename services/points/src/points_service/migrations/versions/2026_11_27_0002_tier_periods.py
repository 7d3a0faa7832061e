"""tier periods: the multiplier in force at an order payment time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 18:52:14.312296
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "tier_periods",
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tier", sa.String(length=64), nullable=False),
        sa.Column("tier_multiplier", sa.Numeric(precision=8, scale=4), nullable=False),
        sa.PrimaryKeyConstraint("member_id", "effective_at", name=op.f("pk_tier_periods")),
    )
    op.add_column("accounts", sa.Column("tier_effective_at", sa.DateTime(timezone=True), nullable=True))
    # Tiers projected before this revision took effect when their event was processed.
    op.execute("UPDATE accounts SET tier_effective_at = tier_changed_at WHERE tier IS NOT NULL")
    op.execute(
        "INSERT INTO tier_periods (member_id, effective_at, tier, tier_multiplier) "
        "SELECT member_id, tier_changed_at, tier, tier_multiplier FROM accounts "
        "WHERE tier IS NOT NULL AND tier_changed_at IS NOT NULL"
    )


def downgrade() -> None:

    op.drop_column("accounts", "tier_effective_at")
    op.drop_table("tier_periods")
