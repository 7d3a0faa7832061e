"""Every measure's rule: ladder and tier discounts, coupons, rebates (points or cash, personalised),
threshold and tier-upgrade gifts, and points valued in money."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewards_service.domain import (
    MEASURE_KINDS,
    Coupon,
    EntitlementGrant,
    LadderDiscount,
    OneTimeDiscount,
    Rebate,
    RebateDue,
    Step,
    ThresholdGift,
    TierDiscount,
    TierUpgradeGift,
    cash_value_of_points,
    coupon_discount,
    coupon_terms,
    gift_due,
    ladder_discount_rate,
    points_for_cash,
    rebate_for,
    tier_discount_rate,
    to_cents,
    upgrade_gift_due,
)
from rewards_service.domain.documents import HonourCertificate, ThankYouLetter

NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)


def d(value: str) -> Decimal:
    return Decimal(value)


def test_kinds() -> None:
    kinds = [
        LadderDiscount.kind,
        TierDiscount.kind,
        OneTimeDiscount.kind,
        Rebate.kind,
        ThresholdGift.kind,
        TierUpgradeGift.kind,
        HonourCertificate.kind,
        ThankYouLetter.kind,
        EntitlementGrant.kind,
    ]
    assert tuple(kinds) == MEASURE_KINDS
    assert TierDiscount("t").kind == "tier-discount"


def test_amounts_round_to_the_cent_half_up() -> None:
    assert to_cents(d("10.005")) == d("10.01")
    assert to_cents(d("10.004999")) == d("10.00")
    assert str(to_cents(d("7"))) == "7.00"


# --- ladder discount -----------------------------------------------------------------------------


VOLUME_LADDER = LadderDiscount(
    "volume-ladder", "volume", (Step(d("50000"), d("1.5")), Step(d("100000"), d("3")))
)
FREQUENCY_LADDER = LadderDiscount(
    "frequency-ladder", "frequency", (Step(d("6"), d("1")), Step(d("12"), d("2.5")))
)


@pytest.mark.parametrize(
    ("volume", "rate"),
    [
        ("0", "0"),
        ("49999.99", "0"),
        ("50000", "0.015"),
        ("99999.99", "0.015"),
        ("100000", "0.03"),
        ("1e9", "0.03"),
    ],
)
def test_ladder_discount_by_volume(volume: str, rate: str) -> None:
    assert ladder_discount_rate(VOLUME_LADDER, d(volume), 500) == d(rate)


@pytest.mark.parametrize(
    ("orders", "rate"), [(0, "0"), (5, "0"), (6, "0.01"), (11, "0.01"), (12, "0.025"), (40, "0.025")]
)
def test_ladder_discount_by_frequency(orders: int, rate: str) -> None:
    assert ladder_discount_rate(FREQUENCY_LADDER, d("9999999"), orders) == d(rate)


def test_a_ladder_discount_applies_to_the_next_cycle() -> None:
    assert VOLUME_LADDER.applies == "next-cycle"


# --- tier discount ---------------------------------------------------------------------------------


def test_tier_discount_is_the_tier_benefit_rate() -> None:
    assert tier_discount_rate(d("0.04")) == d("0.04")
    assert tier_discount_rate(d("0")) == d("0")


@pytest.mark.parametrize("rate", ["-0.01", "1", "NaN"])
def test_a_tier_discount_rate_outside_zero_to_one_is_refused(rate: str) -> None:
    with pytest.raises(ValueError, match="tier discount rate"):
        tier_discount_rate(d(rate))


# --- one-time discount -----------------------------------------------------------------------------


PERCENT_COUPON = Coupon(percent=d("10"), amount=None, min_order=d("500"), expires_at=NOW + timedelta(days=1))
AMOUNT_COUPON = Coupon(percent=None, amount=d("250"), min_order=d("0"), expires_at=NOW + timedelta(days=1))


def test_coupon_terms_expire_valid_days_after_issue() -> None:
    measure = OneTimeDiscount("welcome", percent=d("10"), min_order=d("500"), valid_days=30)
    assert coupon_terms(measure, NOW) == Coupon(d("10"), None, d("500"), NOW + timedelta(days=30))
    with pytest.raises(ValueError, match="timezone-aware"):
        coupon_terms(measure, datetime(2026, 6, 30))


@pytest.mark.parametrize(
    ("coupon", "basket", "discount"),
    [
        (PERCENT_COUPON, "1000", "100.00"),
        (PERCENT_COUPON, "500", "50.00"),  # exactly the minimum
        (PERCENT_COUPON, "499.99", "0"),  # below the minimum order
        (PERCENT_COUPON, "1234.55", "123.46"),  # 123.455 rounded half up
        (AMOUNT_COUPON, "1000", "250"),
        (AMOUNT_COUPON, "100", "100"),  # never more than the basket
        (AMOUNT_COUPON, "0", "0"),
        (AMOUNT_COUPON, "-10", "0"),
    ],
)
def test_coupon_discount(coupon: Coupon, basket: str, discount: str) -> None:
    assert coupon_discount(coupon, d(basket), NOW) == d(discount)


def test_an_expired_coupon_gives_nothing() -> None:
    expires = PERCENT_COUPON.expires_at
    assert coupon_discount(PERCENT_COUPON, d("1000"), expires - timedelta(microseconds=1)) == d("100.00")
    assert coupon_discount(PERCENT_COUPON, d("1000"), expires) == 0
    assert coupon_discount(PERCENT_COUPON, d("1000"), expires + timedelta(days=3)) == 0


def test_a_full_discount_is_the_whole_basket() -> None:
    coupon = Coupon(d("100"), None, d("0"), NOW + timedelta(days=1))
    assert coupon_discount(coupon, d("99.99"), NOW) == d("99.99")


def test_coupon_discount_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        coupon_discount(PERCENT_COUPON, d("1000"), datetime(2026, 6, 30))


@given(
    st.decimals(min_value=0, max_value=10**7, places=2),
    st.decimals(min_value=d("0.0001"), max_value=100, places=4),
    st.decimals(min_value=d("0.01"), max_value=10**7, places=2),
)
def test_a_coupon_never_takes_more_than_the_basket(
    basket: Decimal, percent: Decimal, amount: Decimal
) -> None:
    for coupon in (
        Coupon(percent, None, d("0"), NOW + timedelta(days=1)),
        Coupon(None, amount, d("0"), NOW + timedelta(days=1)),
    ):
        discount = coupon_discount(coupon, basket, NOW)
        assert 0 <= discount <= basket


# --- rebate ----------------------------------------------------------------------------------------


CASH_REBATE = Rebate(
    "quarterly-rebate",
    "volume",
    (Step(d("50000"), d("1")), Step(d("100000"), d("2.5"))),
    "cash",
    personalised={"champions": (Step(d("50000"), d("2")), Step(d("100000"), d("4")))},
)
FREQUENT_BUYER = Rebate(
    "frequent-buyer", "count", (Step(d("12"), d("500")), Step(d("24"), d("1200"))), "points", fixed=True
)


@pytest.mark.parametrize(
    ("net", "due"),
    [
        ("49999.99", RebateDue(None, d("0"))),
        ("50000", RebateDue(Step(d("50000"), d("1")), d("500.00"))),
        ("80000.55", RebateDue(Step(d("50000"), d("1")), d("800.01"))),  # 800.0055 to the cent
        ("100000", RebateDue(Step(d("100000"), d("2.5")), d("2500.00"))),
        ("-300", RebateDue(None, d("0"))),  # refunds beyond the cycle's orders
    ],
)
def test_a_volume_rebate_is_a_percent_of_net_spend(net: str, due: RebateDue) -> None:
    assert rebate_for(CASH_REBATE, d(net), 3, None) == due
    assert rebate_for(CASH_REBATE, d(net), 3, "loyal") == due  # no personalised steps for loyal


def test_a_personalised_segment_gets_its_own_steps() -> None:
    assert rebate_for(CASH_REBATE, d("120000"), 3, "champions") == RebateDue(
        Step(d("100000"), d("4")), d("4800.00"), "champions"
    )
    assert rebate_for(CASH_REBATE, d("1000"), 3, "champions") == RebateDue(None, d("0"), "champions")


@pytest.mark.parametrize(
    ("orders", "due"),
    [
        (11, RebateDue(None, d("0"))),
        (12, RebateDue(Step(d("12"), d("500")), d("500"))),
        (30, RebateDue(Step(d("24"), d("1200")), d("1200"))),
    ],
)
def test_a_count_rebate_with_fixed_amounts(orders: int, due: RebateDue) -> None:
    assert rebate_for(FREQUENT_BUYER, d("123.45"), orders, None) == due


def test_a_count_rebate_may_pay_a_percent() -> None:
    measure = Rebate("r", "count", (Step(d("10"), d("2")),), "cash")
    assert rebate_for(measure, d("12345.67"), 10, None) == RebateDue(Step(d("10"), d("2")), d("246.91"))


def test_a_points_rebate_is_paid_in_whole_points() -> None:
    due = rebate_for(CASH_REBATE, d("80000.55"), 3, None)
    assert points_for_cash(due.amount, d("0.01")) == 80001
    assert points_for_cash(d("10.999"), d("0.01")) == 1099  # rounded down
    assert points_for_cash(d("0.009"), d("0.01")) == 0
    assert points_for_cash(d("100"), d("0.003")) == 33333
    assert points_for_cash(d("0"), d("0.01")) == 0


@pytest.mark.parametrize(
    ("amount", "point_value"), [("10", "0"), ("10", "-1"), ("-1", "0.01"), ("NaN", "0.01")]
)
def test_points_for_cash_refuses_nonsense(amount: str, point_value: str) -> None:
    with pytest.raises(ValueError):
        points_for_cash(d(amount), d(point_value))


def test_cash_value_of_points() -> None:
    assert cash_value_of_points(80001, d("0.01")) == d("800.01")
    assert cash_value_of_points(0, d("0.01")) == 0
    assert cash_value_of_points(33333, d("0.003")) == d("99.999")


@given(
    st.decimals(min_value=0, max_value=10**8, places=2),
    st.decimals(min_value=d("0.0001"), max_value=10, places=4),
)
def test_points_never_cost_more_than_the_amount(amount: Decimal, point_value: Decimal) -> None:
    points = points_for_cash(amount, point_value)
    assert cash_value_of_points(points, point_value) <= amount < cash_value_of_points(points + 1, point_value)


# --- gifts -----------------------------------------------------------------------------------------


ORDER_GIFT = ThresholdGift("big-order", "order", d("20000"), "espresso-machine")
CYCLE_GIFT = ThresholdGift("quarter-100k", "cycle-spend", d("100000"), "hamper")


@pytest.mark.parametrize(("amount", "due"), [("19999.99", False), ("20000", True), ("50000", True)])
def test_an_order_threshold_gift(amount: str, due: bool) -> None:
    assert gift_due(ORDER_GIFT, d(amount), d("0"), d(amount)) is due


@pytest.mark.parametrize(
    ("before", "after", "due"),
    [
        ("90000", "99999.99", False),
        ("90000", "100000", True),  # reaches the threshold exactly
        ("99999.99", "150000", True),
        ("0", "100000", True),
        ("100000", "120000", False),  # crossed by an earlier order
        ("120000", "130000", False),
    ],
)
def test_a_cycle_spend_threshold_gift_is_due_to_the_order_that_crosses(
    before: str, after: str, due: bool
) -> None:
    assert gift_due(CYCLE_GIFT, d(after) - d(before), d(before), d(after)) is due


def test_an_upgrade_gift_is_the_new_tier_benefit_on_a_promotion() -> None:
    any_promotion = TierUpgradeGift("welcome-gifts")
    assert upgrade_gift_due(any_promotion, "up", "Gold", "gold-welcome-gift") == "gold-welcome-gift"
    assert upgrade_gift_due(any_promotion, "down", "Silver", "silver-welcome-kit") is None
    assert upgrade_gift_due(any_promotion, "same", "Gold", "gold-welcome-gift") is None
    assert upgrade_gift_due(any_promotion, "up", "Standard", None) is None  # the tier has no upgrade gift


def test_an_upgrade_gift_limited_to_some_tiers() -> None:
    top = TierUpgradeGift("top-tiers", frozenset({"Gold", "Platinum"}))
    assert upgrade_gift_due(top, "up", "Platinum", "platinum-gift") == "platinum-gift"
    assert upgrade_gift_due(top, "up", "Silver", "silver-welcome-kit") is None


def test_an_entitlement_is_earned_as_a_threshold_gift_is() -> None:
    right = EntitlementGrant("early", "order", d("1000"), "priority-purchase", "Early access")
    assert gift_due(right, d("1000"), d("0"), d("1000"))
    assert not gift_due(right, d("999.99"), d("0"), d("999.99"))
    spend = EntitlementGrant(
        "vip", "cycle-spend", d("5000"), "custom-service", "Engineer", service="engineer"
    )
    assert gift_due(spend, d("100"), d("4900"), d("5000"))
    assert not gift_due(spend, d("100"), d("5000"), d("5100")), "once: only the order crossing it"
