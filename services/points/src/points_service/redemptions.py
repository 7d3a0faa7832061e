"""Redeeming points: synchronous, idempotent, earliest-expiring lots first, never overdrawn."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.errors import Conflict
from loyalty_shared.events import PointsRedeemed
from loyalty_shared.idempotency import fingerprint, reused_key
from points_service import domain
from points_service.ledger import append_entry, current_rules, debit_lots, lock_account, open_lots, publish
from points_service.models import Redemption


class RedemptionRequest(BaseModel):
    points: int = Field(gt=0, le=100_000_000, description="points to redeem")
    description: str = Field(min_length=1, max_length=500, description="what the points pay for")
    reference: str | None = Field(default=None, max_length=200, description="the caller's reference")


class RedemptionResult(BaseModel):
    redemption_id: str
    member_id: str
    points: int
    description: str
    reference: str | None
    available_after: int
    created_at: datetime


class InsufficientPoints(Conflict):
    code, title = "insufficient-points", "Not enough points"


async def redeem(
    session: AsyncSession, member_id: str, request: RedemptionRequest, key: str
) -> tuple[RedemptionResult, bool]:
    """Returns the redemption and whether it was created now (False: a replay of the same key)."""
    account = await lock_account(session, member_id)
    request_hash = fingerprint(request)
    existing = await session.scalar(
        select(Redemption).where(Redemption.member_id == member_id, Redemption.idempotency_key == key)
    )
    if existing is not None:
        if existing.request_hash != request_hash:
            raise reused_key(key)
        return _result(existing), False
    now = datetime.now(UTC)
    rules = await current_rules(session)
    lots = await open_lots(session, member_id)
    balance = domain.summarize(lots, account.debt, now, rules.expiring_soon_days)
    plan = domain.plan_redemption(lots, request.points, now)
    if plan.shortfall or balance.available < request.points:
        raise InsufficientPoints(
            f"member {member_id} has {balance.available} points available; {request.points} requested",
            available=balance.available,
            requested=request.points,
        )
    await debit_lots(session, plan.takes)
    redemption = Redemption(
        id=str(uuid.uuid4()),
        member_id=member_id,
        idempotency_key=key,
        request_hash=request_hash,
        points=request.points,
        description=request.description,
        reference=request.reference,
        available_after=balance.available - request.points,
        created_at=now,
    )
    session.add(redemption)
    await append_entry(
        session,
        member_id=member_id,
        entry_type="redeem",
        points=-request.points,
        reason=f"redemption: {request.description}",
        redemption_id=redemption.id,
    )
    await publish(
        session,
        "points.redeemed",
        PointsRedeemed(
            member_id=member_id,
            redemption_id=redemption.id,
            points=request.points,
            description=request.description,
            reference=request.reference,
        ),
        member_id,
    )
    await session.flush()
    return _result(redemption), True


def _result(row: Redemption) -> RedemptionResult:
    return RedemptionResult(
        redemption_id=row.id,
        member_id=row.member_id,
        points=row.points,
        description=row.description,
        reference=row.reference,
        available_after=row.available_after,
        created_at=row.created_at,
    )
