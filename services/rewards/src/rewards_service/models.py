"""The rewards service's tables: programs and their versions, the facts it projects from the events it
consumes (members' tiers, orders net of refunds and cancels), the catalog, and what programs issue
(rewards, refusals, budgets, enrolments in the target or control group)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
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
    discount_rate: Mapped[Decimal | None] = mapped_column(Numeric(6, 4))  # the tier's benefit
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


class CatalogItem(Base):
    """What can be given or redeemed: a gift, a service or a coupon, with its stock. ``value`` is what
    one unit costs a program's budget (in ``currency``); ``points_price`` what a member redeems it
    for (None: not redeemable); ``tiers`` gate redemption (empty: every tier)."""

    __tablename__ = "catalog_items"
    item_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3))
    value: Mapped[Decimal] = mapped_column(Money)
    points_price: Mapped[int | None] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer)
    tiers: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default=text("'{}'"))
    valid_from: Mapped[datetime | None] = mapped_column(Timestamp)
    valid_until: Mapped[datetime | None] = mapped_column(Timestamp)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("value >= 0", name="value_not_negative"),
        CheckConstraint("points_price IS NULL OR points_price > 0", name="points_price_positive"),
        CheckConstraint("kind IN ('gift', 'service', 'coupon')", name="known_kind"),
        CheckConstraint("status IN ('active', 'withdrawn')", name="known_status"),
    )


class Restock(Base):
    """Append-only: units added to an item's stock, once per Idempotency-Key."""

    __tablename__ = "restocks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("catalog_items.item_id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(Timestamp)
    __table_args__ = (
        UniqueConstraint("item_id", "idempotency_key"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )


class BudgetUse(Base):
    """How much of a program's budget is used: committed (issued, not yet consumed) and spent. The cap
    is the program version's; every issuance takes this row's lock and checks it."""

    __tablename__ = "budgets"
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    committed: Mapped[Decimal] = mapped_column(Money, server_default=text("0"))
    spent: Mapped[Decimal] = mapped_column(Money, server_default=text("0"))
    refusals: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    exhausted_at: Mapped[datetime | None] = mapped_column(Timestamp)  # the first refusal for budget
    __table_args__ = (CheckConstraint("committed >= 0 AND spent >= 0", name="amounts_not_negative"),)


class Participant(Base):
    """A member reached by a program, in its treatment or control group (for good: the assignment is
    deterministic and recorded once); ``given`` is what the program has given them (the per-member
    cap's measure)."""

    __tablename__ = "participants"
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    grp: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    enrolled_at: Mapped[datetime] = mapped_column(Timestamp)
    given: Mapped[Decimal] = mapped_column(Money, server_default=text("0"))
    __table_args__ = (
        CheckConstraint("grp IN ('treatment', 'control')", name="known_group"),
        Index("ix_participants_member", "member_id"),
    )


class Reward(Base):
    """One issued reward. ``dedupe`` makes "once" a unique key: a threshold gift once per program,
    measure, member and cycle; an upgrade gift once per promotion."""

    __tablename__ = "rewards"
    reward_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64))
    program_id: Mapped[str | None] = mapped_column(ForeignKey("programs.id"))
    version: Mapped[int | None] = mapped_column(Integer)
    measure_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    cycle: Mapped[str | None] = mapped_column(String(16))
    item_id: Mapped[str | None] = mapped_column(ForeignKey("catalog_items.item_id"))
    points: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[Decimal | None] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    cost: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    dedupe: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))  # a CRM request's, for its key
    issued_at: Mapped[datetime] = mapped_column(Timestamp)
    status_changed_at: Mapped[datetime] = mapped_column(Timestamp)
    __table_args__ = (
        CheckConstraint("kind IN ('gift', 'coupon', 'rebate')", name="known_kind"),
        CheckConstraint(
            "status IN ('issued', 'shipped', 'delivered', 'cancelled', 'credited', 'used', 'expired')",
            name="known_status",
        ),
        CheckConstraint("cost >= 0", name="cost_not_negative"),
        Index("ix_rewards_member", "member_id", "issued_at"),
        Index("ix_rewards_program", "program_id", "cycle"),
    )


class RefusedReward(Base):
    """Append-only: an issuance a program's rules called for and its budget or the stock refused."""

    __tablename__ = "refusals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    version: Mapped[int] = mapped_column(Integer)
    measure_id: Mapped[str | None] = mapped_column(String(64))
    member_id: Mapped[str] = mapped_column(String(64))
    cycle: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    cost: Mapped[Decimal] = mapped_column(Money)
    at: Mapped[datetime] = mapped_column(Timestamp)
    __table_args__ = (Index("ix_refusals_program", "program_id", "id"),)


class SettlementRun(Base):
    """A program cycle whose settlement finished: every treatment member of it has a statement (or
    had nothing due). The settlement job skips it from then on."""

    __tablename__ = "settlement_runs"
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    cycle: Mapped[str] = mapped_column(String(16), primary_key=True)
    statements: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[datetime] = mapped_column(Timestamp)


class Statement(Base):
    """A member's rebate statement for one program, measure and cycle: closed once written (a late
    refund adjusts the next statement). Unique per program, measure, cycle and member: settlement is
    idempotent."""

    __tablename__ = "statements"
    statement_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    version: Mapped[int] = mapped_column(Integer)
    measure_id: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[str] = mapped_column(String(64))
    cycle: Mapped[str] = mapped_column(String(16))
    cycle_start: Mapped[datetime] = mapped_column(Timestamp)
    cycle_end: Mapped[datetime] = mapped_column(Timestamp)
    currency: Mapped[str] = mapped_column(String(3))
    net_spend: Mapped[Decimal] = mapped_column(Money)
    orders: Mapped[int] = mapped_column(Integer)
    segment: Mapped[str | None] = mapped_column(String(32))
    step_min: Mapped[Decimal | None] = mapped_column(Money)
    step_value: Mapped[Decimal | None] = mapped_column(Money)
    rebate: Mapped[Decimal] = mapped_column(Money)  # this cycle's own rebate
    adjustments: Mapped[Decimal] = mapped_column(Money)  # earlier cycles' adjustments
    brought_forward: Mapped[Decimal] = mapped_column(Money)
    payable: Mapped[Decimal] = mapped_column(Money)
    carried: Mapped[Decimal] = mapped_column(Money)
    pay_as: Mapped[str] = mapped_column(String(8))
    points: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # paid, nothing-due, refused
    refusal: Mapped[str | None] = mapped_column(String(32))
    reward_id: Mapped[str | None] = mapped_column(String(36))
    settled_at: Mapped[datetime] = mapped_column(Timestamp)
    __table_args__ = (
        UniqueConstraint("program_id", "measure_id", "cycle", "member_id"),
        CheckConstraint("status IN ('paid', 'nothing-due', 'refused')", name="known_status"),
        CheckConstraint("payable >= 0 AND carried <= 0", name="payable_and_carried"),
        Index("ix_statements_member", "member_id", "settled_at"),
    )


class StatementLine(Base):
    """What a statement is made of: the cycle's qualifying orders (paid, deducted, net), its rebate,
    adjustments of earlier cycles, a shortfall brought forward."""

    __tablename__ = "statement_lines"
    statement_id: Mapped[str] = mapped_column(ForeignKey("statements.statement_id"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # order, rebate, adjustment, brought-forward
    cycle: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[str | None] = mapped_column(String(64))
    paid: Mapped[Decimal | None] = mapped_column(Money)
    deducted: Mapped[Decimal | None] = mapped_column(Money)
    amount: Mapped[Decimal] = mapped_column(Money)
    __table_args__ = (
        CheckConstraint("kind IN ('order', 'rebate', 'adjustment', 'brought-forward')", name="known_kind"),
    )


class Wallet(Base):
    """A member's store credit in one currency (cash rebates); never below zero."""

    __tablename__ = "wallets"
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    balance: Mapped[Decimal] = mapped_column(Money)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"),)


class WalletEntry(Base):
    """Append-only: every change of a wallet (a rebate credited, a checkout spend, a spend given
    back); the balance is their sum."""

    __tablename__ = "wallet_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Money)
    kind: Mapped[str] = mapped_column(String(16))  # rebate, spend, refund
    reference: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    balance_after: Mapped[Decimal] = mapped_column(Money)
    at: Mapped[datetime] = mapped_column(Timestamp)
    __table_args__ = (
        UniqueConstraint("member_id", "idempotency_key"),
        CheckConstraint("kind IN ('rebate', 'spend', 'refund')", name="known_kind"),
        Index("ix_wallet_entries_member", "member_id", "id"),
    )


class CouponCode(Base):
    """A single-use coupon issued by a program's one-time discount (its reward row holds the cost).
    Used once: the use takes this row's lock and records its Idempotency-Key."""

    __tablename__ = "coupons"
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    reward_id: Mapped[str] = mapped_column(ForeignKey("rewards.reward_id"), unique=True)
    member_id: Mapped[str] = mapped_column(String(64))
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    currency: Mapped[str] = mapped_column(String(3))
    percent: Mapped[Decimal | None] = mapped_column(Money)
    amount: Mapped[Decimal | None] = mapped_column(Money)
    min_order: Mapped[Decimal] = mapped_column(Money)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    status: Mapped[str] = mapped_column(String(16))  # open, used, expired
    order_id: Mapped[str | None] = mapped_column(String(64))
    discount: Mapped[Decimal | None] = mapped_column(Money)
    use_key: Mapped[str | None] = mapped_column(String(200))
    use_hash: Mapped[str | None] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    __table_args__ = (
        CheckConstraint("status IN ('open', 'used', 'expired')", name="known_status"),
        Index("ix_coupons_member", "member_id", "status"),
        Index("ix_coupons_open_expiry", "expires_at", postgresql_where=text("status = 'open'")),
    )


class Redemption(Base):
    """A catalog redemption as rewards handled it (the points service's redemption id): fulfilled
    from stock, or failed (points gives the points back) and then refunded."""

    __tablename__ = "redemptions"
    redemption_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str] = mapped_column(String(64))
    points: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    reward_id: Mapped[str | None] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(Timestamp)
    refunded_at: Mapped[datetime | None] = mapped_column(Timestamp)
    __table_args__ = (
        CheckConstraint("status IN ('fulfilled', 'failed', 'refunded')", name="known_status"),
        Index("ix_redemptions_member", "member_id", "at"),
    )


class PointsBalance(Base):
    """A projection of ``loyalty.points``: the member's points balance net of debt (the sum of their
    points ledger, as each event moved it), as of the last event seen. Points stays the authority."""

    __tablename__ = "points_balances"
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger)
    as_of: Mapped[datetime] = mapped_column(Timestamp)


class PartnerMember(Base):
    """Which partner serves which member, as the points service (their owner) published it."""

    __tablename__ = "partner_members"
    partner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    linked_at: Mapped[datetime] = mapped_column(Timestamp)
    __table_args__ = (Index("ix_partner_members_member", "member_id"),)


# --- entitlements: priority purchase rights and custom services ------------------------------------


class Launch(Base):
    """A new product launch: a priority window ``[opens_at, public_at)`` for a set of SKUs, in which
    only members holding a priority purchase right may buy them."""

    __tablename__ = "launches"
    launch_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    skus: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    opens_at: Mapped[datetime] = mapped_column(Timestamp)
    public_at: Mapped[datetime] = mapped_column(Timestamp)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    __table_args__ = (
        CheckConstraint("public_at > opens_at", name="window_not_empty"),
        Index("ix_launches_skus", "skus", postgresql_using="gin"),
    )


class Entitlement(Base):
    """A right a member holds for ``[valid_from, valid_until)``: a priority purchase right (scoped by
    SKUs, categories or a launch; none: every launch) or a custom service (``service``), with a quota
    (None: no limit) and what is ``used`` of it (the sum of its consumptions not given back). Granted
    by a tier (``tier``), a program rule (``program_id``) or the CRM; a demotion ends a tier's right
    at the change's ``effective_at`` (status ended, ``valid_until`` that instant)."""

    __tablename__ = "entitlements"
    entitlement_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(24))
    name: Mapped[str] = mapped_column(String(200))
    skus: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default=text("'{}'"))
    categories: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default=text("'{}'"))
    launch_id: Mapped[str | None] = mapped_column(ForeignKey("launches.launch_id"))
    service: Mapped[str | None] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(16))
    quota: Mapped[int | None] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    valid_from: Mapped[datetime] = mapped_column(Timestamp)
    valid_until: Mapped[datetime | None] = mapped_column(Timestamp)
    status: Mapped[str] = mapped_column(String(16))
    end_reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    tier: Mapped[str | None] = mapped_column(String(32))
    program_id: Mapped[str | None] = mapped_column(ForeignKey("programs.id"))
    granted_by: Mapped[str] = mapped_column(String(128))
    granted_at: Mapped[datetime] = mapped_column(Timestamp)
    dedupe: Mapped[str | None] = mapped_column(String(300), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (
        CheckConstraint("kind IN ('priority-purchase', 'custom-service')", name="known_kind"),
        CheckConstraint("unit IN ('units', 'sessions', 'hours')", name="known_unit"),
        CheckConstraint("status IN ('active', 'ended', 'revoked')", name="known_status"),
        CheckConstraint("source IN ('tier', 'program', 'crm')", name="known_source"),
        CheckConstraint("quota IS NULL OR quota > 0", name="quota_positive"),
        CheckConstraint("used >= 0 AND (quota IS NULL OR used <= quota)", name="used_within_quota"),
        Index("ix_entitlements_member", "member_id", "status"),
    )


class EntitlementConsumption(Base):
    """Append-only log of what was used of an entitlement, once per Idempotency-Key; an order
    cancelled or refunded in full gives its units back (``returned_at``), once."""

    __tablename__ = "entitlement_consumptions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    entitlement_id: Mapped[str] = mapped_column(ForeignKey("entitlements.entitlement_id"))
    member_id: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(String(64))
    launch_id: Mapped[str | None] = mapped_column(String(36))
    note: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(Timestamp)
    returned_at: Mapped[datetime | None] = mapped_column(Timestamp)
    return_reason: Mapped[str | None] = mapped_column(String(32))
    __table_args__ = (
        UniqueConstraint("member_id", "idempotency_key"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("ix_entitlement_consumptions_entitlement", "entitlement_id"),
        Index("ix_entitlement_consumptions_order", "order_id"),
        Index("ix_entitlement_consumptions_launch", "launch_id"),
    )


# --- documents: honour certificates and thank-you letters ------------------------------------------


class DocumentTemplate(Base):
    """Append-only: one version of a certificate or letter template (an edit is a new version; a
    document names the version it was issued from, so it always reads as it did)."""

    __tablename__ = "document_templates"
    template_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(200))
    closing: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    __table_args__ = (CheckConstraint("kind IN ('certificate', 'letter')", name="known_kind"),)


class DocumentRecipient(Base):
    """How documents name a member: their (a person's) name and their company, as the CRM keeps
    them. Copied into a document when it is issued."""

    __tablename__ = "document_recipients"
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_name: Mapped[str | None] = mapped_column(String(300))
    company: Mapped[str | None] = mapped_column(String(300))
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class Document(Base):
    """An issued honour certificate or thank-you letter: a template version and the ``fields`` it is
    filled with, fixed at issue (its PDF is rendered from them alone). ``dedupe`` makes "once" a
    unique key (a program rule: per program, measure, cycle and member; the CRM: per
    Idempotency-Key and member). A certificate carries a verification ``code``; a letter none."""

    __tablename__ = "documents"
    document_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    template_id: Mapped[str] = mapped_column(String(36))
    template_version: Mapped[int] = mapped_column(Integer)
    member_id: Mapped[str] = mapped_column(String(64))
    program_id: Mapped[str | None] = mapped_column(ForeignKey("programs.id"))
    program_version: Mapped[int | None] = mapped_column(Integer)
    measure_id: Mapped[str | None] = mapped_column(String(64))
    cycle: Mapped[str | None] = mapped_column(String(16))
    fields: Mapped[dict[str, Any]] = mapped_column(JSONB)
    code: Mapped[str | None] = mapped_column(String(19), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    dedupe: Mapped[str] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))  # a CRM request's, for its key
    issued_by: Mapped[str] = mapped_column(String(128))
    issued_at: Mapped[datetime] = mapped_column(Timestamp)
    status_changed_at: Mapped[datetime] = mapped_column(Timestamp)
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    rendered_at: Mapped[datetime | None] = mapped_column(Timestamp)
    __table_args__ = (
        ForeignKeyConstraint(
            ["template_id", "template_version"],
            ["document_templates.template_id", "document_templates.version"],
        ),
        CheckConstraint("kind IN ('certificate', 'letter')", name="known_kind"),
        CheckConstraint("status IN ('issued', 'revoked')", name="known_status"),
        CheckConstraint("(kind = 'certificate') = (code IS NOT NULL)", name="certificates_have_codes"),
        Index("ix_documents_member", "member_id", "issued_at"),
        Index("ix_documents_unrendered", "issued_at", postgresql_where=text("rendered_at IS NULL")),
    )


class DocumentFile(Base):
    """A document's rendered PDF (kept apart, so reading documents never loads their bytes)."""

    __tablename__ = "document_files"
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.document_id"), primary_key=True)
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    rendered_at: Mapped[datetime] = mapped_column(Timestamp)


# --- gatherings: training courses and customer exchange events -------------------------------------


class Gathering(Base):
    """A training course or a customer exchange event: when, where (a place, a link or both), how
    many seats, and the program whose target group it is for (if any). ``seats_taken`` counts the
    accepted and attended invitations: every answer and check-in takes this row's lock, and the
    CHECK keeps it within the capacity whatever happens."""

    __tablename__ = "gatherings"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    starts_at: Mapped[datetime] = mapped_column(Timestamp)
    ends_at: Mapped[datetime] = mapped_column(Timestamp)
    place: Mapped[str | None] = mapped_column(String(500))
    link: Mapped[str | None] = mapped_column(String(2000))
    capacity: Mapped[int] = mapped_column(Integer)
    seats_taken: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    program_id: Mapped[str | None] = mapped_column(ForeignKey("programs.id"))
    status: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    cancelled_at: Mapped[datetime | None] = mapped_column(Timestamp)
    cancel_note: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        CheckConstraint("kind IN ('training', 'exchange')", name="known_kind"),
        CheckConstraint("status IN ('scheduled', 'cancelled')", name="known_status"),
        CheckConstraint("capacity > 0", name="capacity_positive"),
        CheckConstraint("seats_taken >= 0 AND seats_taken <= capacity", name="seats_within_capacity"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("place IS NOT NULL OR link IS NOT NULL", name="place_or_link"),
        Index("ix_gatherings_starts", "starts_at"),
    )


class GatheringInvitation(Base):
    """A member's invitation to a gathering and where their answer stands. The single-use link's
    token is held only as its SHA-256 digest; ``token_used_at`` is set by its one use. The
    waitlist's order is ``waitlist_seq``, given under the gathering's lock: the order in which the
    answers committed (a position is a rank among the waitlisted, so positions have no gaps)."""

    __tablename__ = "gathering_invitations"
    gathering_id: Mapped[str] = mapped_column(ForeignKey("gatherings.id"), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    invite_key: Mapped[str] = mapped_column(String(200))  # the inviting request's Idempotency-Key
    invite_hash: Mapped[str] = mapped_column(String(64))  # and its body's fingerprint
    invited_at: Mapped[datetime] = mapped_column(Timestamp)
    responded_at: Mapped[datetime | None] = mapped_column(Timestamp)  # the member's last answer
    responded_via: Mapped[str | None] = mapped_column(String(8))  # crm or link
    accepted_at: Mapped[datetime | None] = mapped_column(Timestamp)  # when they got their seat
    moved_up_at: Mapped[datetime | None] = mapped_column(Timestamp)  # the seat came from the waitlist
    waitlisted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    waitlist_seq: Mapped[int | None] = mapped_column(BigInteger)
    declined_at: Mapped[datetime | None] = mapped_column(Timestamp)
    attended_at: Mapped[datetime | None] = mapped_column(Timestamp)
    __table_args__ = (
        CheckConstraint(
            "status IN ('invited', 'accepted', 'waitlisted', 'declined', 'attended')", name="known_status"
        ),
        CheckConstraint("status <> 'waitlisted' OR waitlist_seq IS NOT NULL", name="waitlisted_in_order"),
        CheckConstraint("responded_via IN ('crm', 'link')", name="known_via"),
        UniqueConstraint("gathering_id", "waitlist_seq"),
        Index("ix_gathering_invitations_member", "member_id"),
        Index("ix_gathering_invitations_status", "gathering_id", "status", "waitlist_seq"),
        Index("ix_gathering_invitations_key", "gathering_id", "invite_key"),
    )
