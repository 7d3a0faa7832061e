"""Reversal: refunds take back points in proportion, and a full refund takes back exactly all."""

import random
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise

import pytest

from loyalty_shared.events import OrderRefunded
from loyalty_shared.orders import PaidOrder, check_refund
from points_service.domain import RefundExceedsPaid, reversal_due


def d(value: str) -> Decimal:
    return Decimal(value)


def refunded_total_after(amount: Decimal, refunded: Decimal, refund: Decimal) -> Decimal:
    """The refunded total once ``refund`` is counted, after the kit's rule for order events
    (loyalty_shared.orders, unit-tested in tests/unit/test_order_rules.py) let it through."""
    order = PaidOrder("O-1", "M-1", "EUR", amount, refunded)
    data = {"order_id": "O-1", "member_id": "M-1", "currency": "EUR", "refund_id": "R-1"}
    check_refund(order, OrderRefunded.model_validate({**data, "amount": str(refund)}))
    return refunded + refund


def refund_in_steps(points: int, amount: Decimal, refunds: list[Decimal]) -> list[int]:
    """Replay refunds as the service would, checking the invariant after each step."""
    refunded = Decimal("0")
    reversed_so_far = 0
    cumulative = []
    for refund in refunds:
        refunded = refunded_total_after(amount, refunded, refund)
        due = reversal_due(points, amount, refunded, reversed_so_far)
        assert due >= 0
        reversed_so_far += due
        assert reversed_so_far == int(Fraction(points) * Fraction(refunded) / Fraction(amount))
        assert reversed_so_far <= points
        cumulative.append(reversed_so_far)
    return cumulative


# --- reversal_due: single steps ------------------------------------------------------------


def test_nothing_refunded_reverses_nothing() -> None:
    assert reversal_due(129, d("129.90"), d("0"), 0) == 0


def test_full_refund_reverses_everything() -> None:
    assert reversal_due(129, d("129.90"), d("129.90"), 0) == 129


def test_half_refund_reverses_half_rounded_down() -> None:
    assert reversal_due(100, d("100"), d("50"), 0) == 50
    assert reversal_due(101, d("100"), d("50"), 0) == 50  # 50.5 -> 50


def test_already_reversed_points_are_not_taken_twice() -> None:
    assert reversal_due(100, d("100"), d("50"), 50) == 0
    assert reversal_due(100, d("100"), d("75"), 50) == 25
    assert reversal_due(100, d("100"), d("100"), 75) == 25


def test_never_negative_when_more_was_already_reversed() -> None:
    assert reversal_due(100, d("100"), d("30"), 40) == 0


def test_an_order_that_earned_nothing_reverses_nothing() -> None:
    assert reversal_due(0, d("0.99"), d("0.99"), 0) == 0


def test_small_refunds_may_reverse_nothing_yet() -> None:
    # 10 points on 99.99: a 5.00 refund is worth 0.50 points -> 0 now, caught up later.
    assert reversal_due(10, d("99.99"), d("5.00"), 0) == 0
    assert reversal_due(10, d("99.99"), d("10.00"), 0) == 1


def test_floor_is_exact_with_many_digits() -> None:
    # P x R / A = 3 x (1/3 of A) / A: exactly 1, never 0.999...
    amount = d("0.0000000000000000000000000000003")
    assert reversal_due(3, amount, d("0.0000000000000000000000000000001"), 0) == 1


@pytest.mark.parametrize(
    ("points", "amount", "refunded", "already", "fragment"),
    [
        (-1, d("10"), d("1"), 0, "points_earned"),
        (1.5, d("10"), d("1"), 0, "points_earned"),
        (10, d("10"), d("1"), -1, "already_reversed"),
        (10, d("-10"), d("1"), 0, "amount"),
        (10, d("0"), d("0"), 0, "more than 0"),
        (10, d("10"), d("-1"), 0, "refunded_total"),
        (10, d("10"), d("NaN"), 0, "refunded_total"),
        (10, d("10"), d("5"), 11, "more than the 10 points earned"),
    ],
)
def test_reversal_due_refuses_bad_figures(
    points: int, amount: Decimal, refunded: Decimal, already: int, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        reversal_due(points, amount, refunded, already)


def test_reversal_due_refuses_a_refunded_total_above_the_amount() -> None:
    with pytest.raises(RefundExceedsPaid):
        reversal_due(100, d("100"), d("100.01"), 0)


# --- reversal_due: sequences of refunds ----------------------------------------------------


def test_three_thirds_of_99_99_reverse_everything() -> None:
    assert refund_in_steps(99, d("99.99"), [d("33.33")] * 3) == [33, 66, 99]


def test_three_thirds_with_an_odd_point_count() -> None:
    # 100 x 1/3 = 33.33 -> 33, 2/3 -> 66, then the whole -> 100: the last step catches up.
    assert refund_in_steps(100, d("99.99"), [d("33.33")] * 3) == [33, 66, 100]


def test_cent_by_cent_refunds_reverse_exactly_everything() -> None:
    steps = refund_in_steps(7, d("1.00"), [d("0.01")] * 100)
    assert steps[-1] == 7
    assert steps == sorted(steps)
    assert steps[13] == 0  # 14 cents of 7 points on 1.00 = 0.98 points
    assert steps[14] == 1  # 15 cents = 1.05 points


def test_one_big_and_many_small_refunds() -> None:
    refunds = [d("90.00")] + [d("0.01")] * 999
    steps = refund_in_steps(149, d("99.99"), refunds)
    assert steps[0] == 134  # 149 x 90 / 99.99 = 134.11...
    assert steps[-1] == 149


def test_random_partial_refunds_always_end_at_exactly_the_points_earned() -> None:
    rng = random.Random(1234)
    for _ in range(400):
        amount_cents = rng.randint(1, 500_000)
        amount = Decimal(amount_cents) / 100
        points = rng.randint(0, 10 * amount_cents)
        cuts = sorted(rng.sample(range(1, amount_cents), k=min(amount_cents - 1, rng.randint(0, 8))))
        bounds = [0, *cuts, amount_cents]
        refunds = [Decimal(b - a) / 100 for a, b in pairwise(bounds)]
        steps = refund_in_steps(points, amount, refunds)
        assert steps[-1] == points
        assert all(a <= b for a, b in pairwise(steps))


def test_random_partial_refunds_that_stop_short_never_reverse_everything_early() -> None:
    rng = random.Random(99)
    for _ in range(300):
        amount = Decimal(rng.randint(100, 100_000)) / 100
        points = rng.randint(1, 5000)
        refunded = Decimal("0")
        reversed_so_far = 0
        while True:
            room = amount - refunded
            refund = Decimal(rng.randint(1, max(1, int(room * 100) // 3))) / 100
            if refund >= room:
                break
            refunded = refunded_total_after(amount, refunded, refund)
            reversed_so_far += reversal_due(points, amount, refunded, reversed_so_far)
            assert reversed_so_far == int(points * Fraction(refunded) / Fraction(amount))
            assert reversed_so_far <= points
        # Whatever the split, the final refund closes the gap exactly.
        refunded = refunded_total_after(amount, refunded, room)
        reversed_so_far += reversal_due(points, amount, refunded, reversed_so_far)
        assert reversed_so_far == points


def test_redelivering_the_same_state_reverses_nothing_more() -> None:
    # Asking again with the reversal already recorded is harmless (idempotent by design).
    due = reversal_due(250, d("80.00"), d("20.00"), 0)
    assert due == 62
    assert reversal_due(250, d("80.00"), d("20.00"), due) == 0
