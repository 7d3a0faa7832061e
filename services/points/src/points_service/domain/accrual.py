"""Accrual: the points a paid order earns, and when they vest and expire."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from functools import lru_cache

from loyalty_shared.dates import add_months, require_aware
from points_service.domain.rules import (
    EXACT,
    EarningRules,
    require_amount,
    require_count,
    validate_rules,
)


@dataclass(frozen=True)
class PricedLine:
    """One order line as far as earning cares: its product category and what it cost."""

    category: str
    quantity: int
    unit_price: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.category, str):
            raise ValueError(f"category must be text, got {type(self.category).__name__}")
        require_count(self.quantity, "quantity")
        require_amount(self.unit_price, "unit_price")

    @property
    def value(self) -> Decimal:
        """Quantity times unit price, exactly."""
        with localcontext(EXACT):
            return self.quantity * self.unit_price


@dataclass(frozen=True)
class Accrual:
    """An order's points as a function of the tier multiplier: ``floor(base × multiplier / divisor)``,
    exactly. ``base`` is the amount paid × points per unit × the lines' category-weighted total and
    ``divisor`` the lines' total (without priced lines: the amount × points per unit, and 1). The
    order keeps it, so a tier change that turns out to cover the order re-rates it exactly."""

    base: Decimal
    divisor: Decimal

    def points(self, tier_multiplier: Decimal) -> int:
        require_amount(tier_multiplier, "tier_multiplier")
        with localcontext(EXACT):
            # Multiply first and divide last, so the only rounding is this floor division (both
            # sides are non-negative, so truncation is the floor).
            return max(0, int((self.base * tier_multiplier) // self.divisor))


def accrual_of(amount: Decimal, lines: Sequence[PricedLine], rules: EarningRules) -> Accrual:
    """What an order paying ``amount`` earns at any tier multiplier.

    The paid amount earns ``points_per_unit`` per 1.00, boosted by the member's tier multiplier and
    by the order's category mix: each line weighs its category multiplier by its share of the line
    total (categories without a multiplier count as 1; an order without priced lines counts as 1).
    """
    require_amount(amount, "amount")
    problems = _problems(rules)
    if problems:
        raise ValueError(f"earning rules version {rules.version!r} are invalid: {list(problems)}")
    with localcontext(EXACT):
        values = [line.quantity * line.unit_price for line in lines]  # exactly: PricedLine.value
        line_total = sum(values, Decimal(0))
        paid = amount * rules.points_per_unit
        if line_total == 0:
            return Accrual(paid, Decimal(1))
        weighted = zip(values, (line.category for line in lines), strict=True)
        weighted_total = sum(
            (value * rules.category_multiplier(category) for value, category in weighted), Decimal(0)
        )
        return Accrual(paid * weighted_total, line_total)


def accrue_points(
    amount: Decimal,
    lines: Sequence[PricedLine],
    rules: EarningRules,
    tier_multiplier: Decimal,
) -> int:
    """Points earned for paying ``amount`` at ``tier_multiplier`` (see ``accrual_of``), rounded down
    once, at the very end, and never negative."""
    require_amount(tier_multiplier, "tier_multiplier")
    return accrual_of(amount, lines, rules).points(tier_multiplier)


def earning_schedule(paid_at: datetime, rules: EarningRules) -> tuple[datetime, datetime]:
    """When an order's points become spendable and when they expire.

    Points stay pending through the return window, then live for ``expiry_months``
    calendar months: ``(available_at, expires_at)``.
    """
    require_aware(paid_at, "paid_at")
    require_count(rules.return_window_days, "return_window_days")
    require_count(rules.expiry_months, "expiry_months", minimum=1)
    available_at = paid_at + timedelta(days=rules.return_window_days)
    return available_at, add_months(available_at, rules.expiry_months)


@lru_cache(maxsize=64)
def _problems(rules: EarningRules) -> tuple[str, ...]:
    """``validate_rules``, once per distinct set of rules (they are frozen)."""
    return tuple(validate_rules(rules))
