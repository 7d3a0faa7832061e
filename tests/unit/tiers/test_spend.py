"""Qualifying spend: the share of an order or a refund outside the excluded categories."""

from decimal import Decimal

import pytest

from tiers_service.domain import Line, order_qualifying, refund_qualifying

EXCLUDED = frozenset({"gift-cards", "services"})


def d(value: str) -> Decimal:
    return Decimal(value)


def line(category: str, quantity: int, unit_price: str) -> Line:
    return Line(category, quantity, d(unit_price))


# --- order_qualifying -------------------------------------------------------------------------


def test_an_order_without_excluded_lines_qualifies_whole() -> None:
    lines = [line("electronics", 2, "40.00"), line("toys", 1, "20.00")]
    assert order_qualifying(d("100.00"), lines, EXCLUDED) == d("100.0000")


def test_excluded_lines_take_their_share_of_the_value() -> None:
    lines = [line("electronics", 3, "100.00"), line("gift-cards", 1, "100.00")]
    assert order_qualifying(d("400.00"), lines, EXCLUDED) == d("300.0000")


def test_a_discount_spreads_over_the_lines() -> None:
    # lines worth 100, paid 90 after a 10 % discount: 80 of 100 qualifies, so 72 of the 90 paid
    lines = [line("electronics", 2, "40.00"), line("gift-cards", 1, "20.00")]
    assert order_qualifying(d("90.00"), lines, EXCLUDED) == d("72.0000")


def test_quantities_weigh_the_lines() -> None:
    lines = [line("electronics", 1, "10.00"), line("services", 9, "10.00")]
    assert order_qualifying(d("50.00"), lines, EXCLUDED) == d("5.0000")


def test_every_excluded_category_counts() -> None:
    lines = [line("gift-cards", 1, "10"), line("services", 1, "30"), line("food", 1, "60")]
    assert order_qualifying(d("100"), lines, EXCLUDED) == d("60.0000")
    assert order_qualifying(d("100"), lines, frozenset()) == d("100.0000")
    assert order_qualifying(d("100"), lines, frozenset({"food"})) == d("40.0000")


def test_an_order_without_lines_qualifies_whole() -> None:
    assert order_qualifying(d("1234.5678"), [], EXCLUDED) == d("1234.5678")


def test_an_order_whose_lines_have_no_value_qualifies_whole() -> None:
    lines = [line("gift-cards", 1, "0"), line("electronics", 0, "25.00")]
    assert order_qualifying(d("12.00"), lines, EXCLUDED) == d("12.00")


def test_an_order_of_only_excluded_lines_qualifies_nothing() -> None:
    lines = [line("gift-cards", 2, "50.00"), line("services", 1, "10.00")]
    result = order_qualifying(d("110.00"), lines, EXCLUDED)
    assert result == d("0")
    assert str(result) == "0.0000"


@pytest.mark.parametrize(
    ("amount", "kept", "dropped", "expected"),
    [
        ("100", "1", "2", "33.3333"),  # 33.33333…
        ("200", "2", "1", "133.3333"),  # 133.33333…
        ("100", "2", "1", "66.6667"),  # 66.66666… rounds up
        ("10.0005", "1", "1", "5.0002"),  # 5.00025: half to even, down
        ("10.0007", "1", "1", "5.0004"),  # 5.00035: half to even, up
        ("0.0001", "1", "1", "0.0000"),  # 0.00005: half to even, down to zero
    ],
)
def test_the_share_is_rounded_to_four_decimals_half_even(
    amount: str, kept: str, dropped: str, expected: str
) -> None:
    lines = [line("electronics", 1, kept), line("gift-cards", 1, dropped)]
    result = order_qualifying(d(amount), lines, EXCLUDED)
    assert str(result) == expected


# --- refund_qualifying ------------------------------------------------------------------------


def test_a_refund_with_lines_takes_their_qualifying_share() -> None:
    refund_lines = [line("electronics", 1, "40.00"), line("gift-cards", 1, "20.00")]
    taken = refund_qualifying(d("60.00"), refund_lines, d("100.00"), d("80.00"), d("80.00"), EXCLUDED)
    assert taken == d("40.0000")


def test_a_refund_of_only_excluded_lines_takes_nothing() -> None:
    refund_lines = [line("gift-cards", 1, "20.00")]
    taken = refund_qualifying(d("20.00"), refund_lines, d("100.00"), d("80.00"), d("80.00"), EXCLUDED)
    assert taken == d("0")


def test_a_refund_with_lines_ignores_the_order_share() -> None:
    # the order was half gift cards, but this refund is all electronics: all of it qualified
    refund_lines = [line("electronics", 1, "30.00")]
    taken = refund_qualifying(d("30.00"), refund_lines, d("100.00"), d("50.00"), d("50.00"), EXCLUDED)
    assert taken == d("30.0000")


def test_a_refund_without_lines_takes_the_order_share() -> None:
    taken = refund_qualifying(d("30.00"), [], d("100.00"), d("80.00"), d("80.00"), EXCLUDED)
    assert taken == d("24.0000")


def test_a_refund_whose_lines_have_no_value_takes_the_order_share() -> None:
    taken = refund_qualifying(
        d("30.00"), [line("electronics", 0, "10")], d("100.00"), d("80.00"), d("80.00"), EXCLUDED
    )
    assert taken == d("24.0000")


def test_the_order_share_is_rounded_to_four_decimals() -> None:
    taken = refund_qualifying(d("10.00"), [], d("30.00"), d("20.00"), d("20.00"), EXCLUDED)
    assert str(taken) == "6.6667"


def test_a_refund_on_an_order_that_did_not_qualify_takes_nothing() -> None:
    assert refund_qualifying(d("30.00"), [], d("100.00"), d("0"), d("0"), EXCLUDED) == d("0")


def test_a_refund_on_a_zero_amount_order_takes_nothing() -> None:
    taken = refund_qualifying(d("5.00"), [], d("0"), d("0"), d("0"), EXCLUDED)
    assert taken == d("0")


def test_a_refund_takes_at_most_what_remains() -> None:
    # 24 would be due, but earlier refunds left only 10 of the order's qualifying spend
    taken = refund_qualifying(d("30.00"), [], d("100.00"), d("80.00"), d("10.00"), EXCLUDED)
    assert taken == d("10.00")
    refund_lines = [line("electronics", 1, "60.00")]
    taken = refund_qualifying(d("60.00"), refund_lines, d("100.00"), d("80.00"), d("12.3456"), EXCLUDED)
    assert taken == d("12.3456")


def test_a_refund_takes_nothing_once_nothing_remains() -> None:
    assert refund_qualifying(d("30.00"), [], d("100.00"), d("80.00"), d("0"), EXCLUDED) == d("0")


def test_a_refund_never_takes_a_negative_amount() -> None:
    assert refund_qualifying(d("30.00"), [], d("100.00"), d("80.00"), d("-5.00"), EXCLUDED) == d("0")
    assert refund_qualifying(d("-30.00"), [], d("100.00"), d("80.00"), d("80.00"), EXCLUDED) == d("0")


def test_refunds_in_full_take_back_exactly_the_order_qualifying_spend() -> None:
    lines = [line("electronics", 2, "40.00"), line("gift-cards", 1, "20.00")]
    amount = d("90.00")
    qualifying = order_qualifying(amount, lines, EXCLUDED)
    remaining = qualifying
    for refund in (d("30.00"), d("30.00"), d("30.00")):
        taken = refund_qualifying(refund, [], amount, qualifying, remaining, EXCLUDED)
        assert taken == d("24.0000")
        remaining -= taken
    assert remaining == d("0")
