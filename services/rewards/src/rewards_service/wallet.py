"""The store-credit wallet: a member's cash rebates, per currency, with an append-only ledger. The
balance never goes below zero (a CHECK, and every change holds the member's lock)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events.types import Amount, SignedAmount
from rewards_service.models import Wallet, WalletEntry

_CREDIT = text(
    "INSERT INTO wallets (member_id, currency, balance, updated_at) "
    "VALUES (:member, :currency, :amount, :at) "
    "ON CONFLICT (member_id, currency) DO UPDATE SET balance = wallets.balance + excluded.balance, "
    "updated_at = excluded.updated_at RETURNING balance"
)
# A debit updates the wallet there is (PostgreSQL checks an INSERT's row before ON CONFLICT: a
# negative one would fail the CHECK even when the row exists).
_DEBIT = text(
    "UPDATE wallets SET balance = balance + :amount, updated_at = :at "
    "WHERE member_id = :member AND currency = :currency RETURNING balance"
)


async def credit_wallet(
    session: AsyncSession,
    member_id: str,
    currency: str,
    amount: Decimal,
    kind: str,
    reference: str,
    at: datetime,
    *,
    key: str | None = None,
    request_hash: str | None = None,
) -> WalletEntry:
    """Add ``amount`` (below 0: take it) to the member's wallet with its ledger entry (returned, with
    the balance after). The caller holds the member's lock."""
    params = {"member": member_id, "currency": currency, "amount": amount, "at": at}
    balance: Decimal = (await session.execute(_CREDIT if amount >= 0 else _DEBIT, params)).scalar_one()
    entry = WalletEntry(
        member_id=member_id,
        currency=currency,
        amount=amount,
        kind=kind,
        reference=reference,
        idempotency_key=key,
        request_hash=request_hash,
        balance_after=balance,
        at=at,
    )
    session.add(entry)
    return entry


class WalletEntryView(BaseModel):
    currency: str
    amount: SignedAmount
    kind: str
    reference: str
    balance_after: Amount
    at: datetime


class WalletBalance(BaseModel):
    currency: str
    balance: Amount


class WalletView(BaseModel):
    member_id: str
    balances: list[WalletBalance]
    entries: list[WalletEntryView]


async def wallet_of(session: AsyncSession, member_id: str) -> WalletView:
    wallets = await session.scalars(
        select(Wallet).where(Wallet.member_id == member_id).order_by(Wallet.currency)
    )
    entries = await session.scalars(
        select(WalletEntry).where(WalletEntry.member_id == member_id).order_by(WalletEntry.id)
    )
    return WalletView(
        member_id=member_id,
        balances=[WalletBalance(currency=w.currency, balance=w.balance) for w in wallets],
        entries=[
            WalletEntryView(
                currency=e.currency,
                amount=e.amount,
                kind=e.kind,
                reference=e.reference,
                balance_after=e.balance_after,
                at=e.at,
            )
            for e in entries
        ],
    )
