"""Earning points for a paid order."""

from __future__ import annotations

import logging

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.envelope import CloudEvent
from loyalty_shared.events import OrderPaid, PointsEarned
from points_service import domain
from points_service.ledger import add_lot, append_entry, current_rules, lock_account, publish
from points_service.models import Order, table
from points_service.tiers import tier_at

log = logging.getLogger(__name__)

_orders = table(Order)
_INSERT_ORDER = (
    insert(_orders).on_conflict_do_nothing(index_elements=[_orders.c.order_id]).returning(_orders.c.order_id)
)


async def earn_for_order(session: AsyncSession, event: CloudEvent, order: OrderPaid) -> None:
    """Accrue an order's points at the rules in force now and the tier in force when it was paid;
    pending until the return window ends; a debt from earlier reversals is paid first."""
    account = await lock_account(session, order.member_id)
    rules = await current_rules(session)
    tier, multiplier = await tier_at(session, account, event.time)
    points = domain.accrue_points(
        order.amount,
        [domain.PricedLine(line.category, line.quantity, line.unit_price) for line in order.lines],
        rules,
        multiplier,
    )
    available_at, expires_at = domain.earning_schedule(event.time, rules)
    created = await session.execute(
        _INSERT_ORDER,
        {
            "order_id": order.order_id,
            "member_id": order.member_id,
            "currency": order.currency,
            "amount": order.amount,
            "points_earned": points,
            "rule_version": rules.version,
            "tier_multiplier": multiplier,
            "paid_at": event.time,
        },
    )
    if created.first() is None:
        log.info("order %s already earned its points; event %s ignored", order.order_id, event.id)
        return
    lot_id, repaid = await add_lot(
        session,
        account,
        points,
        source="order",
        order_id=order.order_id,
        earned_at=event.time,
        available_at=available_at,
        expires_at=expires_at,
    )
    await append_entry(
        session,
        member_id=order.member_id,
        entry_type="earn",
        points=points,
        reason=_earn_reason(rules.version, tier, repaid),
        order_id=order.order_id,
        lot_id=lot_id,
        rule_version=rules.version,
        event_id=event.id,
    )
    await publish(
        session,
        "points.earned",
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
