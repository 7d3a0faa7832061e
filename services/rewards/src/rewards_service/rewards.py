"""Issued rewards as the CRM sees them: a member's rewards, a gift's fulfilment, custom gifts, and a
program's budget.

A change of an issued reward takes the locks in the order issuance takes them: the member, the
program's budget, the catalog item, then the reward.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.errors import Conflict, NotFound, Problem, Unprocessable
from loyalty_shared.events import RewardFulfilmentChanged
from loyalty_shared.events.types import Amount
from loyalty_shared.idempotency import fingerprint, reused_key
from loyalty_shared.messaging.outbox import publish
from rewards_service import domain
from rewards_service.domain.fulfilment import Fulfilment, fulfilment_step
from rewards_service.domain.issuing import Due, once_key
from rewards_service.facts import lock_members
from rewards_service.issuing import Issuer, LiveProgram, active_programs, lock_items
from rewards_service.models import (
    BudgetUse,
    CatalogItem,
    Participant,
    Program,
    Redemption,
    RefusedReward,
    Reward,
)
from rewards_service.programs import program_at
from rewards_service.redemptions import fail


class RewardView(BaseModel):
    reward_id: str
    member_id: str
    program_id: str | None
    program_version: int | None
    measure_id: str | None
    kind: Literal["gift", "coupon", "rebate"]
    cycle: str | None
    item_id: str | None
    points: int | None
    amount: Amount | None
    currency: str
    cost: Amount
    status: str
    reason: str
    issued_at: datetime
    status_changed_at: datetime


class RewardList(BaseModel):
    items: list[RewardView]


class CustomGiftBody(BaseModel):
    member_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    item_id: str = Field(min_length=1, max_length=64)
    note: str | None = Field(default=None, max_length=500, description="why (kept as the reward's reason)")


class FulfilmentBody(BaseModel):
    status: Fulfilment = Field(description="shipped, delivered or cancelled (cancelled returns the stock)")
    note: str | None = Field(default=None, max_length=500)


class CycleBurn(BaseModel):
    cycle: str
    issued: int
    cost: Amount


class BudgetView(BaseModel):
    program_id: str
    currency: str
    allocated: Amount = Field(description="the cap of the version in force")
    committed: Amount = Field(description="issued, not yet consumed")
    spent: Amount
    remaining: Amount
    per_member_cap: Amount | None
    refusals: int
    refusals_by_reason: dict[str, int]
    exhausted_at: datetime | None
    burn: list[CycleBurn] = Field(description="the cost of what was issued, per cycle (cancelled gifts out)")


def _view(reward: Reward) -> RewardView:
    return RewardView(
        reward_id=reward.reward_id,
        member_id=reward.member_id,
        program_id=reward.program_id,
        program_version=reward.version,
        measure_id=reward.measure_id,
        kind=reward.kind,
        cycle=reward.cycle,
        item_id=reward.item_id,
        points=reward.points,
        amount=reward.amount,
        currency=reward.currency,
        cost=reward.cost,
        status=reward.status,
        reason=reward.reason,
        issued_at=reward.issued_at,
        status_changed_at=reward.status_changed_at,
    )


async def member_rewards(session: AsyncSession, member_id: str) -> RewardList:
    rows = await session.scalars(
        select(Reward)
        .where(Reward.member_id == member_id)
        .order_by(Reward.issued_at, Reward.cycle, Reward.reward_id)
    )
    return RewardList(items=[_view(r) for r in rows])


async def get_reward(session: AsyncSession, reward_id: str) -> RewardView:
    return _view(await _find(session, reward_id))


async def _find(session: AsyncSession, reward_id: str, *, lock: bool = False) -> Reward:
    reward = await session.get(Reward, reward_id, with_for_update=lock, populate_existing=lock)
    if reward is None:
        raise NotFound(f"no reward {reward_id}", code="reward-not-found")
    return reward


async def change_fulfilment(
    session: AsyncSession, reward_id: str, body: FulfilmentBody, actor: str
) -> RewardView:
    found = await _find(session, reward_id)
    if found.kind != "gift":
        raise Conflict(f"reward {reward_id} is a {found.kind}: only gifts are fulfilled", code="not-a-gift")
    await lock_members(session, [found.member_id])
    budget = None
    if found.program_id is not None:
        budget = await session.get(BudgetUse, found.program_id, with_for_update=True)
    item = (
        None if found.item_id is None else await session.get(CatalogItem, found.item_id, with_for_update=True)
    )
    participant = None
    if found.program_id is not None:
        participant = await session.get(
            Participant, (found.program_id, found.member_id), with_for_update=True
        )
    reward = await _find(session, reward_id, lock=True)
    if reward.status == body.status:
        return _view(reward)  # set already: a retry changes nothing
    try:
        effect = fulfilment_step(reward.status, body.status)
    except ValueError as exc:
        raise Conflict(str(exc), code="invalid-fulfilment") from exc
    now = clock_now(session)
    if budget is not None and effect is not None:
        state = domain.BudgetState(budget.committed, budget.spent)
        moved = domain.spend(state, reward.cost) if effect == "spend" else domain.release(state, reward.cost)
        budget.committed, budget.spent = moved.committed, moved.spent
    if effect == "release" and item is not None:
        item.stock += 1
        item.updated_at = now
    if effect == "release" and participant is not None:
        participant.given -= reward.cost  # a cancelled gift no longer counts against the member's cap
    if effect == "release" and reward.program_id is None:
        await _fail_redemption(session, reward, now)
    before = reward.status
    reward.status, reward.status_changed_at = body.status, now
    publish(
        session,
        RewardFulfilmentChanged(
            reward_id=reward.reward_id,
            program_id=reward.program_id,
            member_id=reward.member_id,
            item_id=reward.item_id,
            from_status=before,
            to_status=body.status,
            changed_at=now,
        ),
        reward.member_id,
    )
    return _view(reward)


async def custom_gift(
    session: AsyncSession, program_id: str, body: CustomGiftBody, key: str, actor: str
) -> RewardView | Problem:
    """A gift the CRM gives a member under an active program: from the stock, within the budget, once
    per Idempotency-Key. A member of the program's control group gets nothing (409). A gift the
    stock or the budget refuses is *returned* as its problem, not raised: the refusal is recorded
    and counted (and a first budget refusal published) when the caller commits, then answered."""
    program = await session.get(Program, program_id)
    if program is None:
        raise NotFound(f"no program {program_id}", code="program-not-found")
    if program.status != "active":
        raise Conflict(
            f"program {program_id} is {program.status}: only an active one gives", code="not-active"
        )
    await lock_members(session, [body.member_id])
    live = next(p for p in await active_programs(session) if p.id == program_id)
    issuer = await Issuer.load(session, [live], [body.member_id])
    issuer.items = await lock_items(session, [body.item_id])
    request_hash = fingerprint(body)
    dedupe = once_key("crm-gift", program_id, key)
    earlier = await session.scalar(select(Reward).where(Reward.dedupe == dedupe))
    if earlier is not None:
        if earlier.request_hash != request_hash:
            raise reused_key(key)
        return _view(earlier)
    if not live.program.schedule.holds(issuer.now):
        raise Conflict(f"program {program_id} does not run now (see its schedule)", code="outside-schedule")
    group = (
        "control" if domain.holdout(program_id, body.member_id, live.program.control_share) else "treatment"
    )
    participant = issuer.enrol(live, body.member_id, group)
    if participant.grp == "control":
        raise Conflict(
            f"member {body.member_id} is in the control group of program {program_id}: it receives nothing",
            code="control-group",
        )
    cycle = domain.cycle_of(live.program.schedule, issuer.now)
    due = Due(None, body.item_id, None if cycle is None else cycle.label, dedupe, body.note or "custom gift")
    issued = issuer.gift(live, participant, due, request_hash)
    await issuer.flush()
    if issued.reward_id is None:
        return _refused(issued.refusal, body.item_id, live)
    return _view(await _find(session, issued.reward_id))


async def _fail_redemption(session: AsyncSession, reward: Reward, now: datetime) -> None:
    """A redeemed gift cancelled: the redemption fails, and points gives the points back."""
    redemption = await session.scalar(
        select(Redemption).where(Redemption.reward_id == reward.reward_id).with_for_update()
    )
    if redemption is None or redemption.status != "fulfilled":
        return
    redemption.status, redemption.reason = "failed", "gift cancelled"
    fail(
        session,
        redemption.redemption_id,
        reward.member_id,
        redemption.points,
        reward.item_id,
        "gift cancelled",
        now,
    )


def _refused(reason: str | None, item_id: str, live: LiveProgram) -> Conflict | Unprocessable:
    if reason == "item-unavailable":
        return Unprocessable(
            f"catalog item {item_id!r} cannot be given: unknown, withdrawn, out of its validity or not "
            f"in {live.program.budget.currency}",
            code="item-unavailable",
        )
    messages = {
        "out-of-stock": f"catalog item {item_id!r} is out of stock",
        "budget-exhausted": f"the budget of program {live.id} has not enough left for it",
        "member-cap-reached": "it would take the member past the program's per-member cap",
    }
    return Conflict(messages.get(reason or "", f"refused: {reason}"), code=reason or "refused")


async def budget_view(session: AsyncSession, program_id: str) -> BudgetView:
    program = await session.get(Program, program_id)
    if program is None:
        raise NotFound(f"no program {program_id}", code="program-not-found")
    budget = (await program_at(session, program)).budget
    use = await session.get(BudgetUse, program_id)
    committed = use.committed if use else Decimal(0)
    spent = use.spent if use else Decimal(0)
    burn = await session.execute(
        select(Reward.cycle, func.count(), func.sum(Reward.cost))
        .where(Reward.program_id == program_id, Reward.status != "cancelled")
        .group_by(Reward.cycle)
        .order_by(Reward.cycle)
    )
    reasons = await session.execute(
        select(RefusedReward.reason, func.count())
        .where(RefusedReward.program_id == program_id)
        .group_by(RefusedReward.reason)
    )
    return BudgetView(
        program_id=program_id,
        currency=budget.currency,
        allocated=budget.cap,
        committed=committed,
        spent=spent,
        remaining=budget.cap - committed - spent,
        per_member_cap=budget.per_member_cap,
        refusals=use.refusals if use else 0,
        refusals_by_reason={reason: count for reason, count in reasons},
        exhausted_at=use.exhausted_at if use else None,
        burn=[CycleBurn(cycle=c or "none", issued=n, cost=cost) for c, n, cost in burn],
    )
