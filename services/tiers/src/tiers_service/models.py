"""The tiers service's tables."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from loyalty_shared.db import Money, Timestamp, kit_tables, new_metadata
from loyalty_shared.db import table as table  # re-exported: the modules build statements from it

metadata = new_metadata()
kit = kit_tables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class Member(Base):
    """A member's standing: the tier in force, the earned tier under it, grace, override, schedule.
    Every change of a member takes this row's lock first."""

    __tablename__ = "members"
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tier: Mapped[str] = mapped_column(String(32))
    tier_since: Mapped[datetime] = mapped_column(Timestamp)
    earned_tier: Mapped[str] = mapped_column(String(32))
    earned_since: Mapped[datetime] = mapped_column(Timestamp)
    joined_at: Mapped[datetime] = mapped_column(Timestamp)
    next_evaluation_at: Mapped[datetime] = mapped_column(Timestamp)
    last_evaluation_at: Mapped[datetime | None] = mapped_column(Timestamp)
    grace_until: Mapped[datetime | None] = mapped_column(Timestamp)
    grace_from: Mapped[datetime | None] = mapped_column(Timestamp)
    override_tier: Mapped[str | None] = mapped_column(String(32))
    override_reason: Mapped[str | None] = mapped_column(Text)
    override_by: Mapped[str | None] = mapped_column(String(128))
    override_at: Mapped[datetime | None] = mapped_column(Timestamp)
    override_until: Mapped[datetime | None] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now(), onupdate=func.now())
    __table_args__ = (
        Index("ix_members_next_evaluation_at", "next_evaluation_at"),
        Index("ix_members_grace_until", "grace_until", postgresql_where=text("grace_until IS NOT NULL")),
        Index(
            "ix_members_override_until", "override_until", postgresql_where=text("override_until IS NOT NULL")
        ),
    )


class QualifyingOrder(Base):
    """An order's qualifying spend; refunds lower it by ``refunded`` (and add their money to
    ``refunded_amount``), a cancel takes the order out."""

    __tablename__ = "qualifying_orders"
    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64))  # the member row is created in the same transaction
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Money)
    qualifying: Mapped[Decimal] = mapped_column(Money)
    refunded: Mapped[Decimal] = mapped_column(Money, server_default=text("0"))  # qualifying spend
    refunded_amount: Mapped[Decimal] = mapped_column(Money, server_default=text("0"))  # money
    paid_at: Mapped[datetime] = mapped_column(Timestamp)
    cancelled_at: Mapped[datetime | None] = mapped_column(Timestamp)
    __table_args__ = (
        CheckConstraint("refunded >= 0 AND refunded <= qualifying", name="refunded_within_qualifying"),
        Index("ix_qualifying_orders_member_paid", "member_id", "paid_at"),
    )


class QualifyingRefund(Base):
    """Refund ids already applied: the same refund sent twice under two event ids counts once."""

    __tablename__ = "qualifying_refunds"
    order_id: Mapped[str] = mapped_column(ForeignKey("qualifying_orders.order_id"), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    qualifying: Mapped[Decimal] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class TierHistory(Base):
    """Append-only: every change of the tier in force, with the figures and rule that decided it."""

    __tablename__ = "tier_history"
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"))
    at: Mapped[datetime] = mapped_column(Timestamp)
    from_tier: Mapped[str | None] = mapped_column(String(32))
    to_tier: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(16))
    figures: Mapped[dict[str, Any]] = mapped_column(JSONB)
    ladder_version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(String(128))
    event_id: Mapped[str] = mapped_column(String(200))
    __table_args__ = (Index("ix_tier_history_member", "member_id", "id"),)


class LadderVersion(Base):
    """Versioned ladders; the newest is in force (none stored: the built-in default)."""

    __tablename__ = "ladders"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
