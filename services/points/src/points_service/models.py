"""The points service's tables. Balances are derived from lots and the ledger, never stored twice.

Invariant (tested): for every member, Σ ledger.points = Σ lots.remaining − accounts.debt.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
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


class Account(Base):
    """One row per member: the lock every balance change takes first, the debt, the tier projection."""

    __tablename__ = "accounts"
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    debt: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    tier: Mapped[str | None] = mapped_column(String(64))
    tier_multiplier: Mapped[Decimal] = mapped_column(Numeric(8, 4), server_default=text("1"))
    tier_changed_at: Mapped[datetime | None] = mapped_column(Timestamp)  # the newest change's event time
    tier_effective_at: Mapped[datetime | None] = mapped_column(Timestamp)  # orders paid after earn at it
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    __table_args__ = (CheckConstraint("debt >= 0", name="debt_not_negative"),)


class Lot(Base):
    """Points earned together, spent and expired together (earliest expiry spent first)."""

    __tablename__ = "lots"
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("accounts.member_id"))
    source: Mapped[str] = mapped_column(String(16))  # order | adjustment | rebate | restore
    order_id: Mapped[str | None] = mapped_column(String(64))
    points: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer)
    earned_at: Mapped[datetime] = mapped_column(Timestamp)
    available_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_within_points"),
        Index("ix_lots_member_open", "member_id", "expires_at", postgresql_where=text("remaining > 0")),
        Index("ix_lots_expiry_due", "expires_at", postgresql_where=text("remaining > 0")),
        Index("ix_lots_order_id", "order_id"),
    )


class LedgerEntry(Base):
    """Append-only: every change of a member's points, with why it happened.

    One entry moves at most 2^31 - 1 points (an order earning more is quarantined); balances,
    which add entries up, are BIGINT."""

    __tablename__ = "ledger_entries"
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("accounts.member_id"))
    entry_type: Mapped[str] = mapped_column(String(16))  # earn reverse redeem expire adjust
    points: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    order_id: Mapped[str | None] = mapped_column(String(64))
    refund_id: Mapped[str | None] = mapped_column(String(64))
    redemption_id: Mapped[str | None] = mapped_column(String(64))
    adjustment_id: Mapped[str | None] = mapped_column(String(64))
    lot_id: Mapped[int | None] = mapped_column(BigInteger)
    rule_version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(String(128))
    event_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    __table_args__ = (
        CheckConstraint(
            "entry_type IN ('earn', 'reverse', 'redeem', 'expire', 'adjust', 'restore')",
            name="known_entry_type",
        ),
        Index("ix_ledger_member_id", "member_id", "id"),
    )


class Order(Base):
    """What an order earned and how much of it has been refunded and reversed so far."""

    __tablename__ = "orders"
    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("accounts.member_id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Money)
    points_earned: Mapped[int] = mapped_column(Integer)
    refunded_total: Mapped[Decimal] = mapped_column(Money, server_default=text("0"))
    points_reversed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cancelled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    rule_version: Mapped[int] = mapped_column(Integer)
    tier_multiplier: Mapped[Decimal] = mapped_column(Numeric(8, 4))
    paid_at: Mapped[datetime] = mapped_column(Timestamp)
    # points_earned = floor(accrual_base × tier_multiplier / accrual_divisor) (domain.Accrual); none
    # for orders earned before it was kept
    accrual_base: Mapped[Decimal | None] = mapped_column(Numeric)
    accrual_divisor: Mapped[Decimal | None] = mapped_column(Numeric)
    __table_args__ = (CheckConstraint("accrual_divisor > 0", name="accrual_divisor_positive"),)


class Refund(Base):
    """Refund ids already applied, so the same refund sent twice under two event ids counts once."""

    __tablename__ = "refunds"
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    points_reversed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class Redemption(Base):
    __tablename__ = "redemptions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("accounts.member_id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    points: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(String(200))
    available_after: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    __table_args__ = (UniqueConstraint("member_id", "idempotency_key"),)


class Adjustment(Base):
    __tablename__ = "adjustments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("accounts.member_id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    points: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    available_after: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    __table_args__ = (UniqueConstraint("member_id", "idempotency_key"),)


class EarningRuleSet(Base):
    """Versioned earning rules; the newest version is in force, older ones stay for the ledger."""

    __tablename__ = "earning_rules"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    points_per_unit: Mapped[Decimal] = mapped_column(Numeric(12, 4))
    category_multipliers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    return_window_days: Mapped[int] = mapped_column(Integer)
    expiry_months: Mapped[int] = mapped_column(Integer)
    debt_policy: Mapped[str] = mapped_column(String(16))
    expiring_soon_days: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class TierPeriod(Base):
    """The member's tier multiplier from ``effective_at`` on: an order earns at the period its payment
    falls in, whichever order the tier and order events arrive in."""

    __tablename__ = "tier_periods"
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    effective_at: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    tier: Mapped[str] = mapped_column(String(64))
    tier_multiplier: Mapped[Decimal] = mapped_column(Numeric(8, 4))


class PartnerMember(Base):
    """Which members a partner serves: a partner key reads only these."""

    __tablename__ = "partner_members"
    partner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
