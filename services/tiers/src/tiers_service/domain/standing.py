"""A member's standing on the ladder and every way it changes. Pure: the service loads figures
(qualifying spend and orders over a window) and the standing, calls these, and stores the result.

- An order promotes as soon as the figures qualify, skipping tiers if they do.
- Demotion happens only at an evaluation point (period end or anniversary): a member below their
  earned tier there gets ``grace_days``; spend from the start of the evaluated window up to the end
  of grace makes up the shortfall; otherwise they drop, at most ``max_demotion_steps`` tiers, never
  below the tier the figures qualify for.
- A CRM override is a floor: the tier in force is the higher of the earned tier and the override's
  tier while it lasts. The earned tier keeps following the rules underneath; when the override ends
  the member re-qualifies on their figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from tiers_service.domain.ladder import Ladder, Tier
from tiers_service.domain.periods import next_evaluation, window_start

Direction = Literal["up", "down", "same"]
Reason = Literal["qualified", "evaluated", "override", "override-ended"]
DueKind = Literal["override-end", "evaluation", "grace-end"]


@dataclass(frozen=True)
class Figures:
    """Qualifying spend and orders paid in the window (start, end]; ``end`` None means up to now."""

    spend: Decimal
    orders: int
    start: datetime
    end: datetime | None = None


def window_figures(
    orders: Iterable[tuple[datetime, Decimal]], start: datetime, end: datetime | None
) -> Figures:
    """The figures over (start, end] of a member's counted orders, each (paid at, qualifying spend
    net of refunds), in the ladder's currency and not cancelled: an order counts if its net is
    above zero."""
    spend, count = Decimal(0), 0
    for paid_at, net in orders:
        if paid_at > start and (end is None or paid_at <= end):
            spend += net
            count += net > 0
    return Figures(spend, count, start, end)


@dataclass(frozen=True)
class Shortfall:
    """What ``figures`` lack for ``tier``: missing spend and orders (0 once met; None when the tier
    has no such threshold). With ``requires == "any"`` either one closing is enough."""

    tier: str
    met: bool
    spend: Decimal | None
    orders: int | None


@dataclass(frozen=True)
class Override:
    tier: str
    reason: str
    set_by: str
    set_at: datetime
    until: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until


@dataclass(frozen=True)
class Standing:
    member_id: str
    tier: str  # in force: the earned tier, or the override's when that is higher
    tier_since: datetime
    earned: str
    earned_since: datetime
    joined_at: datetime
    next_evaluation_at: datetime
    last_evaluation_at: datetime | None = None
    grace_until: datetime | None = None
    grace_from: datetime | None = None  # the evaluated window's start: spend since makes up the shortfall
    override: Override | None = None


@dataclass(frozen=True)
class Change:
    """The tier in force changed: what ``tier.changed`` and the history record."""

    from_tier: str | None
    to_tier: str
    direction: Direction
    reason: Reason
    at: datetime
    figures: dict[str, Any]


@dataclass(frozen=True)
class Due:
    kind: DueKind
    at: datetime


Outcome = tuple[Standing, Change | None]


# --- qualification ---------------------------------------------------------------------------------


def meets(tier: Tier, figures: Figures) -> bool:
    if tier.invitation_only:
        return False
    checks = []
    if tier.min_spend is not None:
        checks.append(figures.spend >= tier.min_spend)
    if tier.min_orders is not None:
        checks.append(figures.orders >= tier.min_orders)
    if not checks:
        return True
    return all(checks) if tier.requires == "all" else any(checks)


def qualified_tier(ladder: Ladder, figures: Figures) -> Tier:
    """The highest tier ``figures`` qualify for (the entry tier at least)."""
    best = ladder.entry
    for tier in ladder.qualifying_tiers:
        if meets(tier, figures):
            best = tier
    return best


def shortfall(tier: Tier, figures: Figures) -> Shortfall:
    spend = None if tier.min_spend is None else max(Decimal("0"), tier.min_spend - figures.spend)
    orders = None if tier.min_orders is None else max(0, tier.min_orders - figures.orders)
    return Shortfall(tier.name, meets(tier, figures), spend, orders)


def rank(ladder: Ladder, name: str) -> int:
    return ladder.tier(name).rank


def in_force(ladder: Ladder, earned: str, override: Override | None, now: datetime) -> str:
    if override is not None and override.active(now) and rank(ladder, override.tier) > rank(ladder, earned):
        return override.tier
    return earned


def demotion_target(ladder: Ladder, earned: str, qualified: Tier) -> Tier:
    """At most ``max_demotion_steps`` below ``earned``, never below the tier the figures qualify for."""
    path = ladder.qualifying_tiers
    index = next(i for i, t in enumerate(path) if t.name == earned)
    floor = path[max(0, index - ladder.evaluation.max_demotion_steps)]
    return floor if floor.rank >= qualified.rank else qualified


def describe_figures(ladder: Ladder, figures: Figures, rule_tier: Tier, **extra: Any) -> dict[str, Any]:
    """The figures that decided a change, as published in ``tier.changed`` and kept in the history."""
    return {
        "ladder_version": ladder.version,
        "currency": ladder.currency,
        "window": ladder.window.describe(),
        "window_start": figures.start.isoformat(),
        "window_end": None if figures.end is None else figures.end.isoformat(),
        "qualifying_spend": f"{figures.spend:.2f}",
        "qualifying_orders": figures.orders,
        "rule": rule_tier.rule(ladder.currency),
        **extra,
    }


def _settle(
    ladder: Ladder,
    before: Standing | None,
    after: Standing,
    now: datetime,
    reason: Reason,
    figures: dict[str, Any],
) -> Outcome:
    """Recompute the tier in force; a change of it is a ``Change``, in force from ``now`` (the time of
    the order or step that made it) but never before the member's previous change, so a member's
    changes stay in sequence even when a late order decides one."""
    tier = in_force(ladder, after.earned, after.override, now)
    previous = None if before is None else before.tier
    if tier == previous:
        return replace(after, tier=tier), None
    at = now if before is None else max(now, before.tier_since)
    direction: Direction = "up" if previous is None or rank(ladder, tier) > rank(ladder, previous) else "down"
    return replace(after, tier=tier, tier_since=at), Change(previous, tier, direction, reason, at, figures)


# --- orders ----------------------------------------------------------------------------------------


def current_window(ladder: Ladder, now: datetime) -> tuple[datetime, None]:
    """The window an order's promotion is judged on: up to now (and any order stamped later)."""
    return window_start(ladder.window, now), None


def join(ladder: Ladder, member_id: str, figures: Figures, now: datetime, joined_at: datetime) -> Outcome:
    """A member's first order: they enter at the tier their figures qualify for."""
    earned = qualified_tier(ladder, figures)
    standing = Standing(
        member_id=member_id,
        tier=earned.name,
        tier_since=now,
        earned=earned.name,
        earned_since=now,
        joined_at=joined_at,
        next_evaluation_at=next_evaluation(ladder.evaluation, joined_at, now),
    )
    return _settle(ladder, None, standing, now, "qualified", describe_figures(ladder, figures, earned))


def on_order(
    ladder: Ladder,
    standing: Standing,
    figures: Figures,
    now: datetime,
    makeup: Figures | None = None,
    **extra: Any,
) -> Outcome:
    """After an order: promote when ``figures`` (the current window) qualify higher; in grace, keep
    the tier once ``makeup`` (spend since the evaluated window began) reaches it again."""
    qualified = qualified_tier(ladder, figures)
    if qualified.rank > rank(ladder, standing.earned):
        promoted = replace(
            standing, earned=qualified.name, earned_since=now, grace_until=None, grace_from=None
        )
        return _settle(
            ladder,
            standing,
            promoted,
            now,
            "qualified",
            describe_figures(ladder, figures, qualified, **extra),
        )
    if (
        standing.grace_until is not None
        and makeup is not None
        and meets(ladder.tier(standing.earned), makeup)
    ):
        return replace(standing, grace_until=None, grace_from=None), None
    return standing, None


# --- evaluation ------------------------------------------------------------------------------------


def due(standing: Standing, now: datetime) -> Due | None:
    """The earliest scheduled step at or before ``now`` (evaluations run them in time order)."""
    candidates: list[Due] = []
    if standing.override is not None and standing.override.until is not None:
        candidates.append(Due("override-end", standing.override.until))
    candidates.append(Due("evaluation", standing.next_evaluation_at))
    if standing.grace_until is not None:
        candidates.append(Due("grace-end", standing.grace_until))
    order = {"override-end": 0, "evaluation": 1, "grace-end": 2}
    ready = [c for c in candidates if c.at <= now]
    return min(ready, key=lambda c: (c.at, order[c.kind])) if ready else None


def due_window(ladder: Ladder, standing: Standing, step: Due) -> tuple[datetime, datetime]:
    """The window whose figures decide ``step``."""
    if step.kind == "grace-end":
        assert standing.grace_from is not None
        return standing.grace_from, step.at
    return window_start(ladder.window, step.at), step.at


def apply_due(ladder: Ladder, standing: Standing, step: Due, figures: Figures) -> Outcome:
    """Run one scheduled step at its own time ``step.at`` with the figures of ``due_window``."""
    at = step.at
    if step.kind == "override-end":
        return end_override(ladder, standing, figures, at)
    earned = ladder.tier(standing.earned)
    qualified = qualified_tier(ladder, figures)
    if step.kind == "grace-end":
        cleared = replace(standing, grace_until=None, grace_from=None)
        if meets(earned, figures):
            return cleared, None
        if qualified.rank > earned.rank:  # below the tier on one threshold, above it on another
            promoted = replace(cleared, earned=qualified.name, earned_since=at)
            outcome = "qualifies higher at the end of grace"
            facts = describe_figures(ladder, figures, qualified, outcome=outcome)
            return _settle(ladder, standing, promoted, at, "evaluated", facts)
        target = demotion_target(ladder, earned.name, qualified)
        demoted = replace(cleared, earned=target.name, earned_since=at)
        facts = describe_figures(
            ladder, figures, earned, outcome="grace ended below the tier", demoted_to=target.name
        )
        return _settle(ladder, standing, demoted, at, "evaluated", facts)
    # an evaluation point
    evaluated = replace(
        standing,
        last_evaluation_at=at,
        next_evaluation_at=next_evaluation(ladder.evaluation, standing.joined_at, at),
    )
    if qualified.rank > earned.rank:  # e.g. after the ladder's thresholds came down
        promoted = replace(
            evaluated, earned=qualified.name, earned_since=at, grace_until=None, grace_from=None
        )
        facts = describe_figures(ladder, figures, qualified, outcome="qualifies higher at evaluation")
        return _settle(ladder, standing, promoted, at, "evaluated", facts)
    if meets(earned, figures):
        return replace(evaluated, grace_until=None, grace_from=None), None
    if evaluated.grace_until is not None:  # still in an earlier grace period
        return evaluated, None
    if ladder.evaluation.grace_days == 0:
        target = demotion_target(ladder, earned.name, qualified)
        demoted = replace(evaluated, earned=target.name, earned_since=at)
        facts = describe_figures(
            ladder, figures, earned, outcome="below the tier at evaluation", demoted_to=target.name
        )
        return _settle(ladder, standing, demoted, at, "evaluated", facts)
    grace = replace(
        evaluated, grace_until=at + timedelta(days=ladder.evaluation.grace_days), grace_from=figures.start
    )
    return grace, None


# --- overrides -------------------------------------------------------------------------------------


def set_override(ladder: Ladder, standing: Standing, override: Override, now: datetime) -> Outcome:
    """Put ``override`` in place (replacing any other): its tier is a floor until it ends."""
    facts = {
        "ladder_version": ladder.version,
        "override_tier": override.tier,
        "override_reason": override.reason,
        "override_until": None if override.until is None else override.until.isoformat(),
        "earned_tier": standing.earned,
        "set_by": override.set_by,
    }
    return _settle(ladder, standing, replace(standing, override=override), now, "override", facts)


def end_override(ladder: Ladder, standing: Standing, figures: Figures, now: datetime) -> Outcome:
    """The override is removed or has run out: the member stands on the earned tier, promoted if
    ``figures`` (the window up to now) qualify higher."""
    qualified = qualified_tier(ladder, figures)
    after = replace(standing, override=None)
    if qualified.rank > rank(ladder, standing.earned):
        after = replace(after, earned=qualified.name, earned_since=now, grace_until=None, grace_from=None)
    ended = standing.override
    facts = describe_figures(
        ladder,
        figures,
        qualified,
        earned_tier=after.earned,
        override_tier=None if ended is None else ended.tier,
        override_reason=None if ended is None else ended.reason,
    )
    return _settle(ladder, standing, after, now, "override-ended", facts)
