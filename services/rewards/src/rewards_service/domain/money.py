"""Money and percentages as ``Decimal``, never float.

Amounts are in the program's currency with at most 2 decimals; a computed amount (a percent of a
basket, of a cycle's spend) is rounded to the cent, half up. Percentages are percent numbers
(``Decimal("3")`` is 3 %); a discount *rate* is a fraction, as tiers' ``discount_rate`` benefit is
(``Decimal("0.03")`` is 3 %).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
HUNDRED = Decimal(100)


def decimal_places(value: Decimal) -> int:
    """Significant decimals: "50000.000" has none."""
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def to_cents(amount: Decimal) -> Decimal:
    """``amount`` rounded to the cent, half up: 10.005 → 10.01."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def is_amount(value: Decimal, *, zero: bool = False) -> bool:
    """A finite amount above 0 (or at least 0 with ``zero``) with at most 2 decimals."""
    return value.is_finite() and (value >= 0 if zero else value > 0) and decimal_places(value) <= 2


def is_percent(value: Decimal) -> bool:
    """A percent above 0 and at most 100 with at most 4 decimals."""
    return value.is_finite() and Decimal(0) < value <= HUNDRED and decimal_places(value) <= 4


def percent_of(amount: Decimal, percent: Decimal) -> Decimal:
    """``percent`` % of ``amount``, to the cent."""
    return to_cents(amount * percent / HUNDRED)
