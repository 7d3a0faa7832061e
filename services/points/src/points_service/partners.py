"""Which members a partner serves. A partner key reads those members' points and nothing else.

The points service owns the links (one source of truth); a change publishes ``partner.linked`` or
``partner.unlinked`` (under the member's account lock, so one member's changes keep their order),
and the rewards service keeps its copy from those."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.auth import Principal
from loyalty_shared.clock import now as clock_now
from loyalty_shared.errors import NotFound
from loyalty_shared.events import PartnerLinked, PartnerUnlinked
from loyalty_shared.messaging.outbox import publish
from points_service.ledger import lock_account
from points_service.models import PartnerMember


async def link(session: AsyncSession, partner_id: str, member_id: str) -> None:
    await lock_account(session, member_id)
    linked = await session.scalar(
        insert(PartnerMember)
        .values(partner_id=partner_id, member_id=member_id)
        .on_conflict_do_nothing()
        .returning(PartnerMember.member_id)
    )
    if linked is not None:
        event = PartnerLinked(partner_id=partner_id, member_id=member_id, at=clock_now(session))
        publish(session, event, member_id)


async def unlink(session: AsyncSession, partner_id: str, member_id: str) -> bool:
    await lock_account(session, member_id)
    result = await session.execute(
        delete(PartnerMember).where(
            PartnerMember.partner_id == partner_id, PartnerMember.member_id == member_id
        )
    )
    if not getattr(result, "rowcount", 0):
        return False
    publish(
        session, PartnerUnlinked(partner_id=partner_id, member_id=member_id, at=clock_now(session)), member_id
    )
    return True


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
