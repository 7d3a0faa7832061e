"""Primitives every balance change uses: lock the account, read open lots, debit them, write the
ledger, publish through the outbox. One place for each, so the invariant
Σ ledger = Σ lots.remaining − debt is kept by construction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.db import defer_insert
from loyalty_shared.errors import Conflict
from loyalty_shared.idempotency import reused_key
from points_service import domain
from points_service.earning_rules import current_rules
from points_service.models import (
    Account,
    Adjustment,
    LedgerEntry,
    Lot,
    Redemption,
    table,
)


@dataclass(frozen=True)
class AccountState:
    member_id: str
    debt: int
    tier: str | None
    tier_multiplier: Decimal
    tier_effective_at: datetime | None = None


# Statements on the hot path are built once (Core, bound at execution): building and compiling an
# ORM statement per event costs more than the database round trip.
_accounts = table(Account)
_insert_account = insert(_accounts)
_LOCK_ACCOUNT = _insert_account.on_conflict_do_update(
    index_elements=[_accounts.c.member_id], set_={"member_id": _insert_account.excluded.member_id}
).returning(_accounts.c.debt, _accounts.c.tier, _accounts.c.tier_multiplier, _accounts.c.tier_effective_at)
_INSERT_LOT = insert(table(Lot)).returning(table(Lot).c.id)


async def lock_account(session: AsyncSession, member_id: str) -> AccountState:
    """Create the member's account if needed and lock it for the rest of the transaction.

    Every change of a member's points takes this lock first, so concurrent changes queue up, and
    the member's outbox rows are written in commit order."""
    row = (await session.execute(_LOCK_ACCOUNT, {"member_id": member_id})).one()
    return AccountState(member_id, row.debt, row.tier, row.tier_multiplier, row.tier_effective_at)


class InsufficientPoints(Conflict):
    code, title = "insufficient-points", "Not enough points"


async def available_now(session: AsyncSession, account: AccountState, now: datetime) -> int:
    """Spendable points now (negative while a debt is outstanding)."""
    return (await _open_lots_and_available(session, account, now))[1]


async def _open_lots_and_available(
    session: AsyncSession, account: AccountState, now: datetime
) -> tuple[list[domain.Lot], int]:
    rules = await current_rules(session)
    lots = await open_lots(session, account.member_id)
    return lots, domain.summarize(lots, account.debt, now, rules.expiring_soon_days).available


async def spend(session: AsyncSession, account: AccountState, points: int, now: datetime) -> int:
    """Take ``points`` from the available lots, earliest expiry first, or refuse with 409.
    Returns what was available before."""
    lots, available = await _open_lots_and_available(session, account, now)
    plan = domain.plan_redemption(lots, points, now)
    if plan.shortfall or available < points:
        raise InsufficientPoints(
            f"member {account.member_id} has {available} points available; {points} requested",
            available=available,
            requested=points,
        )
    await debit_lots(session, plan.takes)
    return available


async def add_lot(
    session: AsyncSession,
    account: AccountState,
    points: int,
    *,
    source: str,
    earned_at: datetime,
    available_at: datetime,
    expires_at: datetime,
    order_id: str | None = None,
) -> tuple[int | None, int]:
    """Credit ``points`` as a new lot; an outstanding debt is paid first. Returns (lot id, repaid)."""
    repaid, lot_points = domain.settle_debt(account.debt, points)
    if repaid:
        await set_debt(session, account.member_id, account.debt - repaid)
    if points == 0:
        return None, 0
    lot_id = await session.scalar(
        _INSERT_LOT,
        {
            "member_id": account.member_id,
            "source": source,
            "order_id": order_id,
            "points": lot_points,
            "remaining": lot_points,
            "earned_at": earned_at,
            "available_at": available_at,
            "expires_at": expires_at,
        },
    )
    return lot_id, repaid


Keyed = TypeVar("Keyed", Redemption, Adjustment)


async def find_replay(
    session: AsyncSession, model: type[Keyed], member_id: str, key: str, request_hash: str
) -> Keyed | None:
    """The row an earlier request with this Idempotency-Key created, if any; 422 if its body differed."""
    existing = await session.scalar(
        select(model).where(model.member_id == member_id, model.idempotency_key == key)
    )
    if existing is not None and existing.request_hash != request_hash:
        raise reused_key(key)
    return existing


async def set_debt(session: AsyncSession, member_id: str, debt: int) -> None:
    await session.execute(update(Account).where(Account.member_id == member_id).values(debt=debt))


async def open_lots(session: AsyncSession, member_id: str) -> list[domain.Lot]:
    rows = await session.execute(
        select(Lot.id, Lot.remaining, Lot.available_at, Lot.expires_at)
        .where(Lot.member_id == member_id, Lot.remaining > 0)
        .order_by(Lot.expires_at, Lot.id)
    )
    return [domain.Lot(r.id, r.remaining, r.available_at, r.expires_at) for r in rows]


async def debit_lots(session: AsyncSession, takes: Sequence[domain.Take]) -> None:
    for take in takes:
        await session.execute(
            update(Lot).where(Lot.id == take.lot_id).values(remaining=Lot.remaining - take.points)
        )


async def append_entry(session: AsyncSession, **fields: Any) -> None:
    """Add a ledger entry (written at commit, with the outbox: the ledger is append-only and no
    transaction reads back its own entries). Entries record the earning rules in force unless told."""
    if "rule_version" not in fields:
        fields["rule_version"] = (await current_rules(session)).version
    defer_insert(session, table(LedgerEntry), fields)
