"""What a member sees: the balance (available, pending, expiring soon, lifetime totals) and the ledger."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.pagination import decode_cursor, encode_cursor
from points_service import domain
from points_service.models import LedgerEntry


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


# One round trip for the account, the rules' "expiring soon" window and the lifetime totals; the
# open lots come in a second one and the domain turns them into the balance.
_ACCOUNT_AND_TOTALS = text(
    """
    SELECT a.debt, a.tier, a.tier_multiplier,
           (SELECT expiring_soon_days FROM earning_rules ORDER BY version DESC LIMIT 1) AS soon_days,
           t.earned, t.redeemed, t.reversed, t.expired
    FROM (SELECT 1) AS one
    LEFT JOIN accounts a ON a.member_id = :member_id
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(points) FILTER (WHERE entry_type = 'earn'), 0) AS earned,
               coalesce(sum(points) FILTER (WHERE entry_type = 'redeem'), 0) AS redeemed,
               coalesce(sum(points) FILTER (WHERE entry_type = 'reverse'), 0) AS reversed,
               coalesce(sum(points) FILTER (WHERE entry_type = 'expire'), 0) AS expired
        FROM ledger_entries WHERE member_id = :member_id
    ) AS t
    """
)
_OPEN_LOTS = text(
    "SELECT id, remaining, available_at, expires_at FROM lots WHERE member_id = :member_id AND remaining > 0"
)


async def member_balance(session: AsyncSession, member_id: str) -> PointsBalance:
    now = clock_now(session)
    row = (await session.execute(_ACCOUNT_AND_TOTALS, {"member_id": member_id})).one()
    lots = [
        domain.Lot(r.id, r.remaining, r.available_at, r.expires_at)
        for r in await session.execute(_OPEN_LOTS, {"member_id": member_id})
    ]
    soon_days = row.soon_days or domain.DEFAULT_RULES.expiring_soon_days
    debt = row.debt or 0
    summary = domain.summarize(lots, debt, now, soon_days)
    return PointsBalance(
        member_id=member_id,
        available=summary.available,
        pending=summary.pending,
        expiring_soon=summary.expiring_soon,
        expiring_soon_days=soon_days,
        next_expiry_at=summary.next_expiry_at,
        debt=debt,
        lifetime_earned=int(row.earned),
        lifetime_redeemed=-int(row.redeemed),
        lifetime_reversed=-int(row.reversed),
        lifetime_expired=-int(row.expired),
        tier=row.tier,
        tier_multiplier=format((row.tier_multiplier or Decimal(1)).normalize(), "f"),
        as_of=now,
    )


async def ledger_page(session: AsyncSession, member_id: str, cursor: str | None, limit: int) -> LedgerPage:
    """Newest first; ``next_cursor`` continues after the last item of this page."""
    query = select(LedgerEntry).where(LedgerEntry.member_id == member_id)
    if cursor:
        query = query.where(LedgerEntry.id < decode_cursor("ledger", cursor))
    rows = list(await session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    next_cursor = encode_cursor("ledger", page[-1].id) if len(rows) > limit else None
    return LedgerPage(
        items=[LedgerItem.model_validate(r, from_attributes=True) for r in page], next_cursor=next_cursor
    )
