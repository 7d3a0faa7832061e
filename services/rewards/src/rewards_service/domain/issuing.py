"""What an event earns a member under a program: the gifts due on an order and on a promotion, each
with the unique key that makes it "once" (per program, measure, member and cycle for a threshold
gift; per promotion for an upgrade gift).

Whether a program reaches the member at all (its schedule holds the moment, the member is in its
target group and not held out in its control group) is decided first, by ``reach``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, TypeVar

from rewards_service.domain.cycles import cycle_of
from rewards_service.domain.groups import MemberFacts, figures, holdout, in_target
from rewards_service.domain.measures import (
    EntitlementGrant,
    ThresholdGift,
    TierUpgradeGift,
    gift_due,
    upgrade_gift_due,
)
from rewards_service.domain.programs import Program
from rewards_service.domain.rfm import segment_of

Reach = Literal["outside", "treatment", "control"]


@dataclass(frozen=True)
class Due:
    """A reward a rule (or the CRM) calls for: issued at most once per ``key``."""

    measure_id: str | None  # None: a custom gift from the CRM
    item_id: str | None  # the catalog item of a gift
    cycle: str | None
    key: str  # unique per issuance that may happen once
    reason: str


def once_key(*parts: str) -> str:
    """A fixed-length unique key of ``parts`` (sha256 hex)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def needs_segment(program: Program) -> bool:
    return bool(program.target_group.rfm_segments)


def reach(program_id: str, program: Program, facts: MemberFacts, at: datetime) -> Reach:
    """Whether ``program`` reaches the member at ``at``: outside (schedule or target group), or in
    the treatment or the control group (deterministic per program and member)."""
    if not program.schedule.holds(at):
        return "outside"
    segment = segment_of(facts, at) if needs_segment(program) else None
    if not in_target(program.target_group, facts, at, segment):
        return "outside"
    return "control" if holdout(program_id, facts.member_id, program.control_share) else "treatment"


def gifts_for_order(
    program_id: str, program: Program, facts: MemberFacts, order_id: str, amount: Decimal, at: datetime
) -> list[Due]:
    """The threshold gifts an order paid at ``at`` for ``amount`` earns. ``facts`` already hold the
    order: the cycle's spend before it is the spend with it less its amount."""
    return [
        Due(measure.id, measure.item, due.cycle, due.key, due.reason)
        for measure, due in _thresholds(program_id, program, facts, order_id, amount, at, ThresholdGift)
    ]


def rights_for_order(
    program_id: str, program: Program, facts: MemberFacts, order_id: str, amount: Decimal, at: datetime
) -> list[tuple[EntitlementGrant, Due]]:
    """The rights (entitlement measures) an order earns, as threshold gifts are earned: once per
    program, measure, member and cycle."""
    return _thresholds(program_id, program, facts, order_id, amount, at, EntitlementGrant)


_M = TypeVar("_M", ThresholdGift, EntitlementGrant)


def _thresholds(
    program_id: str,
    program: Program,
    facts: MemberFacts,
    order_id: str,
    amount: Decimal,
    at: datetime,
    kind: type[_M],
) -> list[tuple[_M, Due]]:
    cycle = cycle_of(program.schedule, at)
    if cycle is None:
        return []
    after = figures(facts, cycle.start, cycle.end).spend
    due: list[tuple[_M, Due]] = []
    for measure in program.measures:
        if not isinstance(measure, kind) or not gift_due(measure, amount, after - amount, after):
            continue
        what = (
            f"order {order_id} of {amount}"
            if measure.basis == "order"
            else f"spend of {after} in {cycle.label} with order {order_id}"
        )
        key = once_key(measure.kind, program_id, measure.id, facts.member_id, cycle.label)
        due.append((measure, Due(measure.id, None, cycle.label, key, f"{what} reached {measure.min}")))
    return due


def gifts_for_promotion(
    program_id: str,
    program: Program,
    member_id: str,
    direction: str,
    to_tier: str,
    upgrade_gift: str | None,
    effective_at: datetime,
) -> list[Due]:
    """The upgrade gifts a tier change earns: the new tier's ``upgrade_gift`` benefit, once per
    promotion (the member, the tier and the moment it took effect)."""
    cycle = cycle_of(program.schedule, effective_at)
    due: list[Due] = []
    for measure in program.measures:
        if not isinstance(measure, TierUpgradeGift):
            continue
        item = upgrade_gift_due(measure, direction, to_tier, upgrade_gift)
        if item is None:
            continue
        moment = effective_at.astimezone(UTC).isoformat()  # the same moment, whatever its offset
        key = once_key("upgrade-gift", program_id, measure.id, member_id, to_tier, moment)
        due.append(
            Due(measure.id, item, None if cycle is None else cycle.label, key, f"promoted to {to_tier}")
        )
    return due
