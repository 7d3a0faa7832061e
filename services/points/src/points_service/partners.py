"""Which members a partner serves. A partner key reads those members' points and nothing else."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.auth import Principal
from loyalty_shared.errors import NotFound
from points_service.models import PartnerMember


async def link(session: AsyncSession, partner_id: str, member_id: str) -> None:
    await session.execute(
        insert(PartnerMember).values(partner_id=partner_id, member_id=member_id).on_conflict_do_nothing()
    )


async def unlink(session: AsyncSession, partner_id: str, member_id: str) -> bool:
    result = await session.execute(
        delete(PartnerMember).where(
            PartnerMember.partner_id == partner_id, PartnerMember.member_id == member_id
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def ensure_may_read(session: AsyncSession, principal: Principal, member_id: str) -> None:
    """A partner reading a member it does not serve gets 404: it learns nothing about that member."""
    if principal.scope != "partner":
        return
    linked = await session.scalar(
        select(PartnerMember.member_id).where(
            PartnerMember.partner_id == principal.partner_id, PartnerMember.member_id == member_id
        )
    )
    if linked is None:
        raise NotFound(f"member {member_id} is not one of partner {principal.partner_id}'s members")
