"""Earning points for a paid order."""

from __future__ import annotations

import logging
from decimal import Decimal

from loyalty_shared.db import SCALE
from loyalty_shared.events import OrderPaid, PointsEarned
from loyalty_shared.handling import Delivery
from loyalty_shared.messaging.outbox import publish
from points_service import domain
from points_service.workset import OrderRow, Workset

log = logging.getLogger(__name__)


def earn_for_order(ws: Workset, delivery: Delivery) -> None:
    """Accrue an order's points at the rules in force now and the tier in force when it was paid;
    pending until the return window ends; a debt from earlier reversals is paid first."""
    event, order = delivery.event, delivery.data
    assert isinstance(order, OrderPaid)
    if order.order_id in ws.orders:
        log.info("order %s already earned its points; event %s ignored", order.order_id, event.id)
        return
    account = ws.account(order.member_id)
    rules = ws.rules
    tier, multiplier = ws.tier_at(account, event.time)
    lines = [domain.PricedLine(line.category, line.quantity, line.unit_price) for line in order.lines]
    accrual = domain.accrual_of(order.amount, lines, rules)
    points = accrual.points(multiplier)
    available_at, expires_at = domain.earning_schedule(event.time, rules)
    ws.add_order(
        OrderRow(
            order_id=order.order_id,
            member_id=order.member_id,
            currency=order.currency,
            amount=order.amount.quantize(SCALE),
            points_earned=points,
            refunded_total=Decimal(0).quantize(SCALE),
            points_reversed=0,
            cancelled=False,
            rule_version=rules.version,
            tier_multiplier=multiplier,
            paid_at=event.time,
            accrual_base=accrual.base,
            accrual_divisor=accrual.divisor,
        )
    )
    lot_id, repaid = ws.add_lot(
        account,
        points,
        source="order",
        order_id=order.order_id,
        earned_at=event.time,
        available_at=available_at,
        expires_at=expires_at,
    )
    ws.append_entry(
        member_id=order.member_id,
        entry_type="earn",
        points=points,
        reason=_earn_reason(rules.version, tier, repaid),
        order_id=order.order_id,
        lot_id=lot_id,
        rule_version=rules.version,
        event_id=event.id,
    )
    publish(
        ws.session,
        PointsEarned(
            member_id=order.member_id,
            order_id=order.order_id,
            points=points,
            rule_version=rules.version,
            tier=tier,
            tier_multiplier=str(multiplier),
            available_at=available_at,
            expires_at=expires_at,
            debt_repaid=repaid,
        ),
        order.member_id,
    )


def _earn_reason(rule_version: int, tier: str | None, repaid: int) -> str:
    reason = f"order paid (earning rules v{rule_version}, tier {tier or 'none'})"
    if repaid:
        reason += f"; {repaid} points paid an outstanding debt"
    return reason
