"""What a member holds in rewards, as the CRM and the member's partner read it: the points balance
(projected from ``loyalty.points``; points is the authority), store credit, open coupons and issued
rewards. A partner key reads only the members linked to its partner (links projected from the
points service, their owner); any other member is a 404, so it learns nothing of them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.auth import Principal
from loyalty_shared.errors import NotFound
from loyalty_shared.events.types import Amount
from rewards_service.models import CouponCode, PartnerMember, PointsBalance
from rewards_service.rewards import RewardView, member_rewards
from rewards_service.wallet import WalletBalance, wallet_of


class OpenCoupon(BaseModel):
    code_hint: str = Field(description="the code's last four characters")
    percent: Amount | None
    amount: Amount | None
    min_order: Amount
    currency: str
    expires_at: datetime


class MemberBalances(BaseModel):
    member_id: str
    points: int | None = Field(description="the points ledger's sum as the points service published it")
    points_as_of: datetime | None
    wallet: list[WalletBalance]
    open_coupons: list[OpenCoupon]
    rewards: list[RewardView]


async def ensure_may_read(session: AsyncSession, principal: Principal, member_id: str) -> None:
    if principal.scope != "partner":
        return
    linked = await session.get(PartnerMember, (principal.partner_id, member_id))
    if linked is None:
        raise NotFound(f"member {member_id} is not one of partner {principal.partner_id}'s members")


async def member_balances(session: AsyncSession, principal: Principal, member_id: str) -> MemberBalances:
    await ensure_may_read(session, principal, member_id)
    points = await session.get(PointsBalance, member_id)
    coupons = await session.scalars(
        select(CouponCode)
        .where(CouponCode.member_id == member_id, CouponCode.status == "open")
        .order_by(CouponCode.expires_at)
    )
    return MemberBalances(
        member_id=member_id,
        points=None if points is None else points.points,
        points_as_of=None if points is None else points.as_of,
        wallet=(await wallet_of(session, member_id)).balances,
        open_coupons=[
            OpenCoupon(
                code_hint=c.code[-4:],
                percent=c.percent,
                amount=c.amount,
                min_order=c.min_order,
                currency=c.currency,
                expires_at=c.expires_at,
            )
            for c in coupons
        ],
        rewards=(await member_rewards(session, member_id)).items,
    )
