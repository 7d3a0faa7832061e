"""The kit's one rule for invalid order events (loyalty_shared.orders), and the size limits."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from loyalty_shared.envelope import MAX_EVENT_BYTES, InvalidEvent, new_event, parse_event
from loyalty_shared.events import OrderCancelled, OrderPaid, OrderRefunded
from loyalty_shared.events.orders import MAX_ORDER_LINES
from loyalty_shared.handling import PermanentEventError
from loyalty_shared.orders import (
    InvalidOrderEvent,
    PaidOrder,
    cancel_problem,
    check_cancel,
    check_refund,
    refund_problem,
)

ORDER = PaidOrder("O-1", "M-1", "EUR", Decimal("50.00"))


def refund(amount: str, *, member: str = "M-1", currency: str = "EUR", order: str = "O-1") -> OrderRefunded:
    return OrderRefunded.model_validate(
        {"order_id": order, "member_id": member, "currency": currency, "amount": amount, "refund_id": "R-1"}
    )


def cancel(*, member: str = "M-1", currency: str = "EUR") -> OrderCancelled:
    return OrderCancelled.model_validate(
        {"order_id": "O-1", "member_id": member, "currency": currency, "amount": "50.00"}
    )


def test_a_refund_within_what_was_paid_is_valid() -> None:
    assert refund_problem(ORDER, refund("30.00")) is None
    assert (
        refund_problem(PaidOrder("O-1", "M-1", "EUR", Decimal("50.00"), Decimal("20.00")), refund("30.00"))
        is None
    )
    check_refund(ORDER, refund("50.00"))


def test_a_refund_beyond_what_was_paid_is_invalid_with_the_figures() -> None:
    problem = refund_problem(ORDER, refund("80.00"))
    assert problem is not None
    assert "refund exceeds amount paid" in problem and "80.00" in problem and "50.00" in problem
    partly = PaidOrder("O-1", "M-1", "EUR", Decimal("50.00"), Decimal("20.00"))
    problem = refund_problem(partly, refund("30.01"))
    assert problem is not None and "to 50.01, more than the 50.00 EUR paid" in problem
    stored = PaidOrder("O-1", "M-1", "EUR", Decimal("50.0000"), Decimal("0.1230"))  # NUMERIC(18, 4)
    problem = refund_problem(stored, refund("50.00"))
    assert problem is not None and "to 50.123, more than the 50.00 EUR paid" in problem
    with pytest.raises(InvalidOrderEvent, match="exceeds"):
        check_refund(partly, refund("30.01"))


@pytest.mark.parametrize(
    ("order", "event", "fragment"),
    [
        (None, refund("1.00"), "never paid"),
        (ORDER, refund("1.00", member="M-2"), "belongs to member M-1, not M-2"),
        (ORDER, refund("1.00", currency="USD"), "paid in EUR, not USD"),
    ],
)
def test_a_refund_that_contradicts_the_order_is_invalid(
    order: PaidOrder | None, event: OrderRefunded, fragment: str
) -> None:
    problem = refund_problem(order, event)
    assert problem is not None and fragment in problem
    with pytest.raises(PermanentEventError, match=fragment):  # the kit dead-letters it
        check_refund(order, event)


@pytest.mark.parametrize(
    ("order", "event", "fragment"),
    [
        (None, cancel(), "never paid"),
        (ORDER, cancel(member="M-2"), "belongs to member M-1"),
        (ORDER, cancel(currency="USD"), "paid in EUR, not USD"),
    ],
)
def test_a_cancel_that_contradicts_the_order_is_invalid(
    order: PaidOrder | None, event: OrderCancelled, fragment: str
) -> None:
    problem = cancel_problem(order, event)
    assert problem is not None and fragment in problem
    with pytest.raises(InvalidOrderEvent, match=fragment):
        check_cancel(order, event)


def test_a_cancel_of_a_paid_order_is_valid() -> None:
    assert cancel_problem(ORDER, cancel()) is None
    check_cancel(ORDER, cancel())


def line(i: int) -> dict[str, object]:
    return {"sku": f"SKU-{i}", "category": "office", "quantity": 1, "unit_price": "1.00"}


def test_an_order_has_at_most_the_documented_number_of_lines() -> None:
    body = {"order_id": "O-1", "member_id": "M-1", "currency": "EUR", "amount": "500.00"}
    OrderPaid.model_validate({**body, "lines": [line(i) for i in range(MAX_ORDER_LINES)]})
    with pytest.raises(ValidationError, match="at most 500"):
        OrderPaid.model_validate({**body, "lines": [line(i) for i in range(MAX_ORDER_LINES + 1)]})
    assert OrderPaid.model_json_schema()["properties"]["lines"]["maxItems"] == MAX_ORDER_LINES


def test_an_event_over_the_byte_limit_is_invalid_unread() -> None:
    event = new_event("order.paid", "urn:test", "M-1", {"padding": "x" * MAX_EVENT_BYTES})
    raw = event.to_bytes()
    assert len(raw) > MAX_EVENT_BYTES
    with pytest.raises(InvalidEvent, match=f"the limit is {MAX_EVENT_BYTES} bytes"):
        parse_event(raw)
    small = json.dumps({**json.loads(raw), "data": {}}).encode()
    assert parse_event(small).data == {}
