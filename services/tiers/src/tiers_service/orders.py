"""Order events: qualifying spend in, promotion as soon as an order qualifies; refunds and cancels
lower the figures (they never demote by themselves: demotion waits for an evaluation)."""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.envelope import CloudEvent
from loyalty_shared.events import OrderCancelled, OrderPaid, OrderRefunded
from loyalty_shared.events.orders import OrderLine
from loyalty_shared.messaging.consumer import PermanentEventError
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
    if order.currency != ladder.currency:
        raise PermanentEventError(
            f"order {order.order_id} is in {order.currency}; tiers qualify on {ladder.currency} spend"
        )
    now = clock_now(session)
    standing = await lock_standing(session, order.member_id)
    inserted = await session.execute(
        _INSERT_ORDER,
        {
            "order_id": order.order_id,
            "member_id": order.member_id,
            "currency": order.currency,
            "amount": order.amount,
            "qualifying": domain.order_qualifying(
                order.amount, _lines(order.lines), ladder.excluded_categories
            ),
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


async def _counted_order(session: AsyncSession, order_id: str, member_id: str) -> QualifyingOrder:
    row = await session.get(QualifyingOrder, order_id, with_for_update=True)
    if row is None:
        raise PermanentEventError(f"order {order_id} was never paid here (no order.paid seen)")
    if row.member_id != member_id:
        raise PermanentEventError(f"order {order_id} belongs to member {row.member_id}, not {member_id}")
    return row


async def unqualify_refund(session: AsyncSession, event: CloudEvent, refund: OrderRefunded) -> None:
    ladder = await current_ladder(session)
    order = await _counted_order(session, refund.order_id, refund.member_id)
    if order.currency != refund.currency:
        raise PermanentEventError(
            f"order {order.order_id} was paid in {order.currency}, not {refund.currency}"
        )
    seen = await session.scalar(
        select(QualifyingRefund.refund_id).where(
            QualifyingRefund.order_id == order.order_id, QualifyingRefund.refund_id == refund.refund_id
        )
    )
    if seen is not None:
        log.info(
            "refund %s of order %s already counted; event %s ignored",
            refund.refund_id,
            order.order_id,
            event.id,
        )
        return
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
    await session.flush()


async def unqualify_cancel(session: AsyncSession, event: CloudEvent, cancel: OrderCancelled) -> None:
    await _counted_order(session, cancel.order_id, cancel.member_id)
    await session.execute(
        update(QualifyingOrder)
        .where(QualifyingOrder.order_id == cancel.order_id, QualifyingOrder.cancelled_at.is_(None))
        .values(cancelled_at=event.time)
    )
