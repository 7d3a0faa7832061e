"""The tier ladder: tiers by rank, what qualifies for each, what each gives, how members are evaluated.

Pure: dataclasses and functions, no IO. ``validate_ladder`` lists every problem of a candidate ladder
(the CRM gets them all at once); ``ladder_from_document``/``ladder_document`` are the JSON form kept
in the database and served over REST.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import Any, Literal

WindowKind = Literal["rolling-months", "calendar-year", "calendar-quarter"]
EvaluationAt = Literal["period-end", "anniversary"]
Period = Literal["year", "quarter", "month"]
Requires = Literal["any", "all"]

WINDOW_KINDS: tuple[WindowKind, ...] = ("rolling-months", "calendar-year", "calendar-quarter")
EVALUATION_AT: tuple[EvaluationAt, ...] = ("period-end", "anniversary")
PERIODS: tuple[Period, ...] = ("year", "quarter", "month")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9 ._-]{0,31}$")


@dataclass(frozen=True)
class Benefits:
    points_multiplier: Decimal = Decimal("1")
    discount_rate: Decimal = Decimal("0")  # 0.05 = 5 % off list prices
    priority_purchase: bool = False  # pre-order rights on new products
    service_level: str = "standard"
    upgrade_gift: str | None = None  # a benefit the rewards service hands out on reaching the tier


@dataclass(frozen=True)
class Tier:
    name: str
    rank: int
    min_spend: Decimal | None = None  # qualifying spend in the window, in the ladder's currency
    min_orders: int | None = None  # qualifying orders in the window
    requires: Requires = "any"  # with both thresholds set: either one ("any") or both ("all")
    invitation_only: bool = False  # reached only by a CRM override, never by qualifying
    benefits: Benefits = field(default_factory=Benefits)

    @property
    def has_thresholds(self) -> bool:
        return self.min_spend is not None or self.min_orders is not None

    def rule(self, currency: str) -> str:
        """The qualification rule in words: "Gold: 200000.00 EUR qualifying spend or 60 orders"."""
        if self.invitation_only:
            return f"{self.name}: by invitation only"
        parts = []
        if self.min_spend is not None:
            parts.append(f"{self.min_spend:.2f} {currency} qualifying spend")
        if self.min_orders is not None:
            parts.append(f"{self.min_orders} qualifying orders")
        if not parts:
            return f"{self.name}: the entry tier, no threshold"
        return f"{self.name}: " + (" and " if self.requires == "all" else " or ").join(parts)


@dataclass(frozen=True)
class Window:
    """Where qualifying spend and orders are counted: the last N months, or the calendar year or
    quarter so far."""

    kind: WindowKind = "rolling-months"
    months: int = 12  # rolling-months only

    def describe(self) -> str:
        if self.kind == "rolling-months":
            return f"the rolling {self.months} months"
        return "the calendar year" if self.kind == "calendar-year" else "the calendar quarter"


@dataclass(frozen=True)
class Evaluation:
    """When demotions may happen: at each period end (year, quarter or month, UTC) or on each
    member's membership anniversary; a member below their tier then has ``grace_days`` to make up
    the shortfall, and drops at most ``max_demotion_steps`` tiers at once."""

    at: EvaluationAt = "period-end"
    period: Period = "year"  # period-end only
    grace_days: int = 30
    max_demotion_steps: int = 1


@dataclass(frozen=True)
class Ladder:
    version: int
    currency: str
    tiers: tuple[Tier, ...]  # by rank, lowest first
    window: Window = field(default_factory=Window)
    evaluation: Evaluation = field(default_factory=Evaluation)
    excluded_categories: frozenset[str] = frozenset()

    @property
    def entry(self) -> Tier:
        return next(t for t in self.tiers if not t.has_thresholds and not t.invitation_only)

    @property
    def qualifying_tiers(self) -> tuple[Tier, ...]:
        """The tiers a member can qualify for, lowest first (invitation-only tiers are not)."""
        return tuple(t for t in self.tiers if not t.invitation_only)

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)

    def has(self, name: str) -> bool:
        return any(t.name == name for t in self.tiers)


DEFAULT_LADDER = Ladder(
    version=0,
    currency="EUR",
    tiers=(
        Tier("Standard", 10, benefits=Benefits(Decimal("1"), Decimal("0"), False, "standard")),
        Tier(
            "Silver",
            20,
            min_spend=Decimal("50000"),
            min_orders=24,
            benefits=Benefits(Decimal("1.25"), Decimal("0.02"), False, "priority", "silver-welcome-kit"),
        ),
        Tier(
            "Gold",
            30,
            min_spend=Decimal("200000"),
            min_orders=60,
            benefits=Benefits(Decimal("1.5"), Decimal("0.04"), True, "dedicated", "gold-welcome-gift"),
        ),
        Tier(
            "Platinum",
            40,
            min_spend=Decimal("1000000"),
            benefits=Benefits(Decimal("2"), Decimal("0.06"), True, "key-account-manager", "platinum-gift"),
        ),
        Tier(
            "Ambassador",
            50,
            invitation_only=True,
            benefits=Benefits(Decimal("2"), Decimal("0.08"), True, "key-account-manager", "ambassador-award"),
        ),
    ),
    window=Window("rolling-months", 12),
    evaluation=Evaluation("period-end", "year", grace_days=30, max_demotion_steps=1),
    excluded_categories=frozenset({"gift-cards"}),
)


def _decimal_places(value: Decimal) -> int:
    """Significant decimals: "50000.000" has none."""
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def validate_ladder(ladder: Ladder) -> list[str]:
    """Every problem with ``ladder``; empty when it may be put in force."""
    problems: list[str] = []
    if not re.fullmatch(r"[A-Z]{3}", ladder.currency):
        problems.append(f"currency must be three capital letters, got {ladder.currency!r}")
    tiers = ladder.tiers
    if not tiers:
        return [*problems, "a ladder needs at least one tier"]
    names = [t.name for t in tiers]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"tier name {name!r} is used twice")
    for tier in tiers:
        if not _NAME.fullmatch(tier.name):
            problems.append(f"tier name {tier.name!r}: 1-32 letters, digits, spaces, '.', '_' or '-'")
    for lower, higher in pairwise(tiers):
        if higher.rank <= lower.rank:
            problems.append(
                f"ranks must be strictly increasing: {higher.name} ({higher.rank}) "
                f"comes after {lower.name} ({lower.rank})"
            )
    entries = [t for t in tiers if not t.has_thresholds and not t.invitation_only]
    if len(entries) != 1:
        problems.append(
            "exactly one entry tier (no thresholds, not invitation-only) is needed, found "
            f"{len(entries)}" + (f": {', '.join(t.name for t in entries)}" if entries else "")
        )
    elif entries[0] is not tiers[0]:
        problems.append(f"the entry tier {entries[0].name} must have the lowest rank")
    for tier in tiers:
        problems.extend(_tier_problems(tier))
    for attribute, label in (("min_spend", "min_spend"), ("min_orders", "min_orders")):
        previous: Tier | None = None
        for tier in ladder.qualifying_tiers:
            value = getattr(tier, attribute)
            if value is None or (isinstance(value, Decimal) and not value.is_finite()):
                continue  # a non-finite amount is reported with the tier
            if previous is not None and value <= getattr(previous, attribute):
                problems.append(
                    f"thresholds must be strictly increasing: {tier.name} {label} {value} is not above "
                    f"{previous.name}'s {getattr(previous, attribute)}"
                )
            previous = tier
    problems.extend(_window_problems(ladder.window))
    problems.extend(_evaluation_problems(ladder.evaluation, len(ladder.qualifying_tiers)))
    for category in sorted(ladder.excluded_categories):
        if not category or len(category) > 64:
            problems.append(f"excluded category {category!r} must be 1-64 characters")
    return problems


def _tier_problems(tier: Tier) -> list[str]:
    problems: list[str] = []
    name = tier.name
    if tier.invitation_only and tier.has_thresholds:
        problems.append(f"{name} is invitation-only, so it takes no thresholds")
    if tier.min_spend is not None and (
        not tier.min_spend.is_finite() or tier.min_spend <= 0 or _decimal_places(tier.min_spend) > 2
    ):
        problems.append(f"{name} min_spend must be an amount above 0 with at most 2 decimals")
    if tier.min_orders is not None and tier.min_orders <= 0:
        problems.append(f"{name} min_orders must be at least 1")
    if tier.requires not in ("any", "all"):
        problems.append(f"{name} requires must be 'any' or 'all'")
    benefits = tier.benefits
    multiplier = benefits.points_multiplier
    if not multiplier.is_finite() or not Decimal("0") < multiplier <= Decimal("100"):
        problems.append(f"{name} points_multiplier must be above 0 and at most 100")
    elif _decimal_places(multiplier) > 4:
        problems.append(f"{name} points_multiplier takes at most 4 decimals")
    rate = benefits.discount_rate
    if not rate.is_finite() or not Decimal("0") <= rate < Decimal("1") or _decimal_places(rate) > 4:
        problems.append(f"{name} discount_rate must be from 0 up to (not including) 1, at most 4 decimals")
    if not benefits.service_level or len(benefits.service_level) > 64:
        problems.append(f"{name} service_level must be 1-64 characters")
    if benefits.upgrade_gift is not None and not 0 < len(benefits.upgrade_gift) <= 64:
        problems.append(f"{name} upgrade_gift must be 1-64 characters")
    return problems


def _window_problems(window: Window) -> list[str]:
    if window.kind not in WINDOW_KINDS:
        return [f"window kind must be one of {', '.join(WINDOW_KINDS)}"]
    if window.kind == "rolling-months" and not 1 <= window.months <= 60:
        return ["a rolling window is 1 to 60 months long"]
    return []


def _evaluation_problems(evaluation: Evaluation, qualifying_tiers: int) -> list[str]:
    problems = []
    if evaluation.at not in EVALUATION_AT:
        problems.append(f"evaluation at must be one of {', '.join(EVALUATION_AT)}")
    if evaluation.period not in PERIODS:
        problems.append(f"evaluation period must be one of {', '.join(PERIODS)}")
    if not 0 <= evaluation.grace_days <= 366:
        problems.append("grace_days must be from 0 to 366")
    if not 1 <= evaluation.max_demotion_steps <= max(1, qualifying_tiers):
        problems.append(f"max_demotion_steps must be from 1 to {max(1, qualifying_tiers)}")
    return problems


# --- the JSON document (database and REST) ---------------------------------------------------------


def ladder_document(ladder: Ladder) -> dict[str, Any]:
    """``ladder`` as JSON: money and multipliers as decimal strings."""
    return {
        "currency": ladder.currency,
        "tiers": [
            {
                "name": t.name,
                "rank": t.rank,
                "min_spend": None if t.min_spend is None else str(t.min_spend),
                "min_orders": t.min_orders,
                "requires": t.requires,
                "invitation_only": t.invitation_only,
                "benefits": {
                    "points_multiplier": str(t.benefits.points_multiplier),
                    "discount_rate": str(t.benefits.discount_rate),
                    "priority_purchase": t.benefits.priority_purchase,
                    "service_level": t.benefits.service_level,
                    "upgrade_gift": t.benefits.upgrade_gift,
                },
            }
            for t in ladder.tiers
        ],
        "window": {"kind": ladder.window.kind, "months": ladder.window.months},
        "evaluation": {
            "at": ladder.evaluation.at,
            "period": ladder.evaluation.period,
            "grace_days": ladder.evaluation.grace_days,
            "max_demotion_steps": ladder.evaluation.max_demotion_steps,
        },
        "excluded_categories": sorted(ladder.excluded_categories),
    }


def ladder_from_document(version: int, document: Mapping[str, Any]) -> Ladder:
    """The inverse of ``ladder_document`` (raises ValueError on a malformed document)."""
    try:
        tiers: Sequence[Mapping[str, Any]] = document["tiers"]
        return Ladder(
            version=version,
            currency=document["currency"],
            tiers=tuple(
                Tier(
                    name=t["name"],
                    rank=int(t["rank"]),
                    min_spend=None if t.get("min_spend") is None else Decimal(t["min_spend"]),
                    min_orders=t.get("min_orders"),
                    requires=t.get("requires", "any"),
                    invitation_only=bool(t.get("invitation_only", False)),
                    benefits=Benefits(
                        points_multiplier=Decimal(t["benefits"]["points_multiplier"]),
                        discount_rate=Decimal(t["benefits"]["discount_rate"]),
                        priority_purchase=bool(t["benefits"]["priority_purchase"]),
                        service_level=t["benefits"]["service_level"],
                        upgrade_gift=t["benefits"].get("upgrade_gift"),
                    ),
                )
                for t in tiers
            ),
            window=Window(**document["window"]),
            evaluation=Evaluation(**document["evaluation"]),
            excluded_categories=frozenset(document.get("excluded_categories", ())),
        )
    except (KeyError, TypeError, InvalidOperation) as exc:
        raise ValueError(f"malformed ladder document: {exc!r}") from exc
