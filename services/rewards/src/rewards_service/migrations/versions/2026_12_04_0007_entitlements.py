"""rewards entitlements: priority purchase rights, custom services, product launches

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "launches",
        sa.Column("launch_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("skus", postgresql.ARRAY(sa.String(length=64)), nullable=False),
        sa.Column("opens_at", TIME, nullable=False),
        sa.Column("public_at", TIME, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.CheckConstraint("public_at > opens_at", name=op.f("ck_launches_window_not_empty")),
        sa.PrimaryKeyConstraint("launch_id", name=op.f("pk_launches")),
    )
    op.create_index("ix_launches_skus", "launches", ["skus"], unique=False, postgresql_using="gin")
    op.create_table(
        "entitlements",
        sa.Column("entitlement_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "skus", postgresql.ARRAY(sa.String(length=64)), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "categories",
            postgresql.ARRAY(sa.String(length=64)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("launch_id", sa.String(length=36), nullable=True),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=True),
        sa.Column("used", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("valid_from", TIME, nullable=False),
        sa.Column("valid_until", TIME, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=True),
        sa.Column("program_id", sa.String(length=36), nullable=True),
        sa.Column("granted_by", sa.String(length=128), nullable=False),
        sa.Column("granted_at", TIME, nullable=False),
        sa.Column("dedupe", sa.String(length=300), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "kind IN ('priority-purchase', 'custom-service')", name=op.f("ck_entitlements_known_kind")
        ),
        sa.CheckConstraint("unit IN ('units', 'sessions', 'hours')", name=op.f("ck_entitlements_known_unit")),
        sa.CheckConstraint(
            "status IN ('active', 'ended', 'revoked')", name=op.f("ck_entitlements_known_status")
        ),
        sa.CheckConstraint("source IN ('tier', 'program', 'crm')", name=op.f("ck_entitlements_known_source")),
        sa.CheckConstraint("quota IS NULL OR quota > 0", name=op.f("ck_entitlements_quota_positive")),
        sa.CheckConstraint(
            "used >= 0 AND (quota IS NULL OR used <= quota)", name=op.f("ck_entitlements_used_within_quota")
        ),
        sa.ForeignKeyConstraint(
            ["launch_id"], ["launches.launch_id"], name=op.f("fk_entitlements_launch_id_launches")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_entitlements_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("entitlement_id", name=op.f("pk_entitlements")),
        sa.UniqueConstraint("dedupe", name=op.f("uq_entitlements_dedupe")),
    )
    op.create_index("ix_entitlements_member", "entitlements", ["member_id", "status"], unique=False)
    op.create_table(
        "entitlement_consumptions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("entitlement_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=True),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("launch_id", sa.String(length=36), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("returned_at", TIME, nullable=True),
        sa.Column("return_reason", sa.String(length=32), nullable=True),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_entitlement_consumptions_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["entitlement_id"],
            ["entitlements.entitlement_id"],
            name=op.f("fk_entitlement_consumptions_entitlement_id_entitlements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entitlement_consumptions")),
        sa.UniqueConstraint(
            "member_id", "idempotency_key", name=op.f("uq_entitlement_consumptions_member_id_idempotency_key")
        ),
    )
    op.create_index(
        "ix_entitlement_consumptions_entitlement",
        "entitlement_consumptions",
        ["entitlement_id"],
        unique=False,
    )
    op.create_index(
        "ix_entitlement_consumptions_order", "entitlement_consumptions", ["order_id"], unique=False
    )
    op.create_index(
        "ix_entitlement_consumptions_launch", "entitlement_consumptions", ["launch_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("entitlement_consumptions")
    op.drop_table("entitlements")
    op.drop_index("ix_launches_skus", table_name="launches", postgresql_using="gin")
    op.drop_table("launches")
