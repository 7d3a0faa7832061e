"""qualifying orders keep the money refunded so far (the kit's rule for order events needs it)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "qualifying_orders",
        sa.Column(
            "refunded_amount", sa.Numeric(precision=18, scale=4), server_default=sa.text("0"), nullable=False
        ),
    )
    op.execute(
        "UPDATE qualifying_orders o SET refunded_amount = r.total "
        "FROM (SELECT order_id, sum(amount) AS total FROM qualifying_refunds GROUP BY order_id) r "
        "WHERE r.order_id = o.order_id"
    )


def downgrade() -> None:
    op.drop_column("qualifying_orders", "refunded_amount")
