"""Redeeming points: synchronous, idempotent, earliest-expiring lots first, never overdrawn."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.events import PointsRedeemed
from loyalty_shared.idempotency import fingerprint
from loyalty_shared.messaging.outbox import publish
from points_service.ledger import append_entry, find_replay, lock_account, spend
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


async def redeem(
    session: AsyncSession, member_id: str, request: RedemptionRequest, key: str
) -> tuple[RedemptionResult, bool]:
    """Returns the redemption and whether it was created now (False: a replay of the same key)."""
    account = await lock_account(session, member_id)
    request_hash = fingerprint(request)
    existing = await find_replay(session, Redemption, member_id, key, request_hash)
    if existing is not None:
        return _result(existing), False
    now = clock_now(session)
    available = await spend(session, account, request.points, now)
    redemption = Redemption(
        id=str(uuid.uuid4()),
        member_id=member_id,
        idempotency_key=key,
        request_hash=request_hash,
        points=request.points,
        description=request.description,
        reference=request.reference,
        available_after=available - request.points,
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
    publish(
        session,
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
