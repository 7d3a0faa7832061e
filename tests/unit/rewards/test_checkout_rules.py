"""What a basket gets at checkout: the best rate, then coupons, then store credit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from rewards_service.domain import Coupon
from rewards_service.domain.checkout import Rate, quote

D = Decimal
NOW = datetime(2027, 4, 2, tzinfo=UTC)
LATER = NOW + timedelta(days=30)
LADDER = Rate("ladder", D("0.03"), "1200 spent in 2027-Q1", "p1")
TIER = Rate("tier", D("0.05"), "Gold", "p2")


def test_rates_do_not_stack_the_best_wins() -> None:
    q = quote(D("200.00"), [LADDER, TIER], [], D(0), NOW)
    assert [(d.kind, d.amount) for d in q.discounts] == [("tier", D("10.00"))]
    assert (q.total_discount, q.payable) == (D("10.00"), D("190.00"))


def test_a_coupon_applies_to_what_the_rate_left_and_its_minimum_to_the_basket() -> None:
    ten_off = Coupon(None, D("10.00"), D("200.00"), LATER)
    q = quote(D("200.00"), [TIER], [("C1", ten_off)], D(0), NOW)
    assert [(d.kind, d.amount) for d in q.discounts] == [("tier", D("10.00")), ("coupon", D("10.00"))]
    below = quote(D("199.99"), [], [("C1", ten_off)], D(0), NOW)
    assert below.discounts[0].amount == D(0) and "minimum" in below.discounts[0].reason


def test_a_percent_coupon_rounds_to_the_cent_and_an_expired_one_gives_nothing() -> None:
    q = quote(D("33.33"), [], [("P", Coupon(D("10"), None, D(0), LATER))], D(0), NOW)
    assert q.discounts[0].amount == D("3.33")
    expired = quote(D("50"), [], [("P", Coupon(D("10"), None, D(0), NOW))], D(0), NOW)
    assert expired.discounts[0].amount == D(0)


def test_store_credit_pays_what_is_left_and_never_more() -> None:
    q = quote(D("20.00"), [], [("C", Coupon(None, D("15.00"), D(0), LATER))], D("100.00"), NOW)
    assert [(d.kind, d.amount) for d in q.discounts] == [("coupon", D("15.00")), ("wallet", D("5.00"))]
    assert q.payable == D("0.00")


def test_nothing_takes_the_basket_below_zero() -> None:
    q = quote(
        D("5.00"),
        [],
        [("A", Coupon(None, D("10"), D(0), LATER)), ("B", Coupon(None, D("10"), D(0), LATER))],
        D(0),
        NOW,
    )
    assert [d.amount for d in q.discounts] == [D("5.00"), D("0.00")]
    assert q.payable == D("0.00")


def test_a_negative_basket_is_refused() -> None:
    with pytest.raises(ValueError):
        quote(D("-1"), [], [], D(0), NOW)
