"""orders keep their accrual (base and divisor), so a tier change that turns out to cover an order
already earned re-rates it exactly

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 20:10:00

Orders earned before this revision have none (their lines were not kept): a late tier change leaves
them as they are.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("accrual_base", sa.Numeric(), nullable=True))
    op.add_column("orders", sa.Column("accrual_divisor", sa.Numeric(), nullable=True))
    op.create_check_constraint("accrual_divisor_positive", "orders", "accrual_divisor > 0")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_orders_accrual_divisor_positive"), "orders", type_="check")
    op.drop_column("orders", "accrual_divisor")
    op.drop_column("orders", "accrual_base")
