"""Earning rules: how many points a purchase earns, when they vest and when they expire."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from types import MappingProxyType
from typing import Literal, TypeGuard, get_args

DebtPolicy = Literal["debt", "forgive"]
"""What happens when points must be taken back but the member has too few:
``"debt"`` records a negative balance that later earnings repay, ``"forgive"`` writes it off."""

DEBT_POLICIES: tuple[DebtPolicy, ...] = get_args(DebtPolicy)

MAX_POINTS_PER_UNIT = Decimal("1000")
MAX_CATEGORY_MULTIPLIER = Decimal("100")
MAX_RETURN_WINDOW_DAYS = 365
MAX_EXPIRY_MONTHS = 120
MAX_EXPIRING_SOON_DAYS = 365
MAX_DECIMAL_PLACES = 4

# Arithmetic that never rounds silently: an inexact result raises instead.
EXACT = Context(prec=200, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])


def _frozen_multipliers() -> Mapping[str, Decimal]:
    return MappingProxyType({})


@dataclass(frozen=True)
class EarningRules:
    """One version of the program's earning rules.

    Construction does not check the figures; call :func:`validate_rules` before
    putting a new version into force.
    """

    version: int
    points_per_unit: Decimal = Decimal("1")
    category_multipliers: Mapping[str, Decimal] = field(default_factory=_frozen_multipliers, hash=False)
    return_window_days: int = 0
    expiry_months: int = 12
    debt_policy: DebtPolicy = "debt"
    expiring_soon_days: int = 30

    def __post_init__(self) -> None:
        # Keep a private read-only copy so the rules cannot change behind our back.
        object.__setattr__(self, "category_multipliers", MappingProxyType(dict(self.category_multipliers)))

    def category_multiplier(self, category: str) -> Decimal:
        """The multiplier for a product category; categories without one earn at 1."""
        return self.category_multipliers.get(category, Decimal("1"))


DEFAULT_RULES = EarningRules(
    version=1,
    points_per_unit=Decimal("1"),
    category_multipliers=MappingProxyType({}),
    return_window_days=0,
    expiry_months=12,
    debt_policy="debt",
    expiring_soon_days=30,
)


def decimal_places(value: Decimal) -> int:
    """How many decimal places a finite figure really uses (trailing zeros do not count)."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0 or not any(digits):
        return 0
    trailing_zeros = 0
    for digit in reversed(digits):
        if digit:
            break
        trailing_zeros += 1
    return max(0, -exponent - trailing_zeros)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _decimal_problems(name: str, value: object) -> list[str]:
    """Problems shared by every decimal figure: type, finiteness and precision."""
    if not isinstance(value, Decimal):
        return [f"{name} must be a Decimal, got {type(value).__name__}"]
    if not value.is_finite():
        return [f"{name} must be a finite number, got {value}"]
    if decimal_places(value) > MAX_DECIMAL_PLACES:
        return [f"{name} has more than {MAX_DECIMAL_PLACES} decimal places: {value}"]
    return []


def _int_problems(name: str, value: object, low: int, high: int | None) -> list[str]:
    if not _is_int(value):
        return [f"{name} must be a whole number, got {value!r}"]
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        return [f"{name} must be {bounds}, got {value}"]
    return []


def validate_rules(rules: EarningRules) -> list[str]:
    """Everything wrong with a set of earning rules, in plain words; empty when they are usable."""
    problems: list[str] = []
    problems += _int_problems("version", rules.version, 1, None)

    ppu_problems = _decimal_problems("points_per_unit", rules.points_per_unit)
    problems += ppu_problems
    if not ppu_problems and not Decimal(0) < rules.points_per_unit <= MAX_POINTS_PER_UNIT:
        problems.append(
            f"points_per_unit must be more than 0 and at most {MAX_POINTS_PER_UNIT}, "
            f"got {rules.points_per_unit}"
        )

    for category, multiplier in rules.category_multipliers.items():
        if not isinstance(category, str) or not category.strip():
            problems.append(f"category names must be non-empty text, got {category!r}")
            continue
        name = f"multiplier for category {category!r}"
        multiplier_problems = _decimal_problems(name, multiplier)
        problems += multiplier_problems
        if multiplier_problems:
            continue
        if multiplier < 0:
            problems.append(f"{name} must not be negative, got {multiplier}")
        elif multiplier > MAX_CATEGORY_MULTIPLIER:
            problems.append(f"{name} must be at most {MAX_CATEGORY_MULTIPLIER}, got {multiplier}")

    problems += _int_problems("return_window_days", rules.return_window_days, 0, MAX_RETURN_WINDOW_DAYS)
    problems += _int_problems("expiry_months", rules.expiry_months, 1, MAX_EXPIRY_MONTHS)
    if rules.debt_policy not in DEBT_POLICIES:
        problems.append(f"debt_policy must be one of {', '.join(DEBT_POLICIES)}, got {rules.debt_policy!r}")
    problems += _int_problems("expiring_soon_days", rules.expiring_soon_days, 1, MAX_EXPIRING_SOON_DAYS)
    return problems


def require_amount(value: object, name: str) -> Decimal:
    """Refuse money that is not an exact, finite, non-negative Decimal."""
    if not isinstance(value, Decimal):
        raise ValueError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a finite amount >= 0, got {value}")
    return value


def require_count(value: object, name: str, minimum: int = 0) -> int:
    """Refuse a point count that is not a whole number of at least ``minimum``."""
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value
