"""Step ladders: the step reached, and every validation rule."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewards_service.domain import Step, step_for, validate_steps


def d(value: str) -> Decimal:
    return Decimal(value)


VOLUME = (Step(d("10000"), d("1")), Step(d("50000"), d("2")), Step(d("100000"), d("3")))


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        ("0", None),
        ("9999.99", None),
        ("10000", VOLUME[0]),
        ("49999.99", VOLUME[0]),
        ("50000", VOLUME[1]),
        ("100000", VOLUME[2]),
        ("9999999", VOLUME[2]),
        ("-5", None),
    ],
)
def test_step_for_is_the_highest_step_reached(x: str, expected: Step | None) -> None:
    assert step_for(VOLUME, d(x)) == expected


def test_step_for_an_empty_ladder_is_none() -> None:
    assert step_for((), d("100")) is None


def test_step_for_does_not_depend_on_the_order_given() -> None:
    assert step_for(tuple(reversed(VOLUME)), d("60000")) == VOLUME[1]


@given(
    st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=6, unique=True),
    st.integers(min_value=0, max_value=2 * 10**6),
    st.integers(min_value=0, max_value=2 * 10**6),
)
def test_step_for_is_monotone(mins: list[int], a: int, b: int) -> None:
    steps = tuple(Step(Decimal(m), Decimal(1)) for m in sorted(mins))
    low, high = sorted((a, b))
    lower, higher = step_for(steps, Decimal(low)), step_for(steps, Decimal(high))
    if lower is not None:
        assert higher is not None and higher.min >= lower.min
    if higher is not None:
        assert higher.min <= high
        assert all(s.min <= higher.min or s.min > high for s in steps)


# --- validation ------------------------------------------------------------------------------------


def test_valid_ladders() -> None:
    assert validate_steps(VOLUME, "steps", counts=False, percent=True) == []
    counts = (Step(d("12"), d("250")), Step(d("24"), d("600.50")))
    assert validate_steps(counts, "steps", counts=True, percent=False) == []
    assert validate_steps((Step(d("0.01"), d("100")),), "steps", counts=False, percent=True) == []
    assert validate_steps((Step(d("1"), d("0.0001")),), "steps", counts=True, percent=True) == []


@pytest.mark.parametrize(
    ("steps", "counts", "percent", "problem"),
    [
        ((), False, True, "steps needs at least one step"),
        (
            (Step(d("0"), d("1")),),
            False,
            True,
            "steps[0].min must be an amount above 0 with at most 2 decimals",
        ),
        (
            (Step(d("-1"), d("1")),),
            False,
            True,
            "steps[0].min must be an amount above 0 with at most 2 decimals",
        ),
        (
            (Step(d("1.001"), d("1")),),
            False,
            True,
            "steps[0].min must be an amount above 0 with at most 2 decimals",
        ),
        (
            (Step(d("NaN"), d("1")),),
            False,
            True,
            "steps[0].min must be an amount above 0 with at most 2 decimals",
        ),
        ((Step(d("0"), d("1")),), True, True, "steps[0].min must be a whole number of orders, at least 1"),
        ((Step(d("2.5"), d("1")),), True, True, "steps[0].min must be a whole number of orders, at least 1"),
        (
            (Step(d("Infinity"), d("1")),),
            True,
            True,
            "steps[0].min must be a whole number of orders, at least 1",
        ),
        (
            (Step(d("1"), d("0")),),
            False,
            True,
            "steps[0].value must be a percent above 0 and at most 100, at most 4 decimals",
        ),
        (
            (Step(d("1"), d("100.01")),),
            False,
            True,
            "steps[0].value must be a percent above 0 and at most 100, at most 4 decimals",
        ),
        (
            (Step(d("1"), d("1.00001")),),
            False,
            True,
            "steps[0].value must be a percent above 0 and at most 100, at most 4 decimals",
        ),
        (
            (Step(d("1"), d("-5")),),
            False,
            False,
            "steps[0].value must be an amount above 0 with at most 2 decimals",
        ),
        (
            (Step(d("1"), d("5.001")),),
            False,
            False,
            "steps[0].value must be an amount above 0 with at most 2 decimals",
        ),
        (
            (Step(d("100"), d("1")), Step(d("100"), d("2"))),
            False,
            True,
            "steps must be strictly ascending by min: steps[1].min 100 is not above 100",
        ),
        (
            (Step(d("100"), d("1")), Step(d("50"), d("2"))),
            False,
            True,
            "steps must be strictly ascending by min: steps[1].min 50 is not above 100",
        ),
    ],
)
def test_each_problem(steps: tuple[Step, ...], counts: bool, percent: bool, problem: str) -> None:
    assert validate_steps(steps, "steps", counts=counts, percent=percent) == [problem]


def test_a_fixed_amount_may_be_above_100() -> None:
    assert validate_steps((Step(d("1"), d("5000")),), "steps", counts=False, percent=False) == []


def test_every_problem_is_listed_with_its_place() -> None:
    steps = (Step(d("5000"), d("0")), Step(d("1000.005"), d("2")), Step(d("1000"), d("101")))
    assert validate_steps(steps, "measures[2].steps", counts=False, percent=True) == [
        "measures[2].steps[0].value must be a percent above 0 and at most 100, at most 4 decimals",
        "measures[2].steps[1].min must be an amount above 0 with at most 2 decimals",
        "measures[2].steps[2].value must be a percent above 0 and at most 100, at most 4 decimals",
        "measures[2].steps must be strictly ascending by min: measures[2].steps[1].min 1000.005 is not above 5000",
        "measures[2].steps must be strictly ascending by min: measures[2].steps[2].min 1000 is not above 1000.005",
    ]
