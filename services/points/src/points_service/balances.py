"""What a member sees: the balance (available, pending, expiring soon, lifetime totals) and the ledger."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.errors import Problem
from points_service import domain
from points_service.ledger import current_rules
from points_service.models import Account, LedgerEntry, Lot


class PointsBalance(BaseModel):
    member_id: str
    available: int
    pending: int
    expiring_soon: int
    expiring_soon_days: int
    next_expiry_at: datetime | None
    debt: int
    lifetime_earned: int
    lifetime_redeemed: int
    lifetime_reversed: int
    lifetime_expired: int
    tier: str | None
    tier_multiplier: str
    as_of: datetime


class LedgerItem(BaseModel):
    id: int
    entry_type: str
    points: int
    reason: str
    order_id: str | None
    refund_id: str | None
    redemption_id: str | None
    adjustment_id: str | None
    lot_id: int | None
    rule_version: int | None
    actor: str | None
    event_id: str | None
    created_at: datetime


class LedgerPage(BaseModel):
    items: list[LedgerItem]
    next_cursor: str | None


async def member_balance(session: AsyncSession, member_id: str) -> PointsBalance:
    now = datetime.now(UTC)
    rules = await current_rules(session)
    account = await session.get(Account, member_id)
    lots_rows = await session.execute(
        select(Lot.id, Lot.remaining, Lot.available_at, Lot.expires_at).where(
            Lot.member_id == member_id, Lot.remaining > 0
        )
    )
    lots = [domain.Lot(r.id, r.remaining, r.available_at, r.expires_at) for r in lots_rows]
    debt = account.debt if account else 0
    summary = domain.summarize(lots, debt, now, rules.expiring_soon_days)
    totals = (
        await session.execute(
            select(
                *(
                    func.coalesce(func.sum(case((LedgerEntry.entry_type == kind, LedgerEntry.points))), 0)
                    for kind in ("earn", "redeem", "reverse", "expire")
                )
            ).where(LedgerEntry.member_id == member_id)
        )
    ).one()
    return PointsBalance(
        member_id=member_id,
        available=summary.available,
        pending=summary.pending,
        expiring_soon=summary.expiring_soon,
        expiring_soon_days=rules.expiring_soon_days,
        next_expiry_at=summary.next_expiry_at,
        debt=debt,
        lifetime_earned=int(totals[0]),
        lifetime_redeemed=-int(totals[1]),
        lifetime_reversed=-int(totals[2]),
        lifetime_expired=-int(totals[3]),
        tier=account.tier if account else None,
        tier_multiplier=str(account.tier_multiplier) if account else "1",
        as_of=now,
    )


async def ledger_page(session: AsyncSession, member_id: str, cursor: str | None, limit: int) -> LedgerPage:
    """Newest first; ``next_cursor`` continues after the last item of this page."""
    query = select(LedgerEntry).where(LedgerEntry.member_id == member_id)
    if cursor:
        query = query.where(LedgerEntry.id < _decode_cursor(cursor))
    rows = list(await session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1].id) if len(rows) > limit else None
    return LedgerPage(
        items=[LedgerItem.model_validate(r, from_attributes=True) for r in page], next_cursor=next_cursor
    )


def _encode_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"ledger:{entry_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "ledger" or not 0 < int(value) < 2**63:  # a bigint id, or a DataError (500)
            raise ValueError(prefix)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem("cursor is not one this API returned", code="invalid-cursor", status=400) from exc
