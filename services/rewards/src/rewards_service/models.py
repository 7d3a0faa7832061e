"""The rewards service's tables: programs and their versions, and the facts it projects from the
events it consumes (members' tiers, orders net of refunds and cancels)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
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


class Program(Base):
    """An incentive program: its status and the version in force (the newest)."""

    __tablename__ = "programs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    status_changed_at: Mapped[datetime] = mapped_column(Timestamp)
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'active', 'paused', 'ended')", name="known_status"),
    )


class ProgramVersion(Base):
    """Append-only: every edit of a program is a new version; an issued reward names the version."""

    __tablename__ = "program_versions"
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class ProgramEvent(Base):
    """Append-only: the lifecycle of a program (created, edited, activated, paused, ended)."""

    __tablename__ = "program_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    action: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(Timestamp)
    note: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (Index("ix_program_events_program", "program_id", "id"),)


class Member(Base):
    """What rewards knows of a member: the tier in force (from ``tier.changed``) and first and
    last orders (from ``orders``). Every change of a member takes this row's lock first."""

    __tablename__ = "members"
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tier: Mapped[str | None] = mapped_column(String(32))
    tier_at: Mapped[datetime | None] = mapped_column(Timestamp)  # effective_at of the tier in force
    first_order_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_order_at: Mapped[datetime | None] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now(), onupdate=func.now())


class Order(Base):
    """A member's order as rewards counts it: paid amount, less refunds; a cancel makes it count 0."""

    __tablename__ = "orders"
    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Money)
    refunded: Mapped[Decimal] = mapped_column(Money, server_default=text("0"))
    paid_at: Mapped[datetime] = mapped_column(Timestamp)
    cancelled_at: Mapped[datetime | None] = mapped_column(Timestamp)
    __table_args__ = (
        CheckConstraint("refunded >= 0 AND refunded <= amount", name="refunded_within_amount"),
        Index("ix_orders_member_paid", "member_id", "paid_at"),
    )


class Refund(Base):
    """Refund ids already applied: the same refund sent twice under two event ids counts once."""

    __tablename__ = "refunds"
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Money)
