"""When an order event is invalid: the one rule every consumer of ``orders`` applies, so every
service dead-letters the same events.

What one event can say wrong about itself (a malformed envelope, a field out of its schema, more
than ``MAX_ORDER_LINES`` lines, more than ``MAX_EVENT_BYTES`` bytes) is rejected by the schema when
the consumer decodes it. What an event can only be wrong about against the order's history is
judged here, from what the consumer knows of the order (``PaidOrder``):

- a refund or a cancel of an order never paid, of another member's order, or in another currency
  than the order was paid in;
- a refund that would bring the money refunded above the amount paid.

These events are invalid wherever they arrive: raise ``InvalidOrderEvent`` (a
``PermanentEventError``) and the kit dead-letters them. Everything else about an order is valid,
even when a service has nothing to do with it: a second ``order.paid`` of a known order, a refund id
seen before and a refund of a cancelled order are skipped, never dead-lettered; an order in a
currency a service does not count is kept as counting nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from loyalty_shared.events import OrderCancelled, OrderRefunded
from loyalty_shared.events.types import money_text
from loyalty_shared.handling import PermanentEventError


class InvalidOrderEvent(PermanentEventError):
    """The event contradicts the order's history; no service applies it."""


@dataclass(frozen=True)
class PaidOrder:
    """What a consumer knows of an order it has seen paid."""

    order_id: str
    member_id: str
    currency: str
    amount: Decimal
    refunded: Decimal = Decimal(0)  # money refunded so far (refund ids applied before)


def refund_problem(order: PaidOrder | None, refund: OrderRefunded) -> str | None:
    """Why ``refund`` (a refund id not applied before) is invalid for ``order``, or None."""
    problem = _order_problem(order, refund.order_id, refund.member_id, refund.currency)
    if problem or order is None:
        return problem
    if order.refunded + refund.amount > order.amount:
        return (
            f"refund exceeds amount paid: refund {refund.refund_id} of {money_text(refund.amount)} would "
            f"bring the refunded total of order {order.order_id} to "
            f"{money_text(order.refunded + refund.amount)}, more than the {money_text(order.amount)} "
            f"{order.currency} paid"
        )
    return None


def cancel_problem(order: PaidOrder | None, cancel: OrderCancelled) -> str | None:
    """Why ``cancel`` is invalid for ``order``, or None."""
    return _order_problem(order, cancel.order_id, cancel.member_id, cancel.currency)


def check_refund(order: PaidOrder | None, refund: OrderRefunded) -> None:
    """Raise InvalidOrderEvent unless ``refund`` is valid for ``order``."""
    if problem := refund_problem(order, refund):
        raise InvalidOrderEvent(problem)


def check_cancel(order: PaidOrder | None, cancel: OrderCancelled) -> None:
    """Raise InvalidOrderEvent unless ``cancel`` is valid for ``order``."""
    if problem := cancel_problem(order, cancel):
        raise InvalidOrderEvent(problem)


def _order_problem(order: PaidOrder | None, order_id: str, member_id: str, currency: str) -> str | None:
    if order is None:
        return f"order {order_id} was never paid here (no order.paid seen)"
    if order.member_id != member_id:
        return f"order {order_id} belongs to member {order.member_id}, not {member_id}"
    if order.currency != currency:
        return f"order {order_id} was paid in {order.currency}, not {currency}"
    return None
