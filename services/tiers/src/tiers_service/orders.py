"""Order events: qualifying spend in, promotion as soon as an order qualifies; refunds and cancels
lower the figures (they never demote by themselves: demotion waits for an evaluation)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.envelope import CloudEvent
from loyalty_shared.events import OrderCancelled, OrderPaid, OrderRefunded
from loyalty_shared.events.orders import OrderLine
from loyalty_shared.handling import Delivery
from loyalty_shared.orders import PaidOrder, check_cancel, check_refund
from tiers_service import domain
from tiers_service.evaluations import run_due_steps
from tiers_service.ladders import current_ladder
from tiers_service.models import QualifyingOrder, QualifyingRefund, table
from tiers_service.standings import (
    create_standing,
    current_figures,
    figures,
    lock_standing,
    record_change,
    save_standing,
)

log = logging.getLogger(__name__)

_orders = table(QualifyingOrder)
_INSERT_ORDER = (
    insert(_orders).on_conflict_do_nothing(index_elements=[_orders.c.order_id]).returning(_orders.c.order_id)
)


def _lines(lines: list[OrderLine]) -> list[domain.Line]:
    return [domain.Line(line.category, line.quantity, line.unit_price) for line in lines]


async def qualify_order(session: AsyncSession, event: CloudEvent, order: OrderPaid) -> None:
    ladder = await current_ladder(session)
    qualifying = domain.order_qualifying(order.amount, _lines(order.lines), ladder.excluded_categories)
    if order.currency != ladder.currency:
        log.info(
            "order %s is in %s; it counts nothing toward %s tiers",
            order.order_id,
            order.currency,
            ladder.currency,
        )
        qualifying = Decimal(0)
    now = clock_now(session)
    standing = await lock_standing(session, order.member_id)
    inserted = await session.execute(
        _INSERT_ORDER,
        {
            "order_id": order.order_id,
            "member_id": order.member_id,
            "currency": order.currency,
            "amount": order.amount,
            "qualifying": qualifying,
            "paid_at": event.time,
        },
    )
    if inserted.first() is None:
        log.info("order %s already counted; event %s ignored", order.order_id, event.id)
        return
    current = await current_figures(session, order.member_id, ladder, now)
    paid_at = min(event.time, now)  # the order's time: a promotion applies to orders paid after it
    if standing is None:
        standing, change = domain.join(ladder, order.member_id, current, paid_at, joined_at=paid_at)
        if not await create_standing(session, standing):
            raise RuntimeError(f"member {order.member_id} was created concurrently; retrying")
    else:
        # Steps that fell due since the last evaluation run (an override's end, a period end) come
        # first, so the order meets the member as they stand now.
        caught_up = await run_due_steps(session, ladder, standing, now)
        makeup = None
        if caught_up.grace_from is not None:
            makeup = await figures(session, order.member_id, ladder, caught_up.grace_from, None)
        updated, change = domain.on_order(
            ladder, caught_up, current, paid_at, makeup, order_id=order.order_id
        )
        if updated != standing:
            await save_standing(session, updated)
    if change is not None:
        await record_change(session, ladder, order.member_id, _with_order(change, order.order_id))


def _with_order(change: domain.Change, order_id: str) -> domain.Change:
    return replace(change, figures={**change.figures, "order_id": order_id})


def _known(row: QualifyingOrder | None) -> PaidOrder | None:
    """The order as the kit's rule for order events sees it."""
    if row is None:
        return None
    return PaidOrder(row.order_id, row.member_id, row.currency, row.amount, row.refunded_amount)


async def unqualify_refund(session: AsyncSession, event: CloudEvent, refund: OrderRefunded) -> None:
    ladder = await current_ladder(session)
    order = await session.get(QualifyingOrder, refund.order_id, with_for_update=True)
    if order is not None and await _refund_counted(session, order.order_id, refund.refund_id):
        log.info(
            "refund %s of order %s already counted; event %s ignored",
            refund.refund_id,
            order.order_id,
            event.id,
        )
        return
    check_refund(_known(order), refund)
    assert order is not None
    taken = domain.refund_qualifying(
        refund.amount,
        _lines(refund.lines),
        order.amount,
        order.qualifying,
        order.qualifying - order.refunded,
        ladder.excluded_categories,
    )
    session.add(
        QualifyingRefund(
            order_id=order.order_id, refund_id=refund.refund_id, amount=refund.amount, qualifying=taken
        )
    )
    order.refunded += taken
    order.refunded_amount += refund.amount
    await session.flush()


async def _refund_counted(session: AsyncSession, order_id: str, refund_id: str) -> bool:
    found = await session.scalar(
        select(QualifyingRefund.refund_id).where(
            QualifyingRefund.order_id == order_id, QualifyingRefund.refund_id == refund_id
        )
    )
    return found is not None


async def unqualify_cancel(session: AsyncSession, event: CloudEvent, cancel: OrderCancelled) -> None:
    order = await session.get(QualifyingOrder, cancel.order_id, with_for_update=True)
    check_cancel(_known(order), cancel)
    await session.execute(
        update(QualifyingOrder)
        .where(QualifyingOrder.order_id == cancel.order_id, QualifyingOrder.cancelled_at.is_(None))
        .values(cancelled_at=event.time)
    )


async def apply_order_events(session: AsyncSession, deliveries: Sequence[Delivery]) -> None:
    """The service's handler: the batch's order events, one after the other, in offset order."""
    for delivery in deliveries:
        await _APPLY[delivery.type](session, delivery.event, delivery.data)


_APPLY: dict[str, Callable[[AsyncSession, CloudEvent, Any], Awaitable[None]]] = {
    OrderPaid.event_type: qualify_order,
    OrderRefunded.event_type: unqualify_refund,
    OrderCancelled.event_type: unqualify_cancel,
}
