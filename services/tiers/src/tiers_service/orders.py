"""Order events: qualifying spend in, promotion as soon as an order qualifies; refunds and cancels
lower the figures (they never demote by themselves: demotion waits for an evaluation).

Each applier changes the batch's workset in memory; what makes a refund or a cancel invalid is the
kit's one rule for order events (loyalty_shared.orders). An order in another currency than the
ladder's is valid: it is kept, counting nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.db import SCALE
from loyalty_shared.events import OrderCancelled, OrderPaid, OrderRefunded
from loyalty_shared.events.orders import OrderLine
from loyalty_shared.handling import Delivery
from loyalty_shared.orders import PaidOrder, check_cancel, check_refund
from tiers_service import domain
from tiers_service.evaluations import run_due_steps
from tiers_service.standings import record_change
from tiers_service.workset import OrderRow, Workset

log = logging.getLogger(__name__)


def _lines(lines: list[OrderLine]) -> list[domain.Line]:
    return [domain.Line(line.category, line.quantity, line.unit_price) for line in lines]


async def qualify_order(ws: Workset, delivery: Delivery) -> None:
    event, order = delivery.event, delivery.data
    assert isinstance(order, OrderPaid)
    ladder, now = ws.ladder, ws.now
    qualifying = domain.order_qualifying(order.amount, _lines(order.lines), ladder.excluded_categories)
    if order.currency != ladder.currency:
        log.info("order %s is in %s: it counts nothing toward tiers", order.order_id, order.currency)
        qualifying = Decimal(0)
    if order.order_id in ws.orders:
        log.info("order %s already counted; event %s ignored", order.order_id, event.id)
        return
    ws.add_order(
        OrderRow(
            order_id=order.order_id,
            member_id=order.member_id,
            currency=order.currency,
            amount=order.amount.quantize(SCALE),
            qualifying=qualifying.quantize(SCALE),
            refunded=Decimal(0).quantize(SCALE),
            refunded_amount=Decimal(0).quantize(SCALE),
            paid_at=event.time,
            cancelled_at=None,
        )
    )
    start, end = domain.current_window(ladder, now)
    current = await ws.figures(order.member_id, start, end)
    paid_at = min(event.time, now)  # the order's time: a promotion applies to orders paid after it
    standing = ws.standings.get(order.member_id)
    if standing is None:
        updated, change = domain.join(ladder, order.member_id, current, paid_at, joined_at=paid_at)
    else:
        # Steps that fell due since the last evaluation run (an override's end, a period end) come
        # first, so the order meets the member as they stand now.
        caught_up = await run_due_steps(ws.session, ladder, standing, now, figures_of=ws.figures)
        makeup = None
        if caught_up.grace_from is not None:
            makeup = await ws.figures(order.member_id, caught_up.grace_from, None)
        updated, change = domain.on_order(
            ladder, caught_up, current, paid_at, makeup, order_id=order.order_id
        )
    ws.standings[order.member_id] = updated
    if change is not None:
        await record_change(ws.session, ladder, order.member_id, _with_order(change, order.order_id))


def _with_order(change: domain.Change, order_id: str) -> domain.Change:
    return replace(change, figures={**change.figures, "order_id": order_id})


def _known(row: OrderRow | None) -> PaidOrder | None:
    """The order as the kit's rule for order events sees it."""
    if row is None:
        return None
    return PaidOrder(row.order_id, row.member_id, row.currency, row.amount, row.refunded_amount)


async def unqualify_refund(ws: Workset, delivery: Delivery) -> None:
    event, refund = delivery.event, delivery.data
    assert isinstance(refund, OrderRefunded)
    order = ws.orders.get(refund.order_id)
    if order is not None and ws.refund_counted(order.order_id, refund.refund_id):
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
        ws.ladder.excluded_categories,
    ).quantize(SCALE)
    ws.add_refund(order.order_id, refund.refund_id, refund.amount, taken)
    order.refunded += taken
    order.refunded_amount += refund.amount
    order.dirty = True


async def unqualify_cancel(ws: Workset, delivery: Delivery) -> None:
    event, cancel = delivery.event, delivery.data
    assert isinstance(cancel, OrderCancelled)
    order = ws.orders.get(cancel.order_id)
    check_cancel(_known(order), cancel)
    assert order is not None
    if order.cancelled_at is None:
        order.cancelled_at, order.dirty = event.time, True


APPLIERS: dict[str, Callable[[Workset, Delivery], Awaitable[None]]] = {
    OrderPaid.event_type: qualify_order,
    OrderRefunded.event_type: unqualify_refund,
    OrderCancelled.event_type: unqualify_cancel,
}


async def apply_order_events(session: AsyncSession, deliveries: Sequence[Delivery]) -> None:
    """The service's handler: load what the batch touches, apply each event in order, write back."""
    ws = await Workset.load(session, deliveries)
    for delivery in deliveries:
        await APPLIERS[delivery.type](ws, delivery)
    await ws.flush()
