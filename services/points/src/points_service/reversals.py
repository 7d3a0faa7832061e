"""Taking points back when an order is refunded (partly or wholly) or cancelled.

After refunds totalling R of an order of amount A that earned P points, the order's reversal so far
is floor(P × R / A): a full refund reverses exactly P, never more. Points come back from the order's
own lot first (cancelling pending points inside the return window), then from the member's other
available lots; what is already spent becomes a debt or is forgiven, as the rules' debt policy says.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.envelope import CloudEvent
from loyalty_shared.events import OrderCancelled, OrderRefunded, PointsReversed
from loyalty_shared.orders import PaidOrder, check_cancel, check_refund
from points_service import domain
from points_service.ledger import (
    AccountState,
    append_entry,
    current_rules,
    debit_lots,
    lock_account,
    open_lots,
    publish,
    set_debt,
)
from points_service.models import Lot, Order, Refund

log = logging.getLogger(__name__)


async def reverse_for_refund(session: AsyncSession, event: CloudEvent, refund: OrderRefunded) -> None:
    account = await lock_account(session, refund.member_id)
    order = await session.get(Order, refund.order_id, with_for_update=True)
    if order is not None and await _refund_applied(session, order.order_id, refund.refund_id):
        log.info("refund %s of order %s already applied", refund.refund_id, order.order_id)
        return
    check_refund(_known(order), refund)
    assert order is not None
    order.refunded_total += refund.amount
    due = 0
    if order.cancelled:
        log.info("refund %s of cancelled order %s: nothing left to reverse", refund.refund_id, order.order_id)
    else:
        due = domain.reversal_due(
            order.points_earned, order.amount, order.refunded_total, order.points_reversed
        )
    session.add(
        Refund(order_id=order.order_id, refund_id=refund.refund_id, amount=refund.amount, points_reversed=due)
    )
    reason = (
        f"refund {refund.refund_id} of order {order.order_id} "
        f"(refunded {order.refunded_total} of {order.amount} {order.currency})"
    )
    await _take_back(session, event, account, order, due, reason, refund.refund_id)


async def reverse_for_cancel(session: AsyncSession, event: CloudEvent, cancel: OrderCancelled) -> None:
    account = await lock_account(session, cancel.member_id)
    order = await session.get(Order, cancel.order_id, with_for_update=True)
    check_cancel(_known(order), cancel)
    assert order is not None
    if order.cancelled:
        log.info("order %s already cancelled; event %s ignored", order.order_id, event.id)
        return
    order.cancelled = True
    due = order.points_earned - order.points_reversed
    await _take_back(session, event, account, order, due, f"order {order.order_id} cancelled", None)


def _known(order: Order | None) -> PaidOrder | None:
    """The order as the kit's rule for order events sees it."""
    if order is None:
        return None
    return PaidOrder(order.order_id, order.member_id, order.currency, order.amount, order.refunded_total)


async def _refund_applied(session: AsyncSession, order_id: str, refund_id: str) -> bool:
    found = await session.scalar(
        select(Refund.refund_id).where(Refund.order_id == order_id, Refund.refund_id == refund_id)
    )
    return found is not None


async def _take_back(
    session: AsyncSession,
    event: CloudEvent,
    account: AccountState,
    order: Order,
    due: int,
    reason: str,
    refund_id: str | None,
) -> None:
    order.points_reversed += due
    if due == 0:
        await session.flush()
        return
    rules = await current_rules(session)
    now = min(event.time, clock_now(session))
    lots = await open_lots(session, account.member_id)
    order_lot_id = await session.scalar(
        select(Lot.id).where(Lot.order_id == order.order_id, Lot.source == "order")
    )
    order_lot = next((lot for lot in lots if lot.id == order_lot_id), None)
    plan = domain.plan_reversal(order_lot, lots, due, now)
    await debit_lots(session, plan.takes)
    debt = domain.resolve_shortfall(plan.shortfall, rules.debt_policy)
    if debt:
        await set_debt(session, account.member_id, account.debt + debt)
    taken = plan.covered + debt
    if plan.shortfall - debt:
        reason += f"; {plan.shortfall - debt} already-spent points forgiven"
    elif debt:
        reason += f"; {debt} already-spent points became a debt"
    await append_entry(
        session,
        member_id=account.member_id,
        entry_type="reverse",
        points=-taken,
        reason=reason,
        order_id=order.order_id,
        refund_id=refund_id,
        rule_version=order.rule_version,
        event_id=event.id,
    )
    await publish(
        session,
        "points.reversed",
        PointsReversed(
            member_id=account.member_id,
            order_id=order.order_id,
            refund_id=refund_id,
            reason="refund" if refund_id else "cancel",
            points=taken,
            reversed_total=order.points_reversed,
            debt_created=debt,
        ),
        account.member_id,
    )
    await session.flush()
