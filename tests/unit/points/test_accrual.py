"""Accrual: points for a paid order, and the schedule on which they vest and expire."""

import random
from dataclasses import FrozenInstanceError, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from points_service.domain import (
    DEFAULT_RULES,
    EarningRules,
    PricedLine,
    accrue_points,
    earning_schedule,
)

ONE = Decimal("1")
ELECTRONICS_X2 = replace(DEFAULT_RULES, category_multipliers={"electronics": Decimal("2")})


def rules(**changes: Any) -> EarningRules:
    return replace(DEFAULT_RULES, **changes)


def line(category: str, quantity: int, unit_price: str) -> PricedLine:
    return PricedLine(category=category, quantity=quantity, unit_price=Decimal(unit_price))


# --- the examples from the brief -----------------------------------------------------------


def test_plain_order_earns_one_point_per_unit_rounded_down() -> None:
    assert accrue_points(Decimal("129.90"), [], DEFAULT_RULES, ONE) == 129


def test_a_doubled_category_doubles_the_points() -> None:
    lines = [line("electronics", 2, "50.00")]
    assert accrue_points(Decimal("100"), lines, ELECTRONICS_X2, ONE) == 200


def test_a_half_and_half_order_earns_the_weighted_multiplier() -> None:
    lines = [line("electronics", 1, "50.00"), line("books", 1, "50.00")]
    assert accrue_points(Decimal("100"), lines, ELECTRONICS_X2, ONE) == 150


def test_tier_multiplier_applies_before_rounding() -> None:
    # 99.99 x 1.5 = 149.985 -> 149 (rounding each factor first would give 148 or 150)
    assert accrue_points(Decimal("99.99"), [], DEFAULT_RULES, Decimal("1.5")) == 149


# --- result type and rounding --------------------------------------------------------------


def test_result_is_a_plain_int() -> None:
    points = accrue_points(Decimal("10.50"), [], DEFAULT_RULES, ONE)
    assert type(points) is int
    assert points == 10


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("0", 0),
        ("0.00", 0),
        ("0.99", 0),
        ("0.9999", 0),
        ("1", 1),
        ("1.00", 1),
        ("9.9999", 9),
        ("99.9999", 99),
        ("99.99999999999999999999999999999", 99),  # more digits than the default 28
        ("100.0000", 100),
        ("12345678901234567890.99", 12345678901234567890),
    ],
)
def test_rounding_is_always_down(amount: str, expected: int) -> None:
    assert accrue_points(Decimal(amount), [], DEFAULT_RULES, ONE) == expected


def test_rounding_happens_once_at_the_end() -> None:
    # 0.5 x 0.5 x 4 = 1 exactly; flooring any intermediate step would give 0.
    earning = rules(points_per_unit=Decimal("0.5"))
    assert accrue_points(Decimal("4"), [], earning, Decimal("0.5")) == 1


def test_thirds_are_exact() -> None:
    # Lines worth 1 at x2 and 2 at x1: w = (2 + 2) / 3 = 4/3; 30 x 4/3 = 40 exactly.
    # Dividing first (w = 1.333...3) would land on 39.999... and floor to 39.
    earning = rules(category_multipliers={"a": Decimal("2")})
    lines = [line("a", 1, "1"), line("b", 1, "2")]
    assert accrue_points(Decimal("30"), lines, earning, ONE) == 40


def test_just_below_a_whole_point_stays_below() -> None:
    earning = rules(category_multipliers={"a": Decimal("2")})
    lines = [line("a", 1, "1"), line("b", 1, "2")]
    assert accrue_points(Decimal("29.99"), lines, earning, ONE) == 39  # 39.9866...


# --- rate and tier -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "amount", "expected"),
    [
        ("2", "10.50", 21),
        ("0.1", "129.90", 12),
        ("0.0001", "9999", 0),
        ("0.0001", "10000", 1),
        ("1000", "0.01", 10),
        ("1.25", "7.99", 9),  # 9.9875
    ],
)
def test_points_per_unit(rate: str, amount: str, expected: int) -> None:
    earning = rules(points_per_unit=Decimal(rate))
    assert accrue_points(Decimal(amount), [], earning, ONE) == expected


@pytest.mark.parametrize(
    ("tier", "expected"),
    [("0", 0), ("1", 100), ("1.1", 110), ("1.25", 125), ("2", 200), ("0.5", 50)],
)
def test_tier_multiplier(tier: str, expected: int) -> None:
    assert accrue_points(Decimal("100"), [], DEFAULT_RULES, Decimal(tier)) == expected


def test_all_factors_multiply() -> None:
    earning = rules(points_per_unit=Decimal("2"), category_multipliers={"vip": Decimal("3")})
    lines = [line("vip", 1, "10")]
    assert accrue_points(Decimal("10"), lines, earning, Decimal("1.5")) == 90


# --- category weighting --------------------------------------------------------------------


def test_lines_only_weight_the_paid_amount() -> None:
    # The paid amount (after discounts, shipping...) earns; the lines only set the mix.
    lines = [line("electronics", 1, "500.00")]
    assert accrue_points(Decimal("80"), lines, ELECTRONICS_X2, ONE) == 160


def test_weights_use_quantity_times_unit_price() -> None:
    # electronics: 3 x 10 = 30 at x2, books: 1 x 10 = 10 at x1 -> w = 70/40 = 1.75
    lines = [line("electronics", 3, "10"), line("books", 1, "10")]
    assert accrue_points(Decimal("40"), lines, ELECTRONICS_X2, ONE) == 70


def test_unknown_categories_count_as_one() -> None:
    lines = [line("garden", 1, "10"), line("kitchen", 4, "2.50")]
    assert accrue_points(Decimal("20"), lines, ELECTRONICS_X2, ONE) == 20


def test_a_zero_multiplier_category_earns_nothing() -> None:
    earning = rules(category_multipliers={"gift-cards": Decimal("0")})
    assert accrue_points(Decimal("50"), [line("gift-cards", 1, "50")], earning, ONE) == 0
    mixed = [line("gift-cards", 1, "50"), line("books", 1, "50")]
    assert accrue_points(Decimal("100"), mixed, earning, ONE) == 50


def test_category_names_match_exactly() -> None:
    lines = [line("Electronics", 1, "10")]
    assert accrue_points(Decimal("10"), lines, ELECTRONICS_X2, ONE) == 10


def test_no_lines_means_weight_one() -> None:
    assert accrue_points(Decimal("10"), [], ELECTRONICS_X2, ONE) == 10
    assert accrue_points(Decimal("10"), (), ELECTRONICS_X2, ONE) == 10


def test_free_lines_mean_weight_one() -> None:
    lines = [line("electronics", 2, "0.00"), line("electronics", 0, "10.00")]
    assert accrue_points(Decimal("10"), lines, ELECTRONICS_X2, ONE) == 10


def test_free_lines_do_not_change_the_mix() -> None:
    lines = [line("books", 1, "10"), line("electronics", 5, "0"), line("electronics", 0, "99")]
    assert accrue_points(Decimal("10"), lines, ELECTRONICS_X2, ONE) == 10


def test_the_same_category_on_several_lines_adds_up() -> None:
    split = [line("electronics", 1, "25"), line("electronics", 1, "25"), line("books", 2, "25")]
    whole = [line("electronics", 2, "25"), line("books", 1, "50")]
    assert accrue_points(Decimal("100"), split, ELECTRONICS_X2, ONE) == 150
    assert accrue_points(Decimal("100"), whole, ELECTRONICS_X2, ONE) == 150


def test_line_order_does_not_matter() -> None:
    rng = random.Random(7)
    earning = rules(category_multipliers={"a": Decimal("2.5"), "b": Decimal("0.75")})
    lines = [
        line(rng.choice("abc"), rng.randint(0, 5), f"{rng.randint(0, 9999)}.{rng.randint(0, 99):02d}")
        for _ in range(8)
    ]
    expected = accrue_points(Decimal("321.45"), lines, earning, Decimal("1.2"))
    for _ in range(20):
        rng.shuffle(lines)
        assert accrue_points(Decimal("321.45"), lines, earning, Decimal("1.2")) == expected


def test_zero_amount_earns_nothing() -> None:
    assert accrue_points(Decimal("0"), [line("electronics", 1, "10")], ELECTRONICS_X2, ONE) == 0


def test_matches_an_exact_rational_reference() -> None:
    rng = random.Random(20240229)
    categories = ["a", "b", "c", "d"]
    for _ in range(500):
        multipliers = {c: Decimal(rng.randint(0, 400)) / 100 for c in categories[:3]}
        earning = rules(
            points_per_unit=Decimal(rng.randint(1, 5000)) / 1000, category_multipliers=multipliers
        )
        lines = [
            line(rng.choice(categories), rng.randint(0, 4), f"{rng.randint(0, 500)}.{rng.randint(0, 99):02d}")
            for _ in range(rng.randint(0, 5))
        ]
        amount = Decimal(rng.randint(0, 10**6)) / 100
        tier = Decimal(rng.randint(0, 300)) / 100
        line_total = sum((Fraction(ln.quantity) * Fraction(ln.unit_price) for ln in lines), Fraction(0))
        if line_total == 0:
            weight = Fraction(1)
        else:
            weight = (
                sum(
                    (
                        Fraction(ln.quantity)
                        * Fraction(ln.unit_price)
                        * Fraction(earning.category_multiplier(ln.category))
                        for ln in lines
                    ),
                    Fraction(0),
                )
                / line_total
            )
        exact = Fraction(amount) * Fraction(earning.points_per_unit) * Fraction(tier) * weight
        assert accrue_points(amount, lines, earning, tier) == int(exact // 1)


def test_more_money_never_earns_fewer_points() -> None:
    earning = rules(points_per_unit=Decimal("0.7"))
    previous = 0
    for cents in range(0, 5000, 7):
        points = accrue_points(Decimal(cents) / 100, [], earning, Decimal("1.3"))
        assert points >= previous
        previous = points


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [Decimal("-0.01"), Decimal("NaN"), Decimal("Infinity")])
def test_refuses_bad_amounts(amount: Decimal) -> None:
    with pytest.raises(ValueError, match="amount"):
        accrue_points(amount, [], DEFAULT_RULES, ONE)


def test_refuses_float_money() -> None:
    with pytest.raises(ValueError, match="Decimal"):
        accrue_points(129.9, [], DEFAULT_RULES, ONE)  # type: ignore[arg-type]


@pytest.mark.parametrize("tier", [Decimal("-1"), Decimal("NaN"), 1.5])
def test_refuses_bad_tier_multipliers(tier: Any) -> None:
    with pytest.raises(ValueError, match="tier_multiplier"):
        accrue_points(Decimal("10"), [], DEFAULT_RULES, tier)


def test_refuses_invalid_rules() -> None:
    with pytest.raises(ValueError, match="points_per_unit"):
        accrue_points(Decimal("10"), [], rules(points_per_unit=Decimal("-1")), ONE)
    with pytest.raises(ValueError, match="negative"):
        accrue_points(Decimal("10"), [], rules(category_multipliers={"x": Decimal("-2")}), ONE)


@pytest.mark.parametrize(
    ("quantity", "unit_price", "fragment"),
    [
        (-1, Decimal("1"), "quantity"),
        (1.5, Decimal("1"), "quantity"),
        (True, Decimal("1"), "quantity"),
        (1, Decimal("-0.01"), "unit_price"),
        (1, Decimal("NaN"), "unit_price"),
        (1, 9.99, "unit_price"),
    ],
)
def test_priced_line_refuses_bad_figures(quantity: Any, unit_price: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        PricedLine(category="books", quantity=quantity, unit_price=unit_price)


def test_priced_line_is_frozen_and_knows_its_value() -> None:
    priced = line("books", 3, "19.99")
    assert priced.value == Decimal("59.97")
    with pytest.raises(FrozenInstanceError):
        priced.quantity = 4  # type: ignore[misc]


# --- earning_schedule ----------------------------------------------------------------------


def test_without_a_return_window_points_are_available_at_once() -> None:
    paid_at = datetime(2024, 3, 10, 14, 0, tzinfo=UTC)
    assert earning_schedule(paid_at, DEFAULT_RULES) == (
        paid_at,
        datetime(2025, 3, 10, 14, 0, tzinfo=UTC),
    )


def test_return_window_delays_availability_and_expiry() -> None:
    paid_at = datetime(2024, 1, 17, 9, 30, tzinfo=UTC)
    available_at, expires_at = earning_schedule(paid_at, rules(return_window_days=14, expiry_months=1))
    assert available_at == datetime(2024, 1, 31, 9, 30, tzinfo=UTC)
    assert expires_at == datetime(2024, 2, 29, 9, 30, tzinfo=UTC)  # clamped, leap year


def test_expiry_counts_from_availability_across_a_year_end() -> None:
    paid_at = datetime(2023, 12, 20, tzinfo=UTC)
    available_at, expires_at = earning_schedule(paid_at, rules(return_window_days=30, expiry_months=12))
    assert available_at == datetime(2024, 1, 19, tzinfo=UTC)
    assert expires_at == datetime(2025, 1, 19, tzinfo=UTC)


def test_schedule_keeps_the_time_zone() -> None:
    plus_eight = timezone(timedelta(hours=8))
    paid_at = datetime(2024, 5, 31, 23, 0, tzinfo=plus_eight)
    available_at, expires_at = earning_schedule(paid_at, rules(return_window_days=0, expiry_months=1))
    assert available_at.tzinfo is plus_eight
    assert expires_at == datetime(2024, 6, 30, 23, 0, tzinfo=plus_eight)


def test_schedule_is_always_ordered() -> None:
    paid_at = datetime(2024, 1, 31, tzinfo=UTC)
    for window in (0, 1, 29, 30, 365):
        for months in (1, 6, 12, 120):
            available_at, expires_at = earning_schedule(
                paid_at, rules(return_window_days=window, expiry_months=months)
            )
            assert paid_at <= available_at < expires_at


def test_schedule_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="paid_at"):
        earning_schedule(datetime(2024, 1, 1), DEFAULT_RULES)


def test_schedule_refuses_impossible_windows() -> None:
    paid_at = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="return_window_days"):
        earning_schedule(paid_at, rules(return_window_days=-1))
    with pytest.raises(ValueError, match="expiry_months"):
        earning_schedule(paid_at, rules(expiry_months=0))
