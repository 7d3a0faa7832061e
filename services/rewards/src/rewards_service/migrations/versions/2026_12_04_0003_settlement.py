"""rewards settlement: settlement runs, statements and their lines, wallets and their ledger

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=18, scale=4)
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "settlement_runs",
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("cycle", sa.String(length=16), nullable=False),
        sa.Column("statements", sa.Integer(), nullable=False),
        sa.Column("finished_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_settlement_runs_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", "cycle", name=op.f("pk_settlement_runs")),
    )
    op.create_table(
        "statements",
        sa.Column("statement_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("measure_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("cycle", sa.String(length=16), nullable=False),
        sa.Column("cycle_start", TIME, nullable=False),
        sa.Column("cycle_end", TIME, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("net_spend", MONEY, nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("segment", sa.String(length=32), nullable=True),
        sa.Column("step_min", MONEY, nullable=True),
        sa.Column("step_value", MONEY, nullable=True),
        sa.Column("rebate", MONEY, nullable=False),
        sa.Column("adjustments", MONEY, nullable=False),
        sa.Column("brought_forward", MONEY, nullable=False),
        sa.Column("payable", MONEY, nullable=False),
        sa.Column("carried", MONEY, nullable=False),
        sa.Column("pay_as", sa.String(length=8), nullable=False),
        sa.Column("points", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("refusal", sa.String(length=32), nullable=True),
        sa.Column("reward_id", sa.String(length=36), nullable=True),
        sa.Column("settled_at", TIME, nullable=False),
        sa.CheckConstraint(
            "status IN ('paid', 'nothing-due', 'refused')", name=op.f("ck_statements_known_status")
        ),
        sa.CheckConstraint("payable >= 0 AND carried <= 0", name=op.f("ck_statements_payable_and_carried")),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_statements_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("statement_id", name=op.f("pk_statements")),
        sa.UniqueConstraint(
            "program_id",
            "measure_id",
            "cycle",
            "member_id",
            name=op.f("uq_statements_program_id_measure_id_cycle_member_id"),
        ),
    )
    op.create_index("ix_statements_member", "statements", ["member_id", "settled_at"], unique=False)
    op.create_table(
        "statement_lines",
        sa.Column("statement_id", sa.String(length=36), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("cycle", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("paid", MONEY, nullable=True),
        sa.Column("deducted", MONEY, nullable=True),
        sa.Column("amount", MONEY, nullable=False),
        sa.CheckConstraint(
            "kind IN ('order', 'rebate', 'adjustment', 'brought-forward')",
            name=op.f("ck_statement_lines_known_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["statements.statement_id"],
            name=op.f("fk_statement_lines_statement_id_statements"),
        ),
        sa.PrimaryKeyConstraint("statement_id", "line", name=op.f("pk_statement_lines")),
    )
    op.create_table(
        "wallets",
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance", MONEY, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_wallets_balance_not_negative")),
        sa.PrimaryKeyConstraint("member_id", "currency", name=op.f("pk_wallets")),
    )
    op.create_table(
        "wallet_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("balance_after", MONEY, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.CheckConstraint(
            "kind IN ('rebate', 'spend', 'refund')", name=op.f("ck_wallet_entries_known_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_entries")),
        sa.UniqueConstraint(
            "member_id", "idempotency_key", name=op.f("uq_wallet_entries_member_id_idempotency_key")
        ),
    )
    op.create_index("ix_wallet_entries_member", "wallet_entries", ["member_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_wallet_entries_member", table_name="wallet_entries")
    op.drop_table("wallet_entries")
    op.drop_table("wallets")
    op.drop_table("statement_lines")
    op.drop_index("ix_statements_member", table_name="statements")
    op.drop_table("statements")
    op.drop_table("settlement_runs")
