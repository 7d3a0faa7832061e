"""The checkout API's reads and the wallet spend: what a basket gets (read-only, a few statements)
and store credit taken at checkout (once per Idempotency-Key, never below zero)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.dates import add_months
from loyalty_shared.errors import Conflict
from loyalty_shared.events.types import Amount, Currency, PositiveMoney
from loyalty_shared.idempotency import fingerprint, reused_key
from rewards_service import domain
from rewards_service.coupons import MEMBER_ID
from rewards_service.domain.checkout import Rate, quote
from rewards_service.domain.issuing import reach
from rewards_service.facts import lock_members
from rewards_service.issuing import active_programs
from rewards_service.models import CouponCode, Member, Wallet, WalletEntry
from rewards_service.wallet import credit_wallet


class QuoteBody(BaseModel):
    member_id: str = Field(pattern=MEMBER_ID)
    currency: Currency
    basket_total: Amount = Field(description="the basket before discounts")
    coupon_codes: list[str] = Field(default_factory=list, max_length=5)
    use_wallet: bool = Field(default=False, description="take store credit for what is left")


class DiscountView(BaseModel):
    kind: Literal["ladder", "tier", "coupon", "wallet"]
    amount: Amount
    rate: str | None = Field(default=None, description="a rate discount's rate, 0.03 = 3 %")
    reason: str
    program_id: str | None = None
    code: str | None = None


class QuoteView(BaseModel):
    member_id: str
    currency: str
    basket_total: Amount
    discounts: list[DiscountView] = Field(
        description="in the order applied: the best rate (ladder or tier; rates do not stack), the "
        "coupons, then store credit"
    )
    total_discount: Amount
    payable: Amount


class WalletSpend(BaseModel):
    member_id: str = Field(pattern=MEMBER_ID)
    currency: Currency
    amount: PositiveMoney
    order_id: str = Field(min_length=1, max_length=64)


class WalletSpendResult(BaseModel):
    member_id: str
    currency: str
    amount: Amount
    order_id: str
    balance_after: Amount
    at: datetime


_HISTORY = text(
    "SELECT paid_at, CASE WHEN cancelled_at IS NULL THEN amount - refunded ELSE 0 END AS net FROM orders "
    "WHERE member_id = :member AND currency = :currency AND paid_at >= :since"
)


async def checkout_quote(session: AsyncSession, body: QuoteBody) -> QuoteView:
    now = clock_now(session)
    member = await session.get(Member, body.member_id)
    rates: list[Rate] = []
    live = [p for p in await active_programs(session) if p.program.budget.currency == body.currency]
    if member is not None and live:
        since = add_months(now, -max([15, *(p.program.target_group.months for p in live)]))
        params = {"member": body.member_id, "currency": body.currency, "since": since}
        orders = tuple((r.paid_at, r.net) for r in await session.execute(_HISTORY, params))
        facts = domain.MemberFacts(body.member_id, member.tier, orders)
        for program in live:
            if reach(program.id, program.program, facts, now) != "treatment":
                continue
            rates.extend(_rates(program.id, program.program, facts, member, now))
    coupons: list[tuple[str, domain.Coupon]] = []
    unknown: list[DiscountView] = []
    codes = body.coupon_codes
    if codes:
        found = {
            c.code: c
            for c in await session.scalars(
                select(CouponCode).where(CouponCode.code.in_(codes), CouponCode.member_id == body.member_id)
            )
        }
        for code in codes:
            c = found.get(code)
            if c is None or c.status != "open" or c.currency != body.currency:
                reason = (
                    "no such open coupon for this member" if c is None or c.status != "open" else "currency"
                )
                unknown.append(DiscountView(kind="coupon", amount=Decimal("0.00"), reason=reason, code=code))
            else:
                coupons.append((code, domain.Coupon(c.percent, c.amount, c.min_order, c.expires_at)))
    wallet = Decimal(0)
    if body.use_wallet:
        row = await session.get(Wallet, (body.member_id, body.currency))
        wallet = row.balance if row is not None else Decimal(0)
    result = quote(body.basket_total, rates, coupons, wallet, now)
    discounts = [
        DiscountView(
            kind=d.kind,
            amount=d.amount,
            rate=None if d.rate is None else format(d.rate.normalize(), "f"),
            reason=d.reason,
            program_id=d.program_id,
            code=d.code,
        )
        for d in result.discounts
    ]
    return QuoteView(
        member_id=body.member_id,
        currency=body.currency,
        basket_total=body.basket_total,
        discounts=discounts + unknown,
        total_discount=result.total_discount,
        payable=result.payable,
    )


def _rates(
    program_id: str, program: domain.Program, facts: domain.MemberFacts, member: Member, now: datetime
) -> list[Rate]:
    rates: list[Rate] = []
    cycle = domain.cycle_of(program.schedule, now)
    before = None if cycle is None else domain.previous_cycle(program.schedule, cycle)
    for measure in program.measures:
        if isinstance(measure, domain.LadderDiscount) and before is not None and before.end is not None:
            figures = domain.figures(facts, before.start, before.end)
            rate = domain.ladder_discount_rate(measure, figures.spend, figures.orders)
            if rate > 0:
                what = f"{figures.spend} spent" if measure.basis == "volume" else f"{figures.orders} orders"
                rates.append(Rate("ladder", rate, f"{what} in {before.label}", program_id))
        elif isinstance(measure, domain.TierDiscount) and member.discount_rate:
            rate = domain.tier_discount_rate(member.discount_rate)
            rates.append(Rate("tier", rate, f"the {member.tier} tier's discount", program_id))
    return rates


async def spend_wallet(session: AsyncSession, body: WalletSpend, key: str) -> WalletSpendResult:
    """Take store credit for an order, once per Idempotency-Key; 409 when the balance is short."""
    await lock_members(session, [body.member_id])
    request_hash = fingerprint(body)
    done = await session.scalar(
        select(WalletEntry).where(WalletEntry.member_id == body.member_id, WalletEntry.idempotency_key == key)
    )
    if done is not None:
        if done.request_hash != request_hash:
            raise reused_key(key)
        return _spend_result(done)
    wallet = await session.get(Wallet, (body.member_id, body.currency))
    balance = wallet.balance if wallet is not None else Decimal(0)
    if balance < body.amount:
        raise Conflict(
            f"the wallet holds {balance} {body.currency}, less than {body.amount}",
            code="insufficient-balance",
        )
    now = clock_now(session)
    entry = await credit_wallet(
        session,
        body.member_id,
        body.currency,
        -body.amount,
        "spend",
        body.order_id,
        now,
        key=key,
        request_hash=request_hash,
    )
    return _spend_result(entry)


def _spend_result(entry: WalletEntry) -> WalletSpendResult:
    return WalletSpendResult(
        member_id=entry.member_id,
        currency=entry.currency,
        amount=-entry.amount,
        order_id=entry.reference,
        balance_after=entry.balance_after,
        at=entry.at,
    )
