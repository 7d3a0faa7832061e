"""Who a program is for: its target group, and the control group held out of it.

A member is reached by a program when they are in its target group (``in_target``) and not in its
control group (``holdout``); control members receive nothing, and are recorded so the program can be
evaluated against them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from loyalty_shared.dates import add_months, require_aware


@dataclass(frozen=True)
class MemberFacts:
    """What the rewards service knows of a member: the tier in force (from ``tier.changed``; None
    before the first) and their orders, each (paid at, net amount after refunds, in the program's
    currency). A cancelled or wholly refunded order has net 0: it adds nothing and does not count as
    an order; an order counts while its net is above 0."""

    member_id: str
    tier: str | None = None
    orders: tuple[tuple[datetime, Decimal], ...] = ()


@dataclass(frozen=True)
class Figures:
    spend: Decimal  # net spend
    orders: int  # counted orders


def figures(facts: MemberFacts, start: datetime, end: datetime | None) -> Figures:
    """Net spend and counted orders paid in [start, end) (a cycle; ``end`` None: no end)."""
    require_aware(start, "start")
    if end is not None:
        require_aware(end, "end")
    return _figures(
        net for paid_at, net in facts.orders if start <= paid_at and (end is None or paid_at < end)
    )


def recent_figures(facts: MemberFacts, now: datetime, months: int) -> Figures:
    """Net spend and counted orders of the last ``months`` months: paid in (now - months, now], the
    rolling window tiers uses, so the same orders give the same figures."""
    start = add_months(require_aware(now, "now"), -months)
    return _figures(net for paid_at, net in facts.orders if start < paid_at <= now)


def _figures(nets: Iterable[Decimal]) -> Figures:
    spend, count = Decimal(0), 0
    for net in nets:
        spend += net
        count += net > 0
    return Figures(spend, count)


def order_dates(facts: MemberFacts, now: datetime) -> list[datetime]:
    """When the member's counted orders up to ``now`` were paid, oldest first."""
    require_aware(now, "now")
    return sorted(paid_at for paid_at, net in facts.orders if net > 0 and paid_at <= now)


@dataclass(frozen=True)
class TargetGroup:
    """Who a program targets. Every criterion given must hold (AND); an empty target group (no
    criterion given) means every member.

    - ``tiers``: the member's tier in force is one of these;
    - ``rfm_segments``: the member's RFM segment (``rfm.segment_of``) is one of these;
    - ``min_spend`` / ``min_orders``: at least this net spend / this many orders in the last
      ``months`` months (``recent_figures``);
    - ``members``: the member is on this explicit list (alone, it targets exactly the list).
    """

    tiers: frozenset[str] = frozenset()
    rfm_segments: frozenset[str] = frozenset()
    min_spend: Decimal | None = None
    min_orders: int | None = None
    months: int = 12
    members: frozenset[str] = frozenset()

    @property
    def everyone(self) -> bool:
        thresholds = self.min_spend is not None or self.min_orders is not None
        return not (self.tiers or self.rfm_segments or self.members or thresholds)


def in_target(target: TargetGroup, facts: MemberFacts, now: datetime, segment: str | None = None) -> bool:
    """Whether the member is in ``target`` at ``now``; ``segment`` is their RFM segment, needed only
    when the target group names segments."""
    require_aware(now, "now")
    if target.members and facts.member_id not in target.members:
        return False
    if target.tiers and facts.tier not in target.tiers:
        return False
    if target.rfm_segments:
        if segment is None:
            raise ValueError("this target group names RFM segments: give the member's segment")
        if segment not in target.rfm_segments:
            return False
    if target.min_spend is not None or target.min_orders is not None:
        recent = recent_figures(facts, now, target.months)
        if target.min_spend is not None and recent.spend < target.min_spend:
            return False
        if target.min_orders is not None and recent.orders < target.min_orders:
            return False
    return True


_SCALE = 2**64


def holdout_draw(program_id: str, member_id: str) -> Fraction:
    """The member's fixed draw in [0, 1) for this program: the first 8 bytes of
    sha256("{program_id}:{member_id}") over 2**64. The same on every process and Python version."""
    digest = hashlib.sha256(f"{program_id}:{member_id}".encode()).digest()
    return Fraction(int.from_bytes(digest[:8], "big"), _SCALE)


def holdout(program_id: str, member_id: str, share: Decimal) -> bool:
    """Whether the member is in the program's control group: their draw is below ``share`` (0 to 1).
    Deterministic per (program, member); different programs split members independently."""
    if not share.is_finite() or not Decimal(0) <= share <= Decimal(1):
        raise ValueError(f"a control share is from 0 to 1, got {share}")
    return holdout_draw(program_id, member_id) < Fraction(share)
