"""A rebate's statement: this cycle's rebate, adjustments of earlier cycles, a shortfall carried."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rewards_service.domain import Rebate, Step
from rewards_service.domain.settlement import Adjustment, EarlierCycle, settle

D = Decimal
VOLUME = Rebate("volume", "volume", (Step(D(1000), D(2)), Step(D(5000), D(3))), "points")


def test_a_cycle_pays_its_step_of_its_net_spend() -> None:
    s = settle(VOLUME, D("6500"), 2, None)
    assert (s.due.amount, s.adjustments, s.payable, s.carried) == (D("195.00"), (), D("195.00"), D(0))


def test_below_the_first_step_nothing_is_due() -> None:
    s = settle(VOLUME, D("999.99"), 3, None)
    assert (s.due.step, s.payable, s.carried) == (None, D(0), D(0))


def test_a_late_refund_of_an_earlier_cycle_is_an_adjustment_now() -> None:
    earlier = [EarlierCycle("2027-Q1", D("5500"), 2, None, paid=D("195.00"))]  # earns 165 now
    s = settle(VOLUME, D("2000"), 1, None, earlier)
    assert s.adjustments == (Adjustment("2027-Q1", D("-30.00")),)
    assert (s.due.amount, s.payable, s.carried, s.total) == (D("40.00"), D("10.00"), D(0), D("10.00"))


def test_an_earlier_cycle_paid_in_full_adjusts_nothing() -> None:
    earlier = [EarlierCycle("2027-Q1", D("6500"), 2, None, paid=D("195.00"))]
    assert settle(VOLUME, D("0"), 0, None, earlier).adjustments == ()


def test_a_shortfall_is_carried_never_clawed_back_then_brought_forward() -> None:
    earlier = [EarlierCycle("2027-Q1", D("0"), 0, None, paid=D("195.00"))]  # the whole cycle cancelled
    first = settle(VOLUME, D("2000"), 1, None, earlier)
    assert (first.payable, first.carried) == (D(0), D("-155.00"))
    paid_now = [EarlierCycle("2027-Q1", D("0"), 0, None, paid=D(0))]  # 195 - 195 adjusted
    second = settle(VOLUME, D("10000"), 4, None, paid_now, brought_forward=first.carried)
    assert (second.due.amount, second.payable, second.carried) == (D("300.00"), D("145.00"), D(0))


def test_a_positive_balance_is_never_brought_forward() -> None:
    with pytest.raises(ValueError, match="shortfall"):
        settle(VOLUME, D("1"), 1, None, brought_forward=D("1"))


def test_personalised_steps_apply_to_their_segment() -> None:
    champions = Rebate(
        "volume", "volume", VOLUME.steps, "cash", personalised={"champions": (Step(D(1000), D(5)),)}
    )
    assert settle(champions, D("2000"), 1, "champions").payable == D("100.00")
    assert settle(champions, D("2000"), 1, "loyal").payable == D("40.00")
