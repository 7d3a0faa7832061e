"""A program's dry run on history: gifts once per cycle, rebates of closed cycles, ladder discounts
on the next cycle, one running budget, the control group held out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rewards_service.domain import (
    Budget,
    LadderDiscount,
    Program,
    Rebate,
    Schedule,
    Step,
    ThresholdGift,
    TierUpgradeGift,
    holdout,
)
from rewards_service.domain.simulation import MemberHistory, PastOrder, simulate

D = Decimal
Q1 = datetime(2026, 1, 1, tzinfo=UTC)
Q2 = datetime(2026, 4, 1, tzinfo=UTC)
NOW = datetime(2026, 7, 15, tzinfo=UTC)
GIFT = ThresholdGift("big", "order", D(1000), "mug")
REBATE = Rebate("volume", "volume", (Step(D(1000), D(2)),), "points")
LADDER = LadderDiscount("ladder", "volume", (Step(D(1000), D(5)),))


def program(*measures: object, cap: str = "100000", share: str = "0") -> Program:
    return Program(
        name="p",
        objective="o",
        schedule=Schedule(Q1, None, "quarter"),
        budget=Budget("EUR", D(cap), None, D("0.01")),
        measures=tuple(measures),  # type: ignore[arg-type]
        control_share=D(share),
    )


def member(name: str, *orders: tuple[datetime, str, str]) -> MemberHistory:
    return MemberHistory(
        name,
        None,
        tuple(PastOrder(f"{name}-{i}", at, D(paid), D(net)) for i, (at, paid, net) in enumerate(orders)),
    )


def test_a_gift_once_per_cycle_and_a_rebate_per_closed_cycle() -> None:
    history = [
        member(
            "A",
            (Q1 + timedelta(days=1), "1500", "1500"),
            (Q1 + timedelta(days=2), "2000", "1000"),
            (Q2, "1200", "1200"),
        )
    ]
    result = simulate("p1", program(GIFT, REBATE), history, {"mug": D("25")}, NOW)
    assert dict(result.rewards) == {"gift": 2, "rebate-points": 2}
    # Q1 net 2500 → 50.00 (5000 points), Q2 net 1200 → 24.00 (2400 points); Q3 is not closed
    assert result.cost == {"gift": D("50"), "rebate-points": D("74.00")}
    assert result.points == 7400
    assert result.burn == {"2026-Q1": D("75.00"), "2026-Q2": D("49.00")}
    assert (result.reached, result.held_out, result.used) == (1, 0, D("124.00"))


def test_a_ladder_discount_is_priced_on_the_next_cycles_orders() -> None:
    history = [member("A", (Q1, "1000", "1000"), (Q2 + timedelta(days=1), "400", "400"))]
    result = simulate("p1", program(LADDER), history, {}, NOW)
    assert result.cost == {"discount": D("20.00")}
    assert result.burn == {"2026-Q2": D("20.00")}


def test_the_budget_refuses_in_time_order() -> None:
    history = [member(f"M{i}", (Q1 + timedelta(hours=i), "1000", "1000")) for i in range(5)]
    result = simulate("p1", program(GIFT, cap="60"), history, {"mug": D("25")}, NOW)
    assert (result.rewards["gift"], result.refusals["budget-exhausted"], result.used) == (2, 3, D("50"))


def test_control_members_are_counted_and_get_nothing() -> None:
    names = [f"M{i}" for i in range(40)]
    history = [member(n, (Q1, "1000", "1000")) for n in names]
    result = simulate("p1", program(GIFT, share="0.5"), history, {"mug": D("1")}, NOW)
    control = sum(holdout("p1", n, D("0.5")) for n in names)
    assert (result.held_out, result.reached, result.rewards["gift"]) == (control, 40 - control, 40 - control)


def test_what_history_cannot_tell_is_reported() -> None:
    result = simulate("p1", program(TierUpgradeGift("up")), [], {}, NOW)
    assert result.not_simulated == ["up: upgrade gifts need the tier changes over time, which are not kept"]
    assert result.rewards == {}
