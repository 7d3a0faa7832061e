"""The local projection of the tiers service: each member's tier periods and the tier in force.

An order earns at the tier whose period its payment falls in (``tier.changed`` says from when a
change applies: after the promoting order's payment), so the promoting order earns at the old tier.
The result does not depend on which event this service happens to process first: an order paid
after a change that arrives later (tiers was behind, down, or its events were delayed) earned at
the tier known then, and is re-rated when the change arrives: its accrual at the right multiplier,
its refunds' reversal recomputed, and the difference credited or taken back (a ledger entry and
``points.adjusted``).
"""

from __future__ import annotations

import logging
from decimal import Decimal

from loyalty_shared.db import SCALE
from loyalty_shared.envelope import CloudEvent
from loyalty_shared.events import PointsAdjusted, TierChanged
from loyalty_shared.handling import Delivery
from loyalty_shared.messaging.outbox import publish
from points_service import domain
from points_service.reversals import take_back
from points_service.workset import AccountRow, OrderRow, Workset

log = logging.getLogger(__name__)


def project_tier(ws: Workset, delivery: Delivery) -> None:
    """Record the period; the newest change (by event time) is the tier in force. An older change
    arriving late never overwrites a newer one. Orders already earned that the period covers are
    re-rated."""
    event, change = delivery.event, delivery.data
    assert isinstance(change, TierChanged)
    effective_at = change.effective_at or event.time
    multiplier = Decimal(change.points_multiplier).quantize(SCALE)
    ws.record_period(change.member_id, effective_at, change.to_tier, multiplier)
    account = ws.account(change.member_id)
    if account.tier_changed_at is None or account.tier_changed_at <= event.time:
        account.tier, account.tier_multiplier = change.to_tier, multiplier
        account.tier_changed_at, account.tier_effective_at = event.time, effective_at
        account.dirty = True
    for order in ws.member_orders(change.member_id, effective_at):
        tier, should_be = ws.tier_at(account, order.paid_at)
        if should_be != order.tier_multiplier:
            _rerate(ws, event, account, order, tier, should_be)


def _rerate(
    ws: Workset,
    event: CloudEvent,
    account: AccountRow,
    order: OrderRow,
    tier: str | None,
    multiplier: Decimal,
) -> None:
    accrual = order.accrual()
    if accrual is None:
        log.warning("order %s was earned before accruals were kept: not re-rated", order.order_id)
        return
    was = order.tier_multiplier
    result = domain.rerate(
        accrual.points(multiplier),
        order.amount,
        order.refunded_total,
        order.points_earned,
        order.points_reversed,
        order.cancelled,
    )
    order.points_earned, order.points_reversed = result.points_earned, result.points_reversed
    order.tier_multiplier, order.dirty = multiplier, True
    if result.change == 0:
        return
    reason = (
        f"order {order.order_id} re-rated at tier {tier or 'none'} (x{multiplier.normalize()}, "
        f"was x{was.normalize()}): tier.changed {event.id} covers its payment"
    )
    if result.change > 0:
        _credit(ws, account, order, result.change)
        entry_type, points = "earn", result.change
    else:
        points, _, reason = take_back(ws, event, account, order.order_id, -result.change, reason)
        entry_type, points = "reverse", -points
    ws.append_entry(
        member_id=account.member_id,
        entry_type=entry_type,
        points=points,
        reason=reason,
        order_id=order.order_id,
        rule_version=order.rule_version,
        event_id=event.id,
    )
    publish(
        ws.session,
        PointsAdjusted(
            member_id=account.member_id,
            adjustment_id=f"tier:{order.order_id}:{event.id}",
            points=points,
            reason=reason,
            actor="tiers",
        ),
        account.member_id,
    )


def _credit(ws: Workset, account: AccountRow, order: OrderRow, points: int) -> None:
    """More points for the order: a lot on the order's own schedule (pending until its return
    window ends, expiring with it)."""
    lot = ws.order_lot_row(order.order_id)
    if lot is not None:
        available_at, expires_at = lot.available_at, lot.expires_at
    else:  # the order earned nothing so far (or a debt took it all): the rules' schedule
        available_at, expires_at = domain.earning_schedule(order.paid_at, ws.rules)
    ws.add_lot(
        account,
        points,
        source="order",
        order_id=order.order_id,
        earned_at=order.paid_at,
        available_at=available_at,
        expires_at=expires_at,
    )
