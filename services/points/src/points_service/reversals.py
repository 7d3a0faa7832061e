"""Taking points back when an order is refunded (partly or wholly) or cancelled.

After refunds totalling R of an order of amount A that earned P points, the order's reversal so far
is floor(P × R / A): a full refund reverses exactly P, never more. Points come back from the order's
own lot first (cancelling pending points inside the return window), then from the member's other
available lots; what is already spent becomes a debt or is forgiven, as the rules' debt policy says.
What makes a refund or a cancel invalid is the kit's one rule for order events (loyalty_shared.orders).
"""

from __future__ import annotations

import logging

from loyalty_shared.clock import now as clock_now
from loyalty_shared.envelope import CloudEvent
from loyalty_shared.events import OrderCancelled, OrderRefunded, PointsReversed
from loyalty_shared.events.types import money_text
from loyalty_shared.handling import Delivery
from loyalty_shared.messaging.outbox import publish
from loyalty_shared.orders import PaidOrder, check_cancel, check_refund
from points_service import domain
from points_service.workset import AccountRow, OrderRow, Workset

log = logging.getLogger(__name__)


def reverse_for_refund(ws: Workset, delivery: Delivery) -> None:
    event, refund = delivery.event, delivery.data
    assert isinstance(refund, OrderRefunded)
    account = ws.account(refund.member_id)
    order = ws.orders.get(refund.order_id)
    if order is not None and ws.refund_applied(order.order_id, refund.refund_id):
        log.info("refund %s of order %s already applied", refund.refund_id, order.order_id)
        return
    check_refund(_known(order), refund)
    assert order is not None
    order.refunded_total += refund.amount
    order.dirty = True
    due = 0
    if order.cancelled:
        log.info("refund %s of cancelled order %s: nothing left to reverse", refund.refund_id, order.order_id)
    else:
        due = domain.reversal_due(
            order.points_earned, order.amount, order.refunded_total, order.points_reversed
        )
    ws.add_refund(order.order_id, refund.refund_id, refund.amount, due)
    reason = (
        f"refund {refund.refund_id} of order {order.order_id} "
        f"(refunded {money_text(order.refunded_total)} of {money_text(order.amount)} {order.currency})"
    )
    _take_back(ws, event, account, order, due, reason, refund.refund_id)


def reverse_for_cancel(ws: Workset, delivery: Delivery) -> None:
    event, cancel = delivery.event, delivery.data
    assert isinstance(cancel, OrderCancelled)
    account = ws.account(cancel.member_id)
    order = ws.orders.get(cancel.order_id)
    check_cancel(_known(order), cancel)
    assert order is not None
    if order.cancelled:
        log.info("order %s already cancelled; event %s ignored", order.order_id, event.id)
        return
    order.cancelled = order.dirty = True
    due = order.points_earned - order.points_reversed
    _take_back(ws, event, account, order, due, f"order {order.order_id} cancelled", None)


def _known(order: OrderRow | None) -> PaidOrder | None:
    """The order as the kit's rule for order events sees it."""
    if order is None:
        return None
    return PaidOrder(order.order_id, order.member_id, order.currency, order.amount, order.refunded_total)


def _take_back(
    ws: Workset,
    event: CloudEvent,
    account: AccountRow,
    order: OrderRow,
    due: int,
    reason: str,
    refund_id: str | None,
) -> None:
    if due == 0:
        return
    order.points_reversed += due
    taken, debt, reason = take_back(ws, event, account, order.order_id, due, reason)
    ws.append_entry(
        member_id=account.member_id,
        entry_type="reverse",
        points=-taken,
        reason=reason,
        order_id=order.order_id,
        refund_id=refund_id,
        rule_version=order.rule_version,
        event_id=event.id,
    )
    publish(
        ws.session,
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


def take_back(
    ws: Workset, event: CloudEvent, account: AccountRow, order_id: str, points: int, reason: str
) -> tuple[int, int, str]:
    """Take ``points`` of an order back: from its own lot first, then the member's other available
    lots; what is already spent becomes a debt or is forgiven, as the rules' debt policy says.
    Returns (points taken, debt created, ``reason`` saying so)."""
    now = min(event.time, clock_now(ws.session))
    plan = domain.plan_reversal(ws.order_lot(order_id), ws.open_lots(account.member_id), points, now)
    ws.debit(plan.takes)
    debt = domain.resolve_shortfall(plan.shortfall, ws.rules.debt_policy)
    if debt:
        ws.set_debt(account, account.debt + debt)
    if plan.shortfall - debt:
        reason += f"; {plan.shortfall - debt} already-spent points forgiven"
    elif debt:
        reason += f"; {debt} already-spent points became a debt"
    return plan.covered + debt, debt, reason
