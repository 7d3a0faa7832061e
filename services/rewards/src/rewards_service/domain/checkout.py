"""What a basket gets at checkout, in a fixed order, each step on what the one before left:

1. the best *rate* the member has (a ladder discount earned last cycle, or the tier's discount
   benefit): rates do not stack, the highest wins;
2. each coupon given, in the order given (a coupon below its minimum order or expired gives 0);
3. the wallet's store credit, when asked for, up to what is left.

Amounts are rounded to the cent; nothing takes the basket below zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from rewards_service.domain.measures import Coupon, coupon_discount
from rewards_service.domain.money import to_cents

DiscountKind = Literal["ladder", "tier", "coupon", "wallet"]


@dataclass(frozen=True)
class Rate:
    kind: Literal["ladder", "tier"]
    rate: Decimal  # 0.03 = 3 %
    reason: str
    program_id: str


@dataclass(frozen=True)
class Discount:
    kind: DiscountKind
    amount: Decimal
    reason: str
    program_id: str | None = None
    code: str | None = None
    rate: Decimal | None = None


@dataclass(frozen=True)
class Quote:
    basket_total: Decimal
    discounts: tuple[Discount, ...]

    @property
    def total_discount(self) -> Decimal:
        return sum((d.amount for d in self.discounts), Decimal(0))

    @property
    def payable(self) -> Decimal:
        return self.basket_total - self.total_discount


def quote(
    basket_total: Decimal,
    rates: Sequence[Rate],
    coupons: Sequence[tuple[str, Coupon]],
    wallet: Decimal,
    now: datetime,
) -> Quote:
    """The discounts on ``basket_total``: the best rate, then ``coupons`` (code, terms), then up to
    ``wallet`` (0: not asked for)."""
    if not basket_total.is_finite() or basket_total < 0:
        raise ValueError(f"a basket total is 0 or more, got {basket_total}")
    left, discounts = to_cents(basket_total), []
    best = max(rates, key=lambda r: r.rate, default=None)
    if best is not None and best.rate > 0:
        amount = min(to_cents(left * best.rate), left)
        discounts.append(Discount(best.kind, amount, best.reason, best.program_id, rate=best.rate))
        left -= amount
    for code, terms in coupons:
        # the minimum order is the basket's, before any discount
        amount = coupon_discount(replace(terms, min_order=Decimal(0)), left, now)
        amount = to_cents(amount) if basket_total >= terms.min_order else to_cents(Decimal(0))
        reason = "coupon" if amount else "coupon not applicable (expired or below its minimum order)"
        discounts.append(Discount("coupon", amount, reason, code=code))
        left -= amount
    if wallet > 0 and left > 0:
        amount = to_cents(min(wallet, left))
        discounts.append(Discount("wallet", amount, "store credit"))
        left -= amount
    return Quote(to_cents(basket_total), tuple(discounts))
