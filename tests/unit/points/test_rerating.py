"""Re-rating an order at the tier multiplier of its payment (a tier change that arrived after the
order was earned): the accrual is exact at any multiplier, refunds' reversal follows, a cancelled
order holds nothing either way."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from points_service.domain import (
    DEFAULT_RULES,
    EarningRules,
    PricedLine,
    accrual_of,
    accrue_points,
    rerate,
    reversal_due,
)

RULES = EarningRules(version=2, category_multipliers={"electronics": Decimal("2"), "office": Decimal("0.5")})
MULTIPLIERS = st.sampled_from([Decimal(m) for m in ("1", "1.25", "1.5", "2", "0.75")])
LINES = st.lists(
    st.builds(
        PricedLine,
        st.sampled_from(["electronics", "office", "other"]),
        st.integers(1, 20),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=2),
    ),
    max_size=4,
)
AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2)


@given(amount=AMOUNTS, lines=LINES, multiplier=MULTIPLIERS)
def test_the_accrual_gives_what_accrue_points_gives_at_any_multiplier(
    amount: Decimal, lines: list[PricedLine], multiplier: Decimal
) -> None:
    assert accrual_of(amount, lines, RULES).points(multiplier) == accrue_points(
        amount, lines, RULES, multiplier
    )


@given(
    amount=AMOUNTS,
    lines=LINES,
    was=MULTIPLIERS,
    now=MULTIPLIERS,
    percent=st.integers(0, 100),
    cancelled=st.booleans(),
)
def test_re_rating_moves_the_balance_by_what_the_order_should_hold_less_what_it_holds(
    amount: Decimal, lines: list[PricedLine], was: Decimal, now: Decimal, percent: int, cancelled: bool
) -> None:
    refunded = (amount * percent / 100).quantize(Decimal("0.01")).min(amount)
    accrual = accrual_of(amount, lines, RULES)
    earned = accrual.points(was)
    reversed_ = earned if cancelled else reversal_due(earned, amount, refunded, 0)
    result = rerate(accrual.points(now), amount, refunded, earned, reversed_, cancelled)
    should_earn = accrue_points(amount, lines, RULES, now)
    should_reverse = should_earn if cancelled else reversal_due(should_earn, amount, refunded, 0)
    assert (result.points_earned, result.points_reversed) == (should_earn, should_reverse)
    assert result.change == (should_earn - should_reverse) - (earned - reversed_)
    if cancelled:
        assert result.change == 0
    # re-rating back gives the first figures and the opposite change
    back = rerate(
        accrual.points(was), amount, refunded, result.points_earned, result.points_reversed, cancelled
    )
    assert (back.points_earned, back.points_reversed, back.change) == (earned, reversed_, -result.change)


def test_an_order_without_priced_lines_earns_on_the_amount() -> None:
    accrual = accrual_of(Decimal("99.99"), [], DEFAULT_RULES)
    assert (accrual.points(Decimal("1")), accrual.points(Decimal("1.5"))) == (99, 149)
