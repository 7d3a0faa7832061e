"""rewards gatherings: training courses and customer exchange events, invitations

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gatherings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("starts_at", TIME, nullable=False),
        sa.Column("ends_at", TIME, nullable=False),
        sa.Column("place", sa.String(length=500), nullable=True),
        sa.Column("link", sa.String(length=2000), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("seats_taken", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("cancelled_at", TIME, nullable=True),
        sa.Column("cancel_note", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('training', 'exchange')", name=op.f("ck_gatherings_known_kind")),
        sa.CheckConstraint("status IN ('scheduled', 'cancelled')", name=op.f("ck_gatherings_known_status")),
        sa.CheckConstraint("capacity > 0", name=op.f("ck_gatherings_capacity_positive")),
        sa.CheckConstraint(
            "seats_taken >= 0 AND seats_taken <= capacity", name=op.f("ck_gatherings_seats_within_capacity")
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_gatherings_ends_after_start")),
        sa.CheckConstraint("place IS NOT NULL OR link IS NOT NULL", name=op.f("ck_gatherings_place_or_link")),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_gatherings_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gatherings")),
    )
    op.create_index("ix_gatherings_starts", "gatherings", ["starts_at"], unique=False)
    op.create_table(
        "gathering_invitations",
        sa.Column("gathering_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_used_at", TIME, nullable=True),
        sa.Column("invite_key", sa.String(length=200), nullable=False),
        sa.Column("invite_hash", sa.String(length=64), nullable=False),
        sa.Column("invited_at", TIME, nullable=False),
        sa.Column("responded_at", TIME, nullable=True),
        sa.Column("responded_via", sa.String(length=8), nullable=True),
        sa.Column("accepted_at", TIME, nullable=True),
        sa.Column("moved_up_at", TIME, nullable=True),
        sa.Column("waitlisted_at", TIME, nullable=True),
        sa.Column("waitlist_seq", sa.BigInteger(), nullable=True),
        sa.Column("declined_at", TIME, nullable=True),
        sa.Column("attended_at", TIME, nullable=True),
        sa.CheckConstraint(
            "status IN ('invited', 'accepted', 'waitlisted', 'declined', 'attended')",
            name=op.f("ck_gathering_invitations_known_status"),
        ),
        sa.CheckConstraint(
            "status <> 'waitlisted' OR waitlist_seq IS NOT NULL",
            name=op.f("ck_gathering_invitations_waitlisted_in_order"),
        ),
        sa.CheckConstraint(
            "responded_via IN ('crm', 'link')", name=op.f("ck_gathering_invitations_known_via")
        ),
        sa.ForeignKeyConstraint(
            ["gathering_id"],
            ["gatherings.id"],
            name=op.f("fk_gathering_invitations_gathering_id_gatherings"),
        ),
        sa.PrimaryKeyConstraint("gathering_id", "member_id", name=op.f("pk_gathering_invitations")),
        sa.UniqueConstraint(
            "gathering_id", "waitlist_seq", name=op.f("uq_gathering_invitations_gathering_id_waitlist_seq")
        ),
        sa.UniqueConstraint("token_hash", name=op.f("uq_gathering_invitations_token_hash")),
    )
    op.create_index("ix_gathering_invitations_member", "gathering_invitations", ["member_id"], unique=False)
    op.create_index(
        "ix_gathering_invitations_status",
        "gathering_invitations",
        ["gathering_id", "status", "waitlist_seq"],
        unique=False,
    )
    op.create_index(
        "ix_gathering_invitations_key", "gathering_invitations", ["gathering_id", "invite_key"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_gathering_invitations_key", table_name="gathering_invitations")
    op.drop_index("ix_gathering_invitations_status", table_name="gathering_invitations")
    op.drop_index("ix_gathering_invitations_member", table_name="gathering_invitations")
    op.drop_table("gathering_invitations")
    op.drop_index("ix_gatherings_starts", table_name="gatherings")
    op.drop_table("gatherings")
