"""The member facts rewards projects from what it consumes: each member's tier (``tier.changed``)
and orders net of refunds and cancels (``orders``), for targeting, rebates and simulations.

One batch: ``Facts.load`` locks the batch's members (one sorted multi-row upsert) and reads the
orders and refund ids its events refer to (and, when programs are active, the members' orders since
``history_since``: what targeting and cycle figures are decided on); the appliers change the rows in
memory in event order and say whether the event changed anything; ``flush`` writes back one
statement per table. What makes a refund or a cancel invalid is the kit's
one rule for order events (loyalty_shared.orders): every service dead-letters the same events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.db import SCALE, arrays_of, unnest_insert
from loyalty_shared.events import (
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
    PartnerLinked,
    PartnerUnlinked,
    PointsAdjusted,
    PointsEarned,
    PointsExpired,
    PointsRedeemed,
    PointsReversed,
    TierChanged,
)
from loyalty_shared.handling import Delivery
from loyalty_shared.orders import PaidOrder, check_cancel, check_refund
from rewards_service import domain
from rewards_service.models import Order, Refund, table

log = logging.getLogger(__name__)


@dataclass
class MemberRow:
    member_id: str
    tier: str | None
    tier_at: datetime | None
    discount_rate: Decimal | None
    first_order_at: datetime | None
    last_order_at: datetime | None
    dirty: bool = False


@dataclass
class OrderRow:
    order_id: str
    member_id: str
    currency: str
    amount: Decimal
    refunded: Decimal
    paid_at: datetime
    cancelled_at: datetime | None
    new: bool = False
    dirty: bool = False

    def paid(self) -> PaidOrder:
        return PaidOrder(self.order_id, self.member_id, self.currency, self.amount, self.refunded)

    @property
    def net(self) -> Decimal:
        """What the order counts for: paid less refunded, 0 once cancelled."""
        return Decimal(0) if self.cancelled_at is not None else self.amount - self.refunded


_LOCK_MEMBERS = text(
    "INSERT INTO members (member_id) SELECT m FROM unnest(CAST(:members AS text[])) AS m ORDER BY m "
    "ON CONFLICT (member_id) DO UPDATE SET member_id = excluded.member_id "
    "RETURNING member_id, tier, tier_at, discount_rate, first_order_at, last_order_at"
)
_ORDER_COLUMNS = ("order_id", "member_id", "currency", "amount", "refunded", "paid_at", "cancelled_at")
_ORDERS = text(
    f"SELECT {', '.join(_ORDER_COLUMNS)} FROM orders WHERE order_id = ANY(CAST(:orders AS text[])) FOR UPDATE"
)
_ORDERS_AND_HISTORY = text(
    f"SELECT {', '.join(_ORDER_COLUMNS)} FROM orders WHERE order_id = ANY(CAST(:orders AS text[])) "
    "OR (member_id = ANY(CAST(:members AS text[])) AND paid_at >= :since) FOR UPDATE"
)
_REFUNDS = text("SELECT order_id, refund_id FROM refunds WHERE order_id = ANY(CAST(:orders AS text[]))")
_INSERT_ORDERS = unnest_insert(table(Order), _ORDER_COLUMNS)
_UPDATE_ORDERS = text(
    "UPDATE orders AS o SET refunded = v.refunded, cancelled_at = v.cancelled_at "
    "FROM unnest(CAST(:order_id AS text[]), CAST(:refunded AS numeric[]), "
    "CAST(:cancelled_at AS timestamptz[])) AS v(order_id, refunded, cancelled_at) "
    "WHERE o.order_id = v.order_id"
)
_REFUND_COLUMNS = ("order_id", "refund_id", "amount")
_INSERT_REFUNDS = unnest_insert(table(Refund), _REFUND_COLUMNS)
_MEMBER_CHANGES = ("member_id", "tier", "tier_at", "discount_rate", "first_order_at", "last_order_at")
_UPDATE_MEMBERS = text(
    "UPDATE members AS m SET tier = v.tier, tier_at = v.tier_at, discount_rate = v.discount_rate, "
    "first_order_at = v.first_order_at, last_order_at = v.last_order_at "
    "FROM unnest(CAST(:member_id AS text[]), CAST(:tier AS text[]), CAST(:tier_at AS timestamptz[]), "
    "CAST(:discount_rate AS numeric[]), CAST(:first_order_at AS timestamptz[]), "
    "CAST(:last_order_at AS timestamptz[])) "
    "AS v(member_id, tier, tier_at, discount_rate, first_order_at, last_order_at) "
    "WHERE m.member_id = v.member_id"
)


_ADD_POINTS = text(
    "INSERT INTO points_balances (member_id, points, as_of) SELECT * FROM unnest("
    "CAST(:members AS text[]), CAST(:deltas AS bigint[]), CAST(:as_of AS timestamptz[])) "
    "ON CONFLICT (member_id) DO UPDATE SET points = points_balances.points + excluded.points, "
    "as_of = GREATEST(points_balances.as_of, excluded.as_of)"
)
_LINK = text(
    "INSERT INTO partner_members (partner_id, member_id, linked_at) SELECT * FROM unnest("
    "CAST(:partners AS text[]), CAST(:members AS text[]), CAST(:at AS timestamptz[])) "
    "ON CONFLICT DO NOTHING"
)
_UNLINK = text(
    "DELETE FROM partner_members AS p USING unnest(CAST(:partners AS text[]), CAST(:members AS text[])) "
    "AS v(partner_id, member_id) WHERE p.partner_id = v.partner_id AND p.member_id = v.member_id"
)


@dataclass
class Facts:
    session: AsyncSession
    members: dict[str, MemberRow]
    orders: dict[str, OrderRow]
    refunds: set[tuple[str, str]]
    new_refunds: list[dict[str, object]] = field(default_factory=list)
    history: dict[str, list[OrderRow]] | None = None  # per member, when loaded with history_since
    points: dict[str, tuple[int, datetime]] = field(default_factory=dict)  # member: (delta, as of)
    links: dict[tuple[str, str], datetime | None] = field(default_factory=dict)  # None: unlinked

    @classmethod
    async def load(
        cls, session: AsyncSession, deliveries: Sequence[Delivery], history_since: datetime | None = None
    ) -> Facts:
        members = sorted({d.data.member_id for d in deliveries})
        orders = sorted({d.data.order_id for d in deliveries if hasattr(d.data, "order_id")})
        locked = await session.execute(_LOCK_MEMBERS, {"members": members})
        member_rows = {r.member_id: MemberRow(*r) for r in locked}
        order_rows: dict[str, OrderRow] = {}
        refunds: set[tuple[str, str]] = set()
        history: dict[str, list[OrderRow]] | None = None
        if history_since is not None:
            found = await session.execute(
                _ORDERS_AND_HISTORY, {"orders": orders, "members": members, "since": history_since}
            )
            order_rows = {r.order_id: OrderRow(*r) for r in found}
            history = {member: [] for member in members}
            for row in order_rows.values():
                history.setdefault(row.member_id, []).append(row)
        elif orders:
            order_rows = {
                r.order_id: OrderRow(*r) for r in await session.execute(_ORDERS, {"orders": orders})
            }
        if orders and order_rows and any(d.type == OrderRefunded.event_type for d in deliveries):
            found_refunds = await session.execute(_REFUNDS, {"orders": orders})
            refunds = {(r.order_id, r.refund_id) for r in found_refunds}
        return cls(session, member_rows, order_rows, refunds, history=history)

    def member_facts(self, member_id: str, currency: str) -> domain.MemberFacts:
        """What targeting and cycle figures see of a member: the tier in force and the orders in
        ``currency`` since the history was loaded, net of refunds and cancels."""
        member = self.members[member_id]
        rows = [] if self.history is None else self.history.get(member_id, [])
        orders = tuple((o.paid_at, o.net) for o in rows if o.currency == currency)
        return domain.MemberFacts(member_id, member.tier, orders)

    async def flush(self) -> None:
        execute = self.session.execute
        if new := [o for o in self.orders.values() if o.new]:
            await execute(_INSERT_ORDERS, arrays_of(new, _ORDER_COLUMNS))
        if changed := [o for o in self.orders.values() if o.dirty and not o.new]:
            await execute(_UPDATE_ORDERS, arrays_of(changed, ("order_id", "refunded", "cancelled_at")))
        if self.new_refunds:
            await execute(_INSERT_REFUNDS, {n: [r[n] for r in self.new_refunds] for n in _REFUND_COLUMNS})
        if members := [m for m in self.members.values() if m.dirty]:
            await execute(_UPDATE_MEMBERS, arrays_of(members, _MEMBER_CHANGES))
        if self.points:
            ids = sorted(self.points)
            deltas = {"members": ids, "deltas": [self.points[m][0] for m in ids]}
            await execute(_ADD_POINTS, deltas | {"as_of": [self.points[m][1] for m in ids]})
        if linked := [k for k, at in self.links.items() if at is not None]:
            at = [self.links[k] for k in linked]
            params = {"partners": [p for p, _ in linked], "members": [m for _, m in linked], "at": at}
            await execute(_LINK, params)
        if unlinked := [k for k, at in self.links.items() if at is None]:
            await execute(
                _UNLINK, {"partners": [p for p, _ in unlinked], "members": [m for _, m in unlinked]}
            )


def order_paid(facts: Facts, delivery: Delivery) -> bool:
    event, order = delivery.event, delivery.data
    assert isinstance(order, OrderPaid)
    if order.order_id in facts.orders:
        log.info("order %s already counted; event %s ignored", order.order_id, event.id)
        return False
    row = OrderRow(
        order.order_id,
        order.member_id,
        order.currency,
        order.amount.quantize(SCALE),
        Decimal(0).quantize(SCALE),
        event.time,
        None,
        new=True,
    )
    facts.orders[order.order_id] = row
    if facts.history is not None:
        facts.history.setdefault(order.member_id, []).append(row)
    member = facts.members[order.member_id]
    if member.first_order_at is None or event.time < member.first_order_at:
        member.first_order_at, member.dirty = event.time, True
    if member.last_order_at is None or event.time > member.last_order_at:
        member.last_order_at, member.dirty = event.time, True
    return True


def order_refunded(facts: Facts, delivery: Delivery) -> bool:
    refund = delivery.data
    assert isinstance(refund, OrderRefunded)
    order = facts.orders.get(refund.order_id)
    if order is not None and (refund.order_id, refund.refund_id) in facts.refunds:
        log.info("refund %s of order %s already applied", refund.refund_id, refund.order_id)
        return False
    check_refund(order.paid() if order else None, refund)
    assert order is not None
    facts.refunds.add((refund.order_id, refund.refund_id))
    facts.new_refunds.append(
        {"order_id": order.order_id, "refund_id": refund.refund_id, "amount": refund.amount}
    )
    if order.cancelled_at is not None:
        return False  # a cancelled order counts nothing already; the refund is recorded, changes nothing
    order.refunded, order.dirty = (order.refunded + refund.amount).quantize(SCALE), True
    return True


def order_cancelled(facts: Facts, delivery: Delivery) -> bool:
    cancel = delivery.data
    assert isinstance(cancel, OrderCancelled)
    order = facts.orders.get(cancel.order_id)
    check_cancel(order.paid() if order else None, cancel)
    assert order is not None
    if order.cancelled_at is None:
        order.cancelled_at, order.dirty = delivery.event.time, True
        return True
    return False


def tier_changed(facts: Facts, delivery: Delivery) -> bool:
    """The tier in force: the change that took effect last wins (a late, older one changes nothing)."""
    change = delivery.data
    assert isinstance(change, TierChanged)
    member = facts.members[change.member_id]
    at = change.effective_at or delivery.event.time
    if member.tier_at is None or at >= member.tier_at:
        member.tier, member.tier_at, member.dirty = change.to_tier, at, True
        member.discount_rate = Decimal(change.benefits.discount_rate) if change.benefits else None
        return True
    return False


def _points_moved(facts: Facts, delivery: Delivery, points: int) -> bool:
    member = delivery.data.member_id
    delta, as_of = facts.points.get(member, (0, delivery.event.time))
    facts.points[member] = (delta + points, max(as_of, delivery.event.time))
    return True


def points_event(facts: Facts, delivery: Delivery) -> bool:
    """The points projection moves as the member's points ledger moved."""
    data = delivery.data
    if isinstance(data, PointsEarned | PointsAdjusted):
        return _points_moved(facts, delivery, data.points)
    assert isinstance(data, PointsReversed | PointsRedeemed | PointsExpired)
    return _points_moved(facts, delivery, -data.points)


def partner_link(facts: Facts, delivery: Delivery) -> bool:
    """Links in event order: the last change of a (partner, member) pair in the batch wins."""
    data = delivery.data
    assert isinstance(data, PartnerLinked | PartnerUnlinked)
    facts.links[(data.partner_id, data.member_id)] = data.at if isinstance(data, PartnerLinked) else None
    return True


APPLIERS: dict[str, Callable[[Facts, Delivery], bool]] = {
    OrderPaid.event_type: order_paid,
    OrderRefunded.event_type: order_refunded,
    OrderCancelled.event_type: order_cancelled,
    TierChanged.event_type: tier_changed,
    **{
        model.event_type: points_event
        for model in (PointsEarned, PointsReversed, PointsRedeemed, PointsExpired, PointsAdjusted)
    },
    PartnerLinked.event_type: partner_link,
    PartnerUnlinked.event_type: partner_link,
}


async def lock_members(session: AsyncSession, members: Sequence[str]) -> None:
    """Take the members' row locks (created when new), in sorted order, as a batch does: what any
    change of a member's rewards takes first."""
    await session.execute(_LOCK_MEMBERS, {"members": sorted(set(members))})
