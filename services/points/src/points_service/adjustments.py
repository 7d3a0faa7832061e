"""CRM adjustments: a goodwill credit or a correction, always with a reason and an actor."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.events import PointsAdjusted
from loyalty_shared.idempotency import fingerprint
from loyalty_shared.messaging.outbox import publish
from points_service import domain
from points_service.earning_rules import current_rules
from points_service.ledger import (
    add_lot,
    append_entry,
    available_now,
    find_replay,
    lock_account,
    spend,
)
from points_service.models import Adjustment


class AdjustmentRequest(BaseModel):
    points: int = Field(ge=-100_000_000, le=100_000_000, description="credit (> 0) or debit (< 0)")
    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(min_length=1, max_length=128, description="who in the CRM made the change")

    @field_validator("points")
    @classmethod
    def _not_zero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("an adjustment of 0 points changes nothing")
        return v


class AdjustmentResult(BaseModel):
    adjustment_id: str
    member_id: str
    points: int
    reason: str
    actor: str
    available_after: int
    created_at: datetime


async def adjust(
    session: AsyncSession, member_id: str, request: AdjustmentRequest, key: str
) -> tuple[AdjustmentResult, bool]:
    account = await lock_account(session, member_id)
    request_hash = fingerprint(request)
    existing = await find_replay(session, Adjustment, member_id, key, request_hash)
    if existing is not None:
        return _result(existing), False
    now = clock_now(session)
    adjustment_id = str(uuid.uuid4())
    lot_id = None
    if request.points > 0:
        rules = await current_rules(session)
        before = await available_now(session, account, now)
        lot_id, _ = await add_lot(
            session,
            account,
            request.points,
            source="adjustment",
            earned_at=now,
            available_at=now,
            expires_at=domain.add_months(now, rules.expiry_months),
        )
    else:
        before = await spend(session, account, -request.points, now)
    row = Adjustment(
        id=adjustment_id,
        member_id=member_id,
        idempotency_key=key,
        request_hash=request_hash,
        points=request.points,
        reason=request.reason,
        actor=request.actor,
        available_after=before + request.points,
        created_at=now,
    )
    session.add(row)
    await append_entry(
        session,
        member_id=member_id,
        entry_type="adjust",
        points=request.points,
        reason=request.reason,
        adjustment_id=adjustment_id,
        lot_id=lot_id,
        actor=request.actor,
    )
    publish(
        session,
        PointsAdjusted(
            member_id=member_id,
            adjustment_id=adjustment_id,
            points=request.points,
            reason=request.reason,
            actor=request.actor,
        ),
        member_id,
    )
    await session.flush()
    return _result(row), True


def _result(row: Adjustment) -> AdjustmentResult:
    return AdjustmentResult(
        adjustment_id=row.id,
        member_id=row.member_id,
        points=row.points,
        reason=row.reason,
        actor=row.actor,
        available_after=row.available_after,
        created_at=row.created_at,
    )
