"""The local projection of the tiers service: each member's tier periods and the tier in force.

An order earns at the tier whose period its payment falls in (``tier.changed`` says from when a
change applies: after the promoting order's payment), so the promoting order earns at the old tier
and the result does not depend on which of the two events this service happens to process first.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.envelope import CloudEvent
from loyalty_shared.events import TierChanged
from points_service.ledger import AccountState
from points_service.models import Account, TierPeriod, table

_periods = table(TierPeriod)
_PERIOD_AT = (
    select(_periods.c.tier, _periods.c.tier_multiplier)
    .where(_periods.c.member_id == bindparam("member_id"), _periods.c.effective_at < bindparam("paid_at"))
    .order_by(_periods.c.effective_at.desc())
    .limit(1)
)


async def project_tier(session: AsyncSession, event: CloudEvent, change: TierChanged) -> None:
    """Record the period; the newest change (by event time) is the tier in force. An older change
    arriving late never overwrites a newer one."""
    effective_at = change.effective_at or event.time
    multiplier = Decimal(change.points_multiplier)
    await session.execute(
        insert(TierPeriod)
        .values(
            member_id=change.member_id,
            effective_at=effective_at,
            tier=change.to_tier,
            tier_multiplier=multiplier,
        )
        .on_conflict_do_update(
            index_elements=[TierPeriod.member_id, TierPeriod.effective_at],
            set_={"tier": change.to_tier, "tier_multiplier": multiplier},
        )
    )
    values = {
        "tier": change.to_tier,
        "tier_multiplier": multiplier,
        "tier_changed_at": event.time,
        "tier_effective_at": effective_at,
    }
    stmt = insert(Account).values(member_id=change.member_id, **values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Account.member_id],
            set_=values,
            where=or_(Account.tier_changed_at.is_(None), Account.tier_changed_at <= event.time),
        )
    )


async def tier_at(
    session: AsyncSession, account: AccountState, paid_at: datetime
) -> tuple[str | None, Decimal]:
    """The tier and multiplier an order paid at ``paid_at`` earns at."""
    if account.tier_effective_at is None or paid_at > account.tier_effective_at:
        return account.tier, account.tier_multiplier  # the usual case: no lookup
    row = (await session.execute(_PERIOD_AT, {"member_id": account.member_id, "paid_at": paid_at})).first()
    return (None, Decimal("1")) if row is None else (row.tier, row.tier_multiplier)
