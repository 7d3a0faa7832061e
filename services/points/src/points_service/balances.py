"""What a member sees: the balance (available, pending, expiring soon, lifetime totals) and the ledger."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.db import ReadConnection
from loyalty_shared.errors import NotFound
from loyalty_shared.pagination import keyset_page
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


# The balance in one statement (one round trip): the account, the "expiring soon" window of the
# rules in force, the open lots summed as ``domain.summarize`` sums them, the lifetime totals, and
# whether the partner asking (if one is) serves the member. ``summarize`` stays the rule: the
# redemption path uses it, and a test holds this statement to it.
_BALANCE = """
    SELECT a.debt, a.tier, a.tier_multiplier, r.soon_days,
           l.available, l.pending, l.expiring_soon, l.next_expiry_at,
           t.earned, t.redeemed, t.reversed, t.expired,
           ($3::text IS NULL OR EXISTS (
               SELECT 1 FROM partner_members p
               WHERE p.partner_id = $3::text AND p.member_id = $1
           )) AS may_read
    FROM (SELECT 1) AS one
    LEFT JOIN accounts a ON a.member_id = $1
    CROSS JOIN LATERAL (
        SELECT coalesce(
            (SELECT expiring_soon_days FROM earning_rules ORDER BY version DESC LIMIT 1), $4
        ) AS soon_days
    ) AS r
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(remaining) FILTER (WHERE spendable), 0) AS available,
               coalesce(sum(remaining) FILTER (WHERE pending), 0) AS pending,
               coalesce(sum(remaining) FILTER (WHERE spendable AND expires_at <= soon), 0) AS expiring_soon,
               min(expires_at) FILTER (WHERE spendable) AS next_expiry_at
        FROM (
            SELECT remaining, expires_at,
                   available_at <= n.now AND n.now < expires_at AS spendable,
                   n.now < available_at AS pending,
                   n.now + make_interval(days => r.soon_days) AS soon
            FROM lots, (SELECT $2::timestamptz AS now) AS n
            WHERE member_id = $1 AND remaining > 0
        ) AS open_lots
    ) AS l
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(points) FILTER (WHERE entry_type = 'earn'), 0) AS earned,
               coalesce(sum(points) FILTER (WHERE entry_type = 'redeem'), 0) AS redeemed,
               coalesce(sum(points) FILTER (WHERE entry_type = 'reverse'), 0) AS reversed,
               coalesce(sum(points) FILTER (WHERE entry_type = 'expire'), 0) AS expired
        FROM ledger_entries WHERE member_id = $1
    ) AS t
"""


async def member_balance(
    connection: ReadConnection, member_id: str, now: datetime, partner_id: str | None = None
) -> PointsBalance:
    """The member's balance at ``now``; for a partner (``partner_id``) only if it serves the member
    (otherwise 404: it learns nothing about that member)."""
    soon_days = domain.DEFAULT_RULES.expiring_soon_days
    row = await connection.fetchrow(_BALANCE, member_id, now, partner_id, soon_days)
    assert row is not None  # one row, always
    if not row["may_read"]:
        raise NotFound(f"member {member_id} is not one of partner {partner_id}'s members")
    debt = row["debt"] or 0
    return PointsBalance(
        member_id=member_id,
        available=row["available"] - debt,
        pending=row["pending"],
        expiring_soon=row["expiring_soon"],
        expiring_soon_days=row["soon_days"],
        next_expiry_at=row["next_expiry_at"],
        debt=debt,
        lifetime_earned=row["earned"],
        lifetime_redeemed=-row["redeemed"],
        lifetime_reversed=-row["reversed"],
        lifetime_expired=-row["expired"],
        tier=row["tier"],
        tier_multiplier=format((row["tier_multiplier"] or Decimal(1)).normalize(), "f"),
        as_of=now,
    )


async def ledger_page(session: AsyncSession, member_id: str, cursor: str | None, limit: int) -> LedgerPage:
    """Newest first; ``next_cursor`` continues after the last item of this page."""
    query = select(LedgerEntry).where(LedgerEntry.member_id == member_id)
    page, next_cursor = await keyset_page(session, query, LedgerEntry.id, "ledger", cursor, limit)
    return LedgerPage(
        items=[LedgerItem.model_validate(r, from_attributes=True) for r in page], next_cursor=next_cursor
    )
