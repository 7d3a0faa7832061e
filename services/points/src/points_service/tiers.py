"""The local projection of the tiers service: each member's tier and its points multiplier."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import or_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.envelope import CloudEvent
from loyalty_shared.events import TierChanged
from points_service.models import Account


async def project_tier(session: AsyncSession, event: CloudEvent, change: TierChanged) -> None:
    """Orders processed after this change earn at the new multiplier; an older change arriving
    late never overwrites a newer one."""
    values = {
        "tier": change.to_tier,
        "tier_multiplier": Decimal(change.points_multiplier),
        "tier_changed_at": event.time,
    }
    stmt = insert(Account).values(member_id=change.member_id, **values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Account.member_id],
            set_=values,
            where=or_(Account.tier_changed_at.is_(None), Account.tier_changed_at <= event.time),
        )
    )
