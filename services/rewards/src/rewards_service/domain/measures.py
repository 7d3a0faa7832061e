"""The reward rules a program is made of (its measures), as data, with one pure function each.

Each measure has an ``id`` unique within its program (issued rewards name it) and a ``kind``, its
discriminator in the program document. Amounts are in the program's currency; percentages are percent
numbers (3 = 3 %) and the discount functions return *rates* (0.03), as tiers' ``discount_rate``
benefit is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import ClassVar, Literal

from loyalty_shared.dates import require_aware
from rewards_service.domain.documents import HonourCertificate, ThankYouLetter
from rewards_service.domain.ladders import Step, Steps, step_for
from rewards_service.domain.money import HUNDRED, percent_of

MeasureKind = Literal[
    "ladder-discount",
    "tier-discount",
    "one-time-discount",
    "rebate",
    "threshold-gift",
    "tier-upgrade-gift",
    "honour-certificate",
    "thank-you-letter",
    "entitlement",
]
MEASURE_KINDS: tuple[MeasureKind, ...] = (
    "ladder-discount",
    "tier-discount",
    "one-time-discount",
    "rebate",
    "threshold-gift",
    "tier-upgrade-gift",
    "honour-certificate",
    "thank-you-letter",
    "entitlement",
)
DiscountBasis = Literal["volume", "frequency"]
DISCOUNT_BASES: tuple[DiscountBasis, ...] = ("volume", "frequency")
Applies = Literal["next-cycle"]
APPLIES: tuple[Applies, ...] = ("next-cycle",)
RebateBasis = Literal["volume", "count"]
REBATE_BASES: tuple[RebateBasis, ...] = ("volume", "count")
PayAs = Literal["points", "cash"]
PAY_AS: tuple[PayAs, ...] = ("points", "cash")
GiftBasis = Literal["order", "cycle-spend"]
GIFT_BASES: tuple[GiftBasis, ...] = ("order", "cycle-spend")


# --- discounts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LadderDiscount:
    """A discount on the orders of the next cycle, earned by the volume (net spend) or frequency
    (order count) of a cycle: "≥ 100,000 EUR in a quarter → 3 % on orders next quarter"."""

    kind: ClassVar[Literal["ladder-discount"]] = "ladder-discount"
    id: str
    basis: DiscountBasis
    steps: Steps  # min: net spend or orders in the cycle; value: percent off
    applies: Applies = "next-cycle"


def ladder_discount_rate(measure: LadderDiscount, cycle_volume: Decimal, cycle_orders: int) -> Decimal:
    """The rate earned by a cycle's figures (0 below the first step)."""
    figure = cycle_volume if measure.basis == "volume" else Decimal(cycle_orders)
    step = step_for(measure.steps, figure)
    return Decimal(0) if step is None else step.value / HUNDRED


@dataclass(frozen=True)
class TierDiscount:
    """The member's tier ``discount_rate`` benefit (from the tiers ladder, carried on ``tier.changed``)
    applies at checkout."""

    kind: ClassVar[Literal["tier-discount"]] = "tier-discount"
    id: str


def tier_discount_rate(benefit_rate: Decimal) -> Decimal:
    """The rate of a tier's ``discount_rate`` benefit, as it applies at checkout."""
    if not benefit_rate.is_finite() or not Decimal(0) <= benefit_rate < Decimal(1):
        raise ValueError(f"a tier discount rate is from 0 up to 1, got {benefit_rate}")
    return benefit_rate


@dataclass(frozen=True)
class OneTimeDiscount:
    """A single-use coupon: ``percent`` off or ``amount`` off (exactly one), on a basket of at least
    ``min_order``, valid ``valid_days`` days from issue."""

    kind: ClassVar[Literal["one-time-discount"]] = "one-time-discount"
    id: str
    percent: Decimal | None = None
    amount: Decimal | None = None
    min_order: Decimal = Decimal(0)
    valid_days: int = 30


@dataclass(frozen=True)
class Coupon:
    """An issued coupon's terms (its code and use are the service's)."""

    percent: Decimal | None
    amount: Decimal | None
    min_order: Decimal
    expires_at: datetime  # valid while now < expires_at


def coupon_terms(measure: OneTimeDiscount, issued_at: datetime) -> Coupon:
    require_aware(issued_at, "issued_at")
    return Coupon(
        measure.percent, measure.amount, measure.min_order, issued_at + timedelta(days=measure.valid_days)
    )


def coupon_discount(coupon: Coupon, basket_total: Decimal, now: datetime) -> Decimal:
    """What ``coupon`` takes off ``basket_total`` at ``now``: 0 once expired or below the minimum
    order, never more than the basket; a percent is rounded to the cent."""
    require_aware(now, "now")
    if now >= coupon.expires_at or basket_total <= 0 or basket_total < coupon.min_order:
        return Decimal(0)
    if coupon.percent is not None:
        discount = percent_of(basket_total, coupon.percent)
    elif coupon.amount is not None:
        discount = coupon.amount
    else:
        return Decimal(0)
    return min(discount, basket_total)


# --- rebates ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rebate:
    """A rebate settled at cycle close on the cycle's net spend (``basis == "volume"``) or order count
    (``"count"``): each step's value is a percent of the net spend, or a fixed amount when ``fixed``;
    paid as points (credited by the points service) or cash (the rewards wallet). ``personalised``
    gives members of an RFM segment other steps (a higher rebate for champions)."""

    kind: ClassVar[Literal["rebate"]] = "rebate"
    id: str
    basis: RebateBasis
    steps: Steps
    pay_as: PayAs
    fixed: bool = False
    personalised: Mapping[str, Steps] = field(default_factory=dict)

    def steps_for(self, segment: str | None) -> Steps:
        if segment is not None and segment in self.personalised:
            return self.personalised[segment]
        return self.steps


@dataclass(frozen=True)
class RebateDue:
    step: Step | None  # None: below the first step
    amount: Decimal  # in the program's currency; a points rebate converts it with ``points_for_cash``
    segment: str | None = None  # the segment whose personalised steps applied; None: the standard steps


def rebate_for(measure: Rebate, net_spend: Decimal, order_count: int, segment: str | None) -> RebateDue:
    """What a cycle's figures earn: ``net_spend`` has refunds and cancellations deducted already."""
    steps = measure.steps_for(segment)
    figure = net_spend if measure.basis == "volume" else Decimal(order_count)
    step = step_for(steps, figure)
    personalised = segment if segment is not None and segment in measure.personalised else None
    if step is None:
        return RebateDue(None, Decimal(0), personalised)
    amount = step.value if measure.fixed else percent_of(max(net_spend, Decimal(0)), step.value)
    return RebateDue(step, amount, personalised)


def points_for_cash(amount: Decimal, point_value: Decimal) -> int:
    """The whole points worth ``amount`` when one point is worth ``point_value`` (rounded down)."""
    if not point_value.is_finite() or point_value <= 0:
        raise ValueError(f"a point value must be above 0, got {point_value}")
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"an amount in points must be 0 or more, got {amount}")
    return int(amount // point_value)


def cash_value_of_points(points: int, point_value: Decimal) -> Decimal:
    """What ``points`` cost the budget."""
    return point_value * points


# --- gifts -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdGift:
    """The catalog ``item`` for one order of at least ``min`` (``basis == "order"``), or for the cycle's
    cumulative net spend reaching ``min`` (``"cycle-spend"``), once per cycle."""

    kind: ClassVar[Literal["threshold-gift"]] = "threshold-gift"
    id: str
    basis: GiftBasis
    min: Decimal
    item: str


def gift_due(
    measure: ThresholdGift | EntitlementGrant,
    order_amount: Decimal,
    cycle_spend_before: Decimal,
    cycle_spend_after: Decimal,
) -> bool:
    """Whether this order earns the gift: on the order basis, it is at least ``min``; on the cycle-spend
    basis, it takes the cycle's spend across ``min`` (before < min ≤ after). Once per cycle is the
    service's unique key."""
    if measure.basis == "order":
        return order_amount >= measure.min
    return cycle_spend_before < measure.min <= cycle_spend_after


RightKind = Literal["priority-purchase", "custom-service"]
RIGHT_KINDS: tuple[RightKind, ...] = ("priority-purchase", "custom-service")
RightUnit = Literal["units", "sessions", "hours"]
RIGHT_UNITS: tuple[RightUnit, ...] = ("units", "sessions", "hours")


@dataclass(frozen=True)
class EntitlementGrant:
    """A right (an entitlement) for ``valid_days`` from the order that earns it, earned as a
    threshold gift is (one order of at least ``min``, or the cycle's net spend reaching it), once per
    cycle: a priority purchase right scoped by ``skus``, ``categories`` or ``launch_id`` (none: every
    launch), or a custom service (``service``), with a ``quota`` (None: no limit). It costs the
    budget nothing."""

    kind: ClassVar[Literal["entitlement"]] = "entitlement"
    id: str
    basis: GiftBasis
    min: Decimal
    right: RightKind
    name: str
    skus: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    launch_id: str | None = None
    service: str | None = None
    unit: RightUnit = "units"
    quota: int | None = None
    valid_days: int = 90


@dataclass(frozen=True)
class TierUpgradeGift:
    """On a promotion to one of ``tiers`` (empty: any promotion), the new tier's ``upgrade_gift``
    ladder benefit."""

    kind: ClassVar[Literal["tier-upgrade-gift"]] = "tier-upgrade-gift"
    id: str
    tiers: frozenset[str] = frozenset()


def upgrade_gift_due(
    measure: TierUpgradeGift, direction: str, to_tier: str, upgrade_gift_benefit: str | None
) -> str | None:
    """The catalog item to give for a ``tier.changed`` (``direction`` "up", "down" or "same"), if any."""
    if direction != "up" or not upgrade_gift_benefit:
        return None
    if measure.tiers and to_tier not in measure.tiers:
        return None
    return upgrade_gift_benefit


Measure = (
    LadderDiscount
    | TierDiscount
    | OneTimeDiscount
    | Rebate
    | ThresholdGift
    | TierUpgradeGift
    | HonourCertificate
    | ThankYouLetter
    | EntitlementGrant
)
