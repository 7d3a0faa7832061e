"""rewards partner reads: points balances and partner links projected from loyalty.points

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "points_balances",
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_points_balances")),
    )
    op.create_table(
        "partner_members",
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("partner_id", "member_id", name=op.f("pk_partner_members")),
    )
    op.create_index("ix_partner_members_member", "partner_members", ["member_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_partner_members_member", table_name="partner_members")
    op.drop_table("partner_members")
    op.drop_table("points_balances")
