"""Earning rules: defaults, validation, and calendar-month arithmetic."""

from dataclasses import FrozenInstanceError, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from points_service.domain import DEFAULT_RULES, EarningRules, add_months, validate_rules
from points_service.domain.rules import decimal_places


def rules(**changes: Any) -> EarningRules:
    return replace(DEFAULT_RULES, **changes)


# --- defaults and immutability -------------------------------------------------------------


def test_default_rules_match_the_documented_defaults() -> None:
    assert DEFAULT_RULES.version == 1
    assert DEFAULT_RULES.points_per_unit == Decimal("1")
    assert dict(DEFAULT_RULES.category_multipliers) == {}
    assert DEFAULT_RULES.return_window_days == 0
    assert DEFAULT_RULES.expiry_months == 12
    assert DEFAULT_RULES.debt_policy == "debt"
    assert DEFAULT_RULES.expiring_soon_days == 30


def test_constructor_defaults_equal_default_rules() -> None:
    assert EarningRules(version=1) == DEFAULT_RULES


def test_default_rules_are_valid() -> None:
    assert validate_rules(DEFAULT_RULES) == []


def test_rules_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        DEFAULT_RULES.version = 2  # type: ignore[misc]


def test_category_multipliers_are_copied_and_read_only() -> None:
    source = {"electronics": Decimal("2")}
    earning = EarningRules(version=2, category_multipliers=source)
    source["electronics"] = Decimal("5")
    source["toys"] = Decimal("3")
    assert dict(earning.category_multipliers) == {"electronics": Decimal("2")}
    with pytest.raises(TypeError):
        earning.category_multipliers["toys"] = Decimal("3")  # type: ignore[index]


def test_rules_are_hashable_and_compare_by_value() -> None:
    a = EarningRules(version=2, category_multipliers={"a": Decimal("2")})
    b = EarningRules(version=2, category_multipliers={"a": Decimal("2")})
    c = EarningRules(version=2, category_multipliers={"a": Decimal("3")})
    assert a == b
    assert a != c
    assert hash(a) == hash(b)


def test_missing_category_earns_at_one() -> None:
    earning = rules(category_multipliers={"electronics": Decimal("2")})
    assert earning.category_multiplier("electronics") == Decimal("2")
    assert earning.category_multiplier("books") == Decimal("1")


# --- validate_rules ------------------------------------------------------------------------


def test_a_fully_customised_valid_rule_set_has_no_problems() -> None:
    earning = EarningRules(
        version=7,
        points_per_unit=Decimal("2.5"),
        category_multipliers={"electronics": Decimal("2"), "gift-cards": Decimal("0")},
        return_window_days=14,
        expiry_months=24,
        debt_policy="forgive",
        expiring_soon_days=60,
    )
    assert validate_rules(earning) == []


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"version": 0}, "version"),
        ({"version": -1}, "version"),
        ({"version": True}, "version"),
        ({"points_per_unit": Decimal("0")}, "points_per_unit"),
        ({"points_per_unit": Decimal("-1")}, "points_per_unit"),
        ({"points_per_unit": Decimal("1000.0001")}, "points_per_unit"),
        ({"points_per_unit": Decimal("0.00001")}, "decimal places"),
        ({"points_per_unit": Decimal("NaN")}, "finite"),
        ({"points_per_unit": Decimal("Infinity")}, "finite"),
        ({"points_per_unit": 1.5}, "Decimal"),
        ({"category_multipliers": {"toys": Decimal("-0.5")}}, "must not be negative"),
        ({"category_multipliers": {"toys": Decimal("100.01")}}, "at most"),
        ({"category_multipliers": {"toys": Decimal("1.23456")}}, "decimal places"),
        ({"category_multipliers": {"toys": Decimal("sNaN")}}, "finite"),
        ({"category_multipliers": {"toys": 2}}, "Decimal"),
        ({"category_multipliers": {"": Decimal("2")}}, "category names"),
        ({"category_multipliers": {"   ": Decimal("2")}}, "category names"),
        ({"return_window_days": -1}, "return_window_days"),
        ({"return_window_days": 366}, "return_window_days"),
        ({"return_window_days": 1.0}, "return_window_days"),
        ({"expiry_months": 0}, "expiry_months"),
        ({"expiry_months": 121}, "expiry_months"),
        ({"debt_policy": "ignore"}, "debt_policy"),
        ({"expiring_soon_days": 0}, "expiring_soon_days"),
        ({"expiring_soon_days": 366}, "expiring_soon_days"),
    ],
)
def test_each_problem_is_reported(changes: dict[str, Any], fragment: str) -> None:
    problems = validate_rules(rules(**changes))
    assert len(problems) == 1, problems
    assert fragment in problems[0]


@pytest.mark.parametrize(
    "changes",
    [
        {"points_per_unit": Decimal("1000")},
        {"points_per_unit": Decimal("0.0001")},
        {"points_per_unit": Decimal("1.50000000")},  # trailing zeros are not extra precision
        {"category_multipliers": {"toys": Decimal("0")}},
        {"category_multipliers": {"toys": Decimal("100")}},
        {"category_multipliers": {"toys": Decimal("1.2345")}},
        {"return_window_days": 0},
        {"return_window_days": 365},
        {"expiry_months": 1},
        {"expiry_months": 120},
        {"expiring_soon_days": 1},
        {"expiring_soon_days": 365},
    ],
)
def test_boundaries_are_accepted(changes: dict[str, Any]) -> None:
    assert validate_rules(rules(**changes)) == []


def test_all_problems_are_reported_together() -> None:
    broken = EarningRules(
        version=0,
        points_per_unit=Decimal("-1"),
        category_multipliers={"a": Decimal("-1"), "b": Decimal("-2")},
        return_window_days=400,
        expiry_months=0,
        debt_policy="maybe",  # type: ignore[arg-type]
        expiring_soon_days=0,
    )
    problems = validate_rules(broken)
    assert len(problems) == 8
    assert any("'a'" in problem for problem in problems)
    assert any("'b'" in problem for problem in problems)


def test_problems_name_the_offending_figure() -> None:
    (problem,) = validate_rules(rules(return_window_days=400))
    assert "400" in problem
    assert "365" in problem


@pytest.mark.parametrize(
    ("value", "places"),
    [
        ("1", 0),
        ("100", 0),
        ("1E+2", 0),
        ("0", 0),
        ("0.000", 0),
        ("1.50000", 1),
        ("0.0001", 4),
        ("0.00010", 4),
        ("0.00001", 5),
        ("-2.25", 2),
        ("1.00000000000000000000000000000000001", 35),
    ],
)
def test_decimal_places_ignore_trailing_zeros(value: str, places: int) -> None:
    assert decimal_places(Decimal(value)) == places


# --- add_months ----------------------------------------------------------------------------


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (utc(2024, 1, 15, 10, 30), 1, utc(2024, 2, 15, 10, 30)),
        (utc(2023, 1, 31), 1, utc(2023, 2, 28)),
        (utc(2024, 1, 31), 1, utc(2024, 2, 29)),  # leap year
        (utc(2100, 1, 31), 1, utc(2100, 2, 28)),  # century, not a leap year
        (utc(2000, 1, 31), 1, utc(2000, 2, 29)),  # 400-year rule: a leap year
        (utc(2024, 2, 29), 12, utc(2025, 2, 28)),
        (utc(2024, 2, 29), 48, utc(2028, 2, 29)),
        (utc(2024, 3, 31), 1, utc(2024, 4, 30)),
        (utc(2024, 8, 31), 1, utc(2024, 9, 30)),
        (utc(2024, 12, 31), 2, utc(2025, 2, 28)),
        (utc(2024, 11, 30), 1, utc(2024, 12, 30)),
        (utc(2024, 12, 15), 1, utc(2025, 1, 15)),
        (utc(2024, 1, 1), 12, utc(2025, 1, 1)),
        (utc(2024, 1, 1), 120, utc(2034, 1, 1)),
        (utc(2024, 5, 31, 23, 59, 59), 0, utc(2024, 5, 31, 23, 59, 59)),
        (utc(2024, 3, 31), -1, utc(2024, 2, 29)),
        (utc(2024, 1, 15), -1, utc(2023, 12, 15)),
        (utc(2024, 1, 31), -13, utc(2022, 12, 31)),
    ],
)
def test_add_months(start: datetime, months: int, expected: datetime) -> None:
    assert add_months(start, months) == expected


def test_add_months_keeps_microseconds_and_timezone() -> None:
    plus_eight = timezone(timedelta(hours=8))
    start = datetime(2024, 1, 31, 23, 59, 59, 999_999, tzinfo=plus_eight)
    result = add_months(start, 1)
    assert result == datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=plus_eight)
    assert result.tzinfo is plus_eight


def test_add_months_keeps_wall_clock_time_in_a_named_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    start = datetime(2024, 1, 15, 12, 0, tzinfo=paris)  # winter time, UTC+1
    result = add_months(start, 6)  # summer time, UTC+2
    assert result.tzinfo is paris
    assert (result.month, result.day, result.hour) == (7, 15, 12)


def test_add_months_keeps_utc() -> None:
    assert add_months(utc(2024, 1, 1), 1).tzinfo is UTC


def test_add_months_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add_months(datetime(2024, 1, 31), 1)


def test_add_months_refuses_fractional_months() -> None:
    with pytest.raises(ValueError, match="whole number"):
        add_months(utc(2024, 1, 31), 1.5)  # type: ignore[arg-type]


def test_add_months_refuses_to_leave_the_calendar() -> None:
    with pytest.raises(ValueError, match="out of the calendar"):
        add_months(utc(9999, 12, 1), 1)
    with pytest.raises(ValueError, match="out of the calendar"):
        add_months(utc(1, 1, 1), -1)


def test_add_months_round_trips_when_no_day_is_clamped() -> None:
    start = utc(2020, 1, 28, 6)
    for months in range(-60, 61):
        assert add_months(add_months(start, months), -months) == start


def test_add_months_never_overflows_into_the_next_month() -> None:
    for day in range(28, 32):
        start = utc(2023, 1, day)
        for months in range(0, 25):
            result = add_months(start, months)
            assert result.month == (1 + months - 1) % 12 + 1
            assert result.day <= day
