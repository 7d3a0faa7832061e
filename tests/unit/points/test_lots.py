"""Lots: availability, spending order, reversals, debt, expiry and the balance summary."""

import random
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from points_service.domain import (
    Balance,
    DebitPlan,
    Lot,
    Take,
    due_for_expiry,
    is_available,
    is_pending,
    plan_redemption,
    plan_reversal,
    resolve_shortfall,
    settle_debt,
    summarize,
)

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)


def lot(
    lot_id: int,
    remaining: int,
    *,
    available_days: float = -10,
    expires_days: float = 100,
) -> Lot:
    """A lot relative to NOW: available (by default) ten days ago, expiring in a hundred."""
    return Lot(
        id=lot_id,
        remaining=remaining,
        available_at=NOW + timedelta(days=available_days),
        expires_at=NOW + timedelta(days=expires_days),
    )


def takes(plan: DebitPlan) -> list[tuple[int, int]]:
    return [(take.lot_id, take.points) for take in plan.takes]


# --- values --------------------------------------------------------------------------------


def test_values_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        lot(1, 10).remaining = 5  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        Take(lot_id=1, points=1).points = 2  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        DebitPlan(takes=(), shortfall=0).shortfall = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"remaining": -1}, "remaining"),
        ({"id": -1}, "lot id"),
        ({"available_at": datetime(2024, 1, 1)}, "available_at"),
        ({"expires_at": datetime(2025, 1, 1)}, "expires_at"),
    ],
)
def test_lot_refuses_bad_figures(changes: dict[str, Any], fragment: str) -> None:
    fields: dict[str, Any] = {
        "id": 1,
        "remaining": 10,
        "available_at": NOW,
        "expires_at": NOW + timedelta(days=1),
    }
    with pytest.raises(ValueError, match=fragment):
        Lot(**(fields | changes))


def test_take_needs_positive_points_and_plan_a_non_negative_shortfall() -> None:
    with pytest.raises(ValueError, match="points"):
        Take(lot_id=1, points=0)
    with pytest.raises(ValueError, match="shortfall"):
        DebitPlan(takes=(), shortfall=-1)


def test_plan_reports_what_it_covers() -> None:
    plan = DebitPlan(takes=(Take(1, 3), Take(2, 4)), shortfall=5)
    assert plan.covered == 7


# --- is_available / is_pending -------------------------------------------------------------


def test_a_vested_unexpired_lot_is_available() -> None:
    assert is_available(lot(1, 10), NOW)
    assert not is_pending(lot(1, 10), NOW)


def test_a_lot_becomes_available_exactly_at_available_at() -> None:
    vesting = lot(1, 10, available_days=0)
    assert is_available(vesting, NOW)
    assert not is_pending(vesting, NOW)
    just_before = NOW - timedelta(microseconds=1)
    assert not is_available(vesting, just_before)
    assert is_pending(vesting, just_before)


def test_a_lot_expiring_exactly_now_is_gone() -> None:
    expiring = lot(1, 10, expires_days=0)
    assert not is_available(expiring, NOW)
    assert not is_pending(expiring, NOW)
    assert is_available(expiring, NOW - timedelta(microseconds=1))


def test_an_empty_lot_is_neither_available_nor_pending() -> None:
    assert not is_available(lot(1, 0), NOW)
    assert not is_pending(lot(1, 0, available_days=5), NOW)


def test_a_future_lot_is_pending() -> None:
    future = lot(1, 10, available_days=5)
    assert is_pending(future, NOW)
    assert not is_available(future, NOW)


def test_time_zones_are_compared_as_instants() -> None:
    plus_eight = timezone(timedelta(hours=8))
    vesting = lot(1, 10, available_days=0)
    same_instant_elsewhere = NOW.astimezone(plus_eight)
    assert is_available(vesting, same_instant_elsewhere)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="now"):
        is_available(lot(1, 10), datetime(2024, 6, 15))
    with pytest.raises(ValueError, match="now"):
        is_pending(lot(1, 10), datetime(2024, 6, 15))


# --- plan_redemption -----------------------------------------------------------------------


def test_redemption_spends_the_soonest_expiring_lot_first() -> None:
    lots = [lot(1, 50, expires_days=90), lot(2, 50, expires_days=30), lot(3, 50, expires_days=60)]
    plan = plan_redemption(lots, 80, NOW)
    assert takes(plan) == [(2, 50), (3, 30)]
    assert plan.shortfall == 0


def test_redemption_breaks_expiry_ties_by_lowest_lot_id() -> None:
    lots = [lot(9, 10, expires_days=30), lot(4, 10, expires_days=30), lot(7, 10, expires_days=30)]
    assert takes(plan_redemption(lots, 15, NOW)) == [(4, 10), (7, 5)]


def test_redemption_takes_only_what_is_needed() -> None:
    plan = plan_redemption([lot(1, 100), lot(2, 100, expires_days=200)], 1, NOW)
    assert takes(plan) == [(1, 1)]
    assert plan.covered == 1


def test_redemption_skips_pending_expired_and_empty_lots() -> None:
    lots = [
        lot(1, 10, available_days=1),  # pending
        lot(2, 10, expires_days=0),  # expired exactly now
        lot(3, 10, expires_days=-5),  # expired
        lot(4, 0, expires_days=1),  # empty
        lot(5, 10, expires_days=50),
    ]
    plan = plan_redemption(lots, 25, NOW)
    assert takes(plan) == [(5, 10)]
    assert plan.shortfall == 15


def test_redemption_with_no_lots_is_all_shortfall() -> None:
    plan = plan_redemption([], 40, NOW)
    assert plan == DebitPlan(takes=(), shortfall=40)


def test_redemption_can_empty_every_lot_exactly() -> None:
    plan = plan_redemption([lot(1, 10), lot(2, 20, expires_days=101)], 30, NOW)
    assert takes(plan) == [(1, 10), (2, 20)]
    assert plan.shortfall == 0


def test_redemption_does_not_change_the_lots() -> None:
    lots = [lot(1, 10)]
    plan_redemption(lots, 5, NOW)
    assert lots == [lot(1, 10)]


@pytest.mark.parametrize("points", [0, -1, 1.5, True])
def test_redemption_needs_a_positive_whole_number_of_points(points: Any) -> None:
    with pytest.raises(ValueError, match="points"):
        plan_redemption([lot(1, 10)], points, NOW)


def test_redemption_refuses_naive_now_and_duplicate_lots() -> None:
    with pytest.raises(ValueError, match="now"):
        plan_redemption([lot(1, 10)], 5, datetime(2024, 6, 15))
    with pytest.raises(ValueError, match="more than once"):
        plan_redemption([lot(1, 10), lot(1, 10)], 5, NOW)


def test_redemption_plans_are_consistent_for_random_wallets() -> None:
    rng = random.Random(42)
    for _ in range(300):
        lots = [
            lot(
                lot_id,
                rng.randint(0, 50),
                available_days=rng.choice([-30, -1, 0, 1, 10]),
                expires_days=rng.choice([-1, 0, 1, 7, 7, 30, 365]),
            )
            for lot_id in rng.sample(range(1, 1000), rng.randint(0, 8))
        ]
        points = rng.randint(1, 200)
        plan = plan_redemption(lots, points, NOW)
        spendable = {x.id: x for x in lots if is_available(x, NOW)}
        total_spendable = sum(x.remaining for x in spendable.values())
        assert plan.covered + plan.shortfall == points
        assert plan.covered == min(points, total_spendable)
        assert len({t.lot_id for t in plan.takes}) == len(plan.takes)
        for take in plan.takes:
            assert 0 < take.points <= spendable[take.lot_id].remaining
        # Every lot but the last is drained, and they come in spending order.
        for take in plan.takes[:-1]:
            assert take.points == spendable[take.lot_id].remaining
        order = [(spendable[t.lot_id].expires_at, t.lot_id) for t in plan.takes]
        assert order == sorted(order)
        # No skipped lot expires before a lot that was used.
        if plan.takes:
            last = order[-1]
            used = {t.lot_id for t in plan.takes}
            assert all((x.expires_at, x.id) > last for x in spendable.values() if x.id not in used)


# --- plan_reversal -------------------------------------------------------------------------


def test_reversal_cancels_pending_points_of_the_order_first() -> None:
    order_lot = lot(5, 100, available_days=10)  # still inside the return window
    others = [lot(1, 500, expires_days=1)]
    plan = plan_reversal(order_lot, others, 60, NOW)
    assert takes(plan) == [(5, 60)]
    assert plan.shortfall == 0


def test_reversal_uses_the_available_order_lot_before_sooner_expiring_lots() -> None:
    order_lot = lot(5, 100, expires_days=300)
    others = [lot(1, 500, expires_days=1)]
    assert takes(plan_reversal(order_lot, others, 30, NOW)) == [(5, 30)]


def test_reversal_continues_with_other_available_lots_in_spending_order() -> None:
    order_lot = lot(5, 20, available_days=3)
    others = [
        lot(2, 10, expires_days=60),
        lot(1, 10, expires_days=30),
        lot(3, 10, available_days=2),  # another order's pending points are left alone
    ]
    plan = plan_reversal(order_lot, others, 35, NOW)
    assert takes(plan) == [(5, 20), (1, 10), (2, 5)]
    assert plan.shortfall == 0


def test_reversal_skips_an_expired_order_lot() -> None:
    expired = lot(5, 100, expires_days=0)
    plan = plan_reversal(expired, [lot(1, 10)], 30, NOW)
    assert takes(plan) == [(1, 10)]
    assert plan.shortfall == 20


def test_reversal_skips_a_spent_order_lot() -> None:
    spent = lot(5, 0)
    assert takes(plan_reversal(spent, [lot(1, 10)], 5, NOW)) == [(1, 5)]


def test_reversal_without_an_order_lot_is_a_redemption_order() -> None:
    others = [lot(1, 10, expires_days=60), lot(2, 10, expires_days=30)]
    assert plan_reversal(None, others, 15, NOW) == plan_redemption(others, 15, NOW)


def test_reversal_reports_the_shortfall() -> None:
    plan = plan_reversal(lot(5, 10, available_days=1), [lot(1, 5)], 40, NOW)
    assert takes(plan) == [(5, 10), (1, 5)]
    assert plan.shortfall == 25


def test_reversal_never_takes_the_order_lot_twice() -> None:
    order_lot = lot(5, 10)
    plan = plan_reversal(order_lot, [order_lot, lot(1, 10)], 15, NOW)
    assert takes(plan) == [(5, 10), (1, 5)]


def test_reversal_with_nothing_anywhere_is_all_shortfall() -> None:
    assert plan_reversal(None, [], 7, NOW) == DebitPlan(takes=(), shortfall=7)


@pytest.mark.parametrize("points", [0, -3])
def test_reversal_needs_positive_points(points: int) -> None:
    with pytest.raises(ValueError, match="points"):
        plan_reversal(lot(5, 10), [], points, NOW)


def test_reversal_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="now"):
        plan_reversal(lot(5, 10), [], 1, datetime(2024, 6, 15))


# --- settle_debt / resolve_shortfall -------------------------------------------------------


@pytest.mark.parametrize(
    ("debt", "earned", "expected"),
    [
        (0, 100, (0, 100)),  # no debt: the whole earning becomes a lot
        (30, 100, (30, 70)),  # debt smaller than the earning
        (100, 100, (100, 0)),  # exactly repaid
        (250, 100, (100, 0)),  # debt larger: all of it repays, 150 still owed
        (50, 0, (0, 0)),
        (0, 0, (0, 0)),
    ],
)
def test_new_earnings_repay_debt_first(debt: int, earned: int, expected: tuple[int, int]) -> None:
    assert settle_debt(debt, earned) == expected


def test_settling_conserves_points() -> None:
    for debt in range(0, 40):
        for earned in range(0, 40):
            repaid, left = settle_debt(debt, earned)
            assert repaid + left == earned
            assert repaid <= debt


@pytest.mark.parametrize(("debt", "earned"), [(-1, 10), (10, -1), (1.5, 10)])
def test_settle_debt_refuses_bad_figures(debt: Any, earned: Any) -> None:
    with pytest.raises(ValueError):
        settle_debt(debt, earned)


def test_shortfall_becomes_debt_or_is_forgiven() -> None:
    assert resolve_shortfall(25, "debt") == 25
    assert resolve_shortfall(25, "forgive") == 0
    assert resolve_shortfall(0, "debt") == 0


def test_resolve_shortfall_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="shortfall"):
        resolve_shortfall(-1, "debt")
    with pytest.raises(ValueError, match="debt policy"):
        resolve_shortfall(5, "ignore")  # type: ignore[arg-type]


# --- due_for_expiry ------------------------------------------------------------------------


def test_lots_expiring_exactly_now_are_due() -> None:
    assert due_for_expiry([lot(1, 10, expires_days=0)], NOW) == [lot(1, 10, expires_days=0)]


def test_due_for_expiry_lists_oldest_expiry_first_then_lowest_id() -> None:
    lots = [
        lot(3, 10, expires_days=-1),
        lot(1, 10, expires_days=1),  # not yet
        lot(2, 10, expires_days=-5),
        lot(5, 10, expires_days=-1),
        lot(4, 0, expires_days=-9),  # empty, nothing to expire
        lot(6, 7, available_days=-400, expires_days=0),
    ]
    assert [x.id for x in due_for_expiry(lots, NOW)] == [2, 3, 5, 6]


def test_pending_lots_past_expiry_are_still_due() -> None:
    # A lot that expired before it ever vested still has to be cleared.
    odd = lot(1, 10, available_days=5, expires_days=-1)
    assert due_for_expiry([odd], NOW) == [odd]


def test_nothing_due() -> None:
    assert due_for_expiry([], NOW) == []
    assert due_for_expiry([lot(1, 10)], NOW) == []


def test_due_for_expiry_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="now"):
        due_for_expiry([], datetime(2024, 6, 15))


# --- summarize -----------------------------------------------------------------------------


def test_empty_wallet() -> None:
    assert summarize([], 0, NOW, 30) == Balance(available=0, pending=0, expiring_soon=0, next_expiry_at=None)


def test_balance_splits_available_pending_and_expiring_soon() -> None:
    lots = [
        lot(1, 100, expires_days=10),  # available, expiring soon
        lot(2, 50, expires_days=30),  # available, expires exactly at the edge of "soon"
        lot(3, 40, expires_days=31),  # available, not soon
        lot(4, 25, available_days=7, expires_days=20),  # pending
        lot(5, 60, expires_days=0),  # expired exactly now
        lot(6, 0, expires_days=5),  # spent
    ]
    assert summarize(lots, 0, NOW, 30) == Balance(
        available=190,
        pending=25,
        expiring_soon=150,
        next_expiry_at=NOW + timedelta(days=10),
    )


def test_debt_reduces_the_available_balance_and_can_make_it_negative() -> None:
    lots = [lot(1, 30)]
    assert summarize(lots, 20, NOW, 30).available == 10
    assert summarize(lots, 50, NOW, 30).available == -20
    assert summarize([], 15, NOW, 30).available == -15


def test_debt_does_not_touch_pending_or_expiring_figures() -> None:
    lots = [lot(1, 30, expires_days=5), lot(2, 10, available_days=1)]
    balance = summarize(lots, 100, NOW, 30)
    assert (balance.pending, balance.expiring_soon) == (10, 30)


def test_next_expiry_ignores_pending_expired_and_spent_lots() -> None:
    lots = [
        lot(1, 10, available_days=1, expires_days=2),  # pending
        lot(2, 10, expires_days=-1),  # expired
        lot(3, 0, expires_days=3),  # spent
        lot(4, 10, expires_days=40),
    ]
    assert summarize(lots, 0, NOW, 30).next_expiry_at == NOW + timedelta(days=40)


def test_only_pending_lots_have_no_next_expiry() -> None:
    balance = summarize([lot(1, 10, available_days=3)], 0, NOW, 30)
    assert balance == Balance(available=0, pending=10, expiring_soon=0, next_expiry_at=None)


def test_soon_days_zero_counts_nothing_as_expiring_soon() -> None:
    assert summarize([lot(1, 10, expires_days=0.001)], 0, NOW, 0).expiring_soon == 0


def test_balance_agrees_with_the_other_rules_on_random_wallets() -> None:
    rng = random.Random(5)
    for _ in range(300):
        lots = [
            lot(
                lot_id,
                rng.randint(0, 50),
                available_days=rng.choice([-30, 0, 2]),
                expires_days=rng.choice([-1, 0, 3, 30, 31, 400]),
            )
            for lot_id in range(rng.randint(0, 8))
        ]
        debt = rng.randint(0, 60)
        balance = summarize(lots, debt, NOW, 30)
        spendable = sum(x.remaining for x in lots if is_available(x, NOW))
        assert balance.available == spendable - debt
        assert 0 <= balance.expiring_soon <= spendable
        if spendable:
            plan = plan_redemption(lots, spendable, NOW)
            assert plan.shortfall == 0
            assert plan.covered == spendable


@pytest.mark.parametrize(
    ("debt", "soon_days", "now", "fragment"),
    [
        (-1, 30, NOW, "debt"),
        (0, -1, NOW, "soon_days"),
        (0, 30, datetime(2024, 6, 15), "now"),
    ],
)
def test_summarize_refuses_bad_input(debt: int, soon_days: int, now: datetime, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        summarize([], debt, now, soon_days)
