"""Expiring lots whose time has come. Idempotent: an expired lot has nothing left to expire."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import PointsExpired
from loyalty_shared.messaging.outbox import publish
from loyalty_shared.service import Runtime, periodic
from points_service import domain
from points_service.ledger import append_entry, lock_account
from points_service.models import Lot

MEMBERS_PER_TRANSACTION = 200


class ExpiryRun(BaseModel):
    members: int
    lots: int
    points: int


async def members_with_expired_lots(session: AsyncSession, now: datetime, limit: int) -> list[str]:
    rows = await session.scalars(
        select(Lot.member_id)
        .where(Lot.remaining > 0, Lot.expires_at <= now)
        .group_by(Lot.member_id)
        .order_by(Lot.member_id)
        .limit(limit)
    )
    return list(rows)


async def expire_member(session: AsyncSession, member_id: str, now: datetime) -> tuple[int, int]:
    """Expire one member's due lots under the account lock; returns (lots, points)."""
    await lock_account(session, member_id)
    rows = await session.execute(
        select(Lot.id, Lot.remaining, Lot.available_at, Lot.expires_at)
        .where(Lot.member_id == member_id, Lot.remaining > 0, Lot.expires_at <= now)
        .with_for_update()
    )
    due = domain.due_for_expiry(
        [domain.Lot(r.id, r.remaining, r.available_at, r.expires_at) for r in rows], now
    )
    for lot in due:
        await session.execute(update(Lot).where(Lot.id == lot.id).values(remaining=0))
        await append_entry(
            session,
            member_id=member_id,
            entry_type="expire",
            points=-lot.remaining,
            reason=f"points of lot {lot.id} expired on {lot.expires_at.date().isoformat()}",
            lot_id=lot.id,
        )
        publish(
            session,
            PointsExpired(
                member_id=member_id, lot_id=lot.id, points=lot.remaining, expired_at=lot.expires_at
            ),
            member_id,
        )
    return len(due), sum(lot.remaining for lot in due)


async def run_expiry(rt: Runtime, now: datetime | None = None) -> ExpiryRun:
    """Expire everything due at ``now``, a bounded number of members per transaction."""
    moment = now or rt.clock.now()
    total = ExpiryRun(members=0, lots=0, points=0)
    while True:
        async with rt.unit_of_work() as session:
            members = await members_with_expired_lots(session, moment, MEMBERS_PER_TRANSACTION)
            for member_id in members:
                lots, points = await expire_member(session, member_id, moment)
                total = ExpiryRun(
                    members=total.members + 1, lots=total.lots + lots, points=total.points + points
                )
        if len(members) < MEMBERS_PER_TRANSACTION:
            return total


async def _scheduled_expiry(rt: Runtime) -> str | None:
    result = await run_expiry(rt)
    return (
        f"expired {result.points} points in {result.lots} lots of {result.members} members"
        if result.lots
        else None
    )


expiry_job = periodic("expiry", "expiry_interval_s", _scheduled_expiry)
