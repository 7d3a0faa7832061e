"""Qualifying spend: what part of an order or a refund counts towards tiers. Pure.

An order's qualifying spend is its paid amount in the share of its lines that are not in excluded
categories (a discount on the order spreads over its lines); an order without lines qualifies whole.
A refund takes away the qualifying share of its own lines, or the order's share when it has none,
never more than the order still has.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

CENT_FRACTION = Decimal("0.0001")  # money is kept to 4 decimals


@dataclass(frozen=True)
class Line:
    category: str
    quantity: int
    unit_price: Decimal


def qualifying_share(amount: Decimal, lines: Sequence[Line], excluded: Collection[str]) -> Decimal | None:
    """``amount`` times the share of ``lines``' value outside ``excluded``; None without priced lines."""
    total = sum((line.quantity * line.unit_price for line in lines), Decimal("0"))
    if total <= 0:
        return None
    kept = sum(
        (line.quantity * line.unit_price for line in lines if line.category not in excluded), Decimal("0")
    )
    return (amount * kept / total).quantize(CENT_FRACTION, ROUND_HALF_EVEN)


def order_qualifying(amount: Decimal, lines: Sequence[Line], excluded: Collection[str]) -> Decimal:
    share = qualifying_share(amount, lines, excluded)
    return amount if share is None else share


def refund_qualifying(
    refund: Decimal,
    refund_lines: Sequence[Line],
    order_amount: Decimal,
    order_qualifying: Decimal,
    remaining: Decimal,
    excluded: Collection[str],
) -> Decimal:
    """The qualifying spend a refund of ``refund`` takes away (at most ``remaining``)."""
    share = qualifying_share(refund, refund_lines, excluded)
    if share is None:
        share = (
            (refund * order_qualifying / order_amount).quantize(CENT_FRACTION, ROUND_HALF_EVEN)
            if order_amount > 0
            else Decimal("0")
        )
    return max(Decimal("0"), min(share, remaining))
