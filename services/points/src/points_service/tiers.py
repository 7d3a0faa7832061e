"""The local projection of the tiers service: each member's tier periods and the tier in force.

An order earns at the tier whose period its payment falls in (``tier.changed`` says from when a
change applies: after the promoting order's payment), so the promoting order earns at the old tier
and the result does not depend on which of the two events this service happens to process first.
"""

from __future__ import annotations

from decimal import Decimal

from loyalty_shared.events import TierChanged
from loyalty_shared.handling import Delivery
from points_service.workset import NUMERIC_SCALE, Workset


def project_tier(ws: Workset, delivery: Delivery) -> None:
    """Record the period; the newest change (by event time) is the tier in force. An older change
    arriving late never overwrites a newer one."""
    event, change = delivery.event, delivery.data
    assert isinstance(change, TierChanged)
    effective_at = change.effective_at or event.time
    multiplier = Decimal(change.points_multiplier).quantize(NUMERIC_SCALE)
    ws.record_period(change.member_id, effective_at, change.to_tier, multiplier)
    account = ws.account(change.member_id)
    if account.tier_changed_at is None or account.tier_changed_at <= event.time:
        account.tier, account.tier_multiplier = change.to_tier, multiplier
        account.tier_changed_at, account.tier_effective_at = event.time, effective_at
        account.dirty = True
