"""Budget arithmetic: all-or-nothing debits, never past the cap or a member's cap; spend, release, burn."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewards_service.domain import (
    Budget,
    BudgetState,
    Debit,
    Schedule,
    burn_by_cycle,
    debit,
    release,
    remaining,
    spend,
)


def d(value: str) -> Decimal:
    return Decimal(value)


BUDGET = Budget("EUR", d("10000"), per_member_cap=d("1500"), point_value=d("0.01"))
EMPTY = BudgetState()


def test_a_debit_commits_the_cost() -> None:
    assert debit(BUDGET, EMPTY, d("0"), d("1000")) == Debit(True, None, BudgetState(d("1000"), d("0")))
    state = BudgetState(d("2000"), d("3000"))
    assert debit(BUDGET, state, d("200"), d("500.50")) == Debit(
        True, None, BudgetState(d("2500.50"), d("3000"))
    )


def test_a_debit_may_use_the_budget_exactly() -> None:
    state = BudgetState(d("4000"), d("5000"))
    result = debit(BUDGET, state, d("0"), d("1000"))
    assert result.ok and remaining(BUDGET, result.new_state) == 0


def test_a_debit_past_the_cap_is_refused_whole() -> None:
    state = BudgetState(d("4000"), d("5000"))
    assert debit(BUDGET, state, d("0"), d("1000.01")) == Debit(False, "budget-exhausted", state)
    assert debit(BUDGET, BudgetState(d("0"), d("10000")), d("0"), d("0.01")) == Debit(
        False, "budget-exhausted", BudgetState(d("0"), d("10000"))
    )


def test_a_debit_past_the_member_cap_is_refused_whole() -> None:
    assert debit(BUDGET, EMPTY, d("1000"), d("500")).ok is True
    assert debit(BUDGET, EMPTY, d("1000"), d("500.01")) == Debit(False, "member-cap-reached", EMPTY)


def test_the_program_cap_is_checked_before_the_member_cap() -> None:
    state = BudgetState(d("9900"), d("0"))
    assert debit(BUDGET, state, d("1500"), d("200")).reason == "budget-exhausted"


def test_without_a_member_cap_only_the_program_cap_counts() -> None:
    budget = Budget("EUR", d("10000"))
    assert debit(budget, EMPTY, d("9000"), d("10000")).ok is True


def test_a_zero_cost_always_fits() -> None:
    full = BudgetState(d("0"), d("10000"))
    assert debit(BUDGET, full, d("1500"), d("0")) == Debit(True, None, full)


@pytest.mark.parametrize("cost", ["-1", "NaN", "Infinity"])
def test_a_negative_or_odd_cost_is_an_error(cost: str) -> None:
    with pytest.raises(ValueError, match="cost"):
        debit(BUDGET, EMPTY, d("0"), d(cost))


def test_spend_moves_committed_to_spent_and_release_returns_it() -> None:
    state = BudgetState(d("1000"), d("200"))
    assert spend(state, d("300")) == BudgetState(d("700"), d("500"))
    assert release(state, d("300")) == BudgetState(d("700"), d("200"))
    assert remaining(BUDGET, release(state, d("1000"))) == d("9800")
    assert remaining(BUDGET, spend(state, d("1000"))) == d("8800")
    with pytest.raises(ValueError, match="only 1000 is committed"):
        spend(state, d("1000.01"))
    with pytest.raises(ValueError, match="only 1000 is committed"):
        release(state, d("1000.01"))


def test_remaining_and_used() -> None:
    state = BudgetState(d("1234.5"), d("765.5"))
    assert state.used == d("2000.0")
    assert remaining(BUDGET, state) == d("8000.0")


@given(
    st.lists(st.tuples(st.decimals(min_value=0, max_value=3000, places=2), st.integers(0, 9)), max_size=60)
)
def test_debits_never_exceed_the_cap_or_a_member_cap(requests: list[tuple[Decimal, int]]) -> None:
    state = EMPTY
    given_to: dict[int, Decimal] = {}
    for cost, member in requests:
        before = given_to.get(member, Decimal(0))
        result = debit(BUDGET, state, before, cost)
        if result.ok:
            given_to[member] = before + cost
            assert result.new_state.used == state.used + cost
        else:
            assert result.new_state == state
            assert state.used + cost > BUDGET.cap or before + cost > d("1500")
        state = result.new_state
        assert state.used <= BUDGET.cap
        assert all(total <= d("1500") for total in given_to.values())
    assert state.used == sum(given_to.values(), Decimal(0))


def test_burn_by_cycle() -> None:
    schedule = Schedule(datetime(2026, 1, 1, tzinfo=UTC), None, "quarter")
    debits = [
        (datetime(2026, 5, 1, tzinfo=UTC), d("200")),
        (datetime(2026, 1, 5, tzinfo=UTC), d("100")),
        (datetime(2026, 3, 31, 23, 59, tzinfo=UTC), d("50.50")),
        (datetime(2026, 4, 1, tzinfo=UTC), d("10")),
        (datetime(2026, 11, 1, tzinfo=UTC), d("1")),
    ]
    burn = burn_by_cycle(schedule, debits)
    assert burn == {"2026-Q1": d("150.50"), "2026-Q2": d("210"), "2026-Q4": d("1")}
    assert list(burn) == ["2026-Q1", "2026-Q2", "2026-Q4"]
    assert burn_by_cycle(schedule, []) == {}
    with pytest.raises(ValueError, match="outside the program's schedule"):
        burn_by_cycle(schedule, [(datetime(2025, 12, 31, tzinfo=UTC), d("1"))])
