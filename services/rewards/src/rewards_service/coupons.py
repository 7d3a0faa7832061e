"""Single-use coupons: issued by a program's one-time discount to members the CRM names, used once
at checkout, expired when their time is up.

A coupon's code is unguessable (80 random bits, base32). An amount coupon commits its face value to
the budget when issued; its use spends what it took off the basket and releases the rest; expiry
releases it all. A percent coupon's cost is only known at checkout: its use debits the budget then
(refused when the budget has not enough left). A use holds the member's lock, then the budget's,
then the coupon's: fifty concurrent uses of one code succeed once.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.errors import Conflict, NotFound, Unprocessable
from loyalty_shared.events import CouponUsed, RewardIssued
from loyalty_shared.events.types import Amount, Currency, PositiveMoney
from loyalty_shared.idempotency import fingerprint, reused_key
from loyalty_shared.messaging.outbox import publish
from loyalty_shared.service import Runtime, periodic
from rewards_service import domain
from rewards_service.domain.issuing import Due, once_key
from rewards_service.facts import lock_members
from rewards_service.issuing import Issuer, active_programs
from rewards_service.models import BudgetUse, CouponCode, Program, Reward
from rewards_service.programs import program_at

MEMBER_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
CODE = r"^[A-Z2-7]{4}(-[A-Z2-7]{4}){3}$"


def new_code() -> str:
    """Sixteen base32 characters in four groups: 80 random bits, e.g. ``K3JD-QX7A-PL2M-Z9..``."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode()
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


class CouponIssue(BaseModel):
    measure_id: str = Field(min_length=1, max_length=64, description="the program's one-time discount")
    member_ids: list[str] = Field(min_length=1, max_length=1000)


class IssuedCoupon(BaseModel):
    member_id: str
    reward_id: str
    code: str
    percent: Amount | None
    amount: Amount | None
    min_order: Amount
    expires_at: datetime


class SkippedMember(BaseModel):
    member_id: str
    reason: str = Field(description="control-group, budget-exhausted or member-cap-reached")


class CouponIssueResult(BaseModel):
    issued: list[IssuedCoupon]
    skipped: list[SkippedMember]


class CouponUse(BaseModel):
    code: str = Field(pattern=CODE)
    member_id: str = Field(pattern=MEMBER_ID)
    order_id: str = Field(min_length=1, max_length=64)
    currency: Currency
    basket_total: PositiveMoney


class CouponUseResult(BaseModel):
    code: str
    member_id: str
    order_id: str
    discount: Amount
    currency: str
    used_at: AwareDatetime


def _issued(coupon: CouponCode) -> IssuedCoupon:
    return IssuedCoupon(
        member_id=coupon.member_id,
        reward_id=coupon.reward_id,
        code=coupon.code,
        percent=coupon.percent,
        amount=coupon.amount,
        min_order=coupon.min_order,
        expires_at=coupon.expires_at,
    )


async def issue_coupons(
    session: AsyncSession, program_id: str, body: CouponIssue, key: str
) -> CouponIssueResult:
    """One coupon per named member (control members skipped), once per Idempotency-Key."""
    program = await session.get(Program, program_id)
    if program is None:
        raise NotFound(f"no program {program_id}", code="program-not-found")
    if program.status != "active":
        raise Conflict(
            f"program {program_id} is {program.status}: only an active one gives", code="not-active"
        )
    members = sorted(set(body.member_ids))
    await lock_members(session, members)
    live = next(p for p in await active_programs(session) if p.id == program_id)
    try:
        measure = live.program.measure(body.measure_id)
    except KeyError:
        measure = None
    if not isinstance(measure, domain.OneTimeDiscount):
        raise Unprocessable(
            f"program {program_id} has no one-time discount {body.measure_id!r}", code="not-a-coupon-measure"
        )
    request_hash = fingerprint(body)
    keys = {m: once_key("coupon", program_id, measure.id, key, m) for m in members}
    earlier = list(await session.scalars(select(Reward).where(Reward.dedupe.in_(list(keys.values())))))
    if earlier:
        if any(r.request_hash != request_hash for r in earlier):
            raise reused_key(key)
        coupons = await session.scalars(
            select(CouponCode).where(CouponCode.reward_id.in_([r.reward_id for r in earlier]))
        )
        return CouponIssueResult(issued=[_issued(c) for c in coupons], skipped=[])
    issuer = await Issuer.load(session, [live], members)
    now, currency = issuer.now, live.program.budget.currency
    if not live.program.schedule.holds(now):
        raise Conflict(f"program {program_id} does not run now (see its schedule)", code="outside-schedule")
    terms = domain.coupon_terms(measure, now)
    cycle = domain.cycle_of(live.program.schedule, now)
    issued: list[IssuedCoupon] = []
    skipped: list[SkippedMember] = []
    made: list[CouponCode] = []
    for member_id in members:
        group = (
            "control" if domain.holdout(program_id, member_id, live.program.control_share) else "treatment"
        )
        participant = issuer.enrol(live, member_id, group)
        if participant.grp == "control":
            skipped.append(SkippedMember(member_id=member_id, reason="control-group"))
            continue
        due = Due(
            measure.id, None, None if cycle is None else cycle.label, keys[member_id], "one-time discount"
        )
        cost = terms.amount or Decimal(0)
        result = issuer.coupon(live, participant, due, cost, amount=terms.amount, request_hash=request_hash)
        if result.reward_id is None:
            skipped.append(SkippedMember(member_id=member_id, reason=result.refusal or "refused"))
            continue
        coupon = CouponCode(
            code=new_code(),
            reward_id=result.reward_id,
            member_id=member_id,
            program_id=program_id,
            currency=currency,
            percent=terms.percent,
            amount=terms.amount,
            min_order=terms.min_order,
            expires_at=terms.expires_at,
            status="open",
        )
        made.append(coupon)
        issued.append(_issued(coupon))
        publish(
            session,
            RewardIssued(
                reward_id=result.reward_id,
                program_id=program_id,
                program_version=live.version,
                measure_id=measure.id,
                member_id=member_id,
                kind="coupon",
                cycle=due.cycle,
                amount=terms.amount,
                currency=currency,
                cost=cost,
                reason=f"one-time discount, expires {terms.expires_at.date().isoformat()}",
                issued_at=now,
            ),
            member_id,
        )
    await issuer.flush()
    session.add_all(made)
    return CouponIssueResult(issued=issued, skipped=skipped)


async def use_coupon(session: AsyncSession, body: CouponUse, key: str) -> CouponUseResult:
    """Take the coupon's discount off the basket, once; a retry with the same key answers the same."""
    await lock_members(session, [body.member_id])
    found = await session.get(CouponCode, body.code)
    if found is None or found.member_id != body.member_id:
        raise NotFound("no such coupon for this member", code="coupon-not-found")
    budget = await session.get(BudgetUse, found.program_id, with_for_update=True)
    coupon = await session.get(CouponCode, body.code, with_for_update=True, populate_existing=True)
    reward = await session.get(Reward, found.reward_id, with_for_update=True)
    assert coupon is not None and reward is not None and budget is not None
    request_hash = fingerprint(body)
    if coupon.status == "used":
        if coupon.use_key == key and coupon.use_hash == request_hash:
            return _use_result(coupon)
        if coupon.use_key == key:
            raise reused_key(key)
        raise Conflict(
            f"coupon …{coupon.code[-4:]} was used already (order {coupon.order_id})", code="coupon-used"
        )
    now = clock_now(session)
    if coupon.status == "expired" or now >= coupon.expires_at:
        raise Conflict(
            f"coupon …{coupon.code[-4:]} expired on {coupon.expires_at.isoformat()}", code="coupon-expired"
        )
    if body.currency != coupon.currency:
        raise Unprocessable(
            f"the coupon is in {coupon.currency}, the basket in {body.currency}", code="currency"
        )
    if body.basket_total < coupon.min_order:
        raise Unprocessable(
            f"the coupon needs a basket of at least {coupon.min_order}, this one is {body.basket_total}",
            code="below-minimum-order",
        )
    terms = domain.Coupon(coupon.percent, coupon.amount, coupon.min_order, coupon.expires_at)
    discount = domain.to_cents(domain.coupon_discount(terms, body.basket_total, now))
    state = domain.BudgetState(budget.committed, budget.spent)
    if coupon.amount is not None:
        state = domain.release(domain.spend(state, discount), reward.cost - discount)
    else:
        program = await session.get(Program, coupon.program_id)
        assert program is not None
        debit = domain.debit((await program_at(session, program)).budget, state, Decimal(0), discount)
        if not debit.ok:
            raise Conflict(
                "the program's budget has not enough left for this discount", code="budget-exhausted"
            )
        state = domain.spend(debit.new_state, discount)
    budget.committed, budget.spent = state.committed, state.spent
    reward.cost, reward.status, reward.status_changed_at = discount, "used", now
    coupon.status, coupon.order_id, coupon.discount, coupon.used_at = "used", body.order_id, discount, now
    coupon.use_key, coupon.use_hash = key, request_hash
    publish(
        session,
        CouponUsed(
            reward_id=coupon.reward_id,
            program_id=coupon.program_id,
            member_id=coupon.member_id,
            code_hint=coupon.code[-4:],
            order_id=body.order_id,
            discount=discount,
            currency=coupon.currency,
            used_at=now,
        ),
        coupon.member_id,
    )
    return _use_result(coupon)


def _use_result(coupon: CouponCode) -> CouponUseResult:
    assert coupon.order_id is not None and coupon.discount is not None and coupon.used_at is not None
    return CouponUseResult(
        code=coupon.code,
        member_id=coupon.member_id,
        order_id=coupon.order_id,
        discount=domain.to_cents(coupon.discount),
        currency=coupon.currency,
        used_at=coupon.used_at,
    )


_DUE = text(
    "SELECT code FROM coupons WHERE status = 'open' AND expires_at <= :now ORDER BY code LIMIT :limit"
)


async def expire_coupons(rt: Runtime) -> str | None:
    """Open coupons past their expiry: expired, their commitment released to the budget."""
    expired = 0
    while True:
        async with rt.unit_of_work() as session:
            codes = list(await session.scalars(_DUE, {"now": clock_now(session), "limit": 200}))
            for code in codes:
                await _expire(session, code)
            expired += len(codes)
        if len(codes) < 200:
            return f"{expired} coupons expired" if expired else None


async def _expire(session: AsyncSession, code: str) -> None:
    found = await session.get(CouponCode, code)
    assert found is not None
    await lock_members(session, [found.member_id])
    budget = await session.get(BudgetUse, found.program_id, with_for_update=True)
    coupon = await session.get(CouponCode, code, with_for_update=True, populate_existing=True)
    reward = await session.get(Reward, found.reward_id, with_for_update=True)
    assert coupon is not None and reward is not None and budget is not None
    if coupon.status != "open":
        return
    now = clock_now(session)
    state = domain.release(domain.BudgetState(budget.committed, budget.spent), reward.cost)
    budget.committed = state.committed
    coupon.status, reward.status, reward.status_changed_at = "expired", "expired", now


coupon_expiry_job = periodic("coupon expiry", "settlement_interval_s", expire_coupons)
