"""CRM overrides: a tier set by hand, with a reason and an optional end. It is a floor: the member
holds at least that tier while it lasts, and re-qualifies on their figures when it ends."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.errors import NotFound, Unprocessable
from tiers_service import domain
from tiers_service.evaluations import run_due_steps
from tiers_service.ladders import current_ladder
from tiers_service.standings import (
    create_standing,
    current_figures,
    lock_standing,
    record_change,
    save_standing,
)


class OverrideBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: str = Field(min_length=1, max_length=32, description="a tier of the ladder in force")
    reason: str = Field(min_length=1, max_length=500, description="why (kept in the history and the event)")
    until: AwareDatetime | None = Field(
        default=None, description="when the override ends; none: until removed"
    )


async def _standing_for(
    session: AsyncSession, ladder: domain.Ladder, member_id: str, now: datetime
) -> domain.Standing:
    """The member's locked standing, brought up to ``now``; a member never seen enters at the tier
    their figures give (no event of its own: the override's change says it)."""
    standing = await lock_standing(session, member_id)
    if standing is None:
        figures = await current_figures(session, member_id, ladder, now)
        created, _ = domain.join(ladder, member_id, figures, now, joined_at=now)
        if await create_standing(session, created):
            return created
        standing = await lock_standing(session, member_id)
        assert standing is not None
    return await run_due_steps(session, ladder, standing, now)


async def put_override(
    session: AsyncSession, member_id: str, body: OverrideBody, actor: str
) -> domain.Standing:
    ladder = await current_ladder(session)
    now = clock_now(session)
    if not ladder.has(body.tier):
        known = ", ".join(t.name for t in ladder.tiers)
        raise Unprocessable(
            f"tier {body.tier!r} is not on the ladder ({known})", code="unknown-tier", title="Unknown tier"
        )
    if body.until is not None and body.until <= now:
        raise Unprocessable(
            f"until {body.until.isoformat()} is not in the future (now {now.isoformat()})",
            code="override-in-past",
            title="Override ends in the past",
        )
    standing = await _standing_for(session, ladder, member_id, now)
    override = domain.Override(tier=body.tier, reason=body.reason, set_by=actor, set_at=now, until=body.until)
    updated, change = domain.set_override(ladder, standing, override, now)
    await save_standing(session, updated)
    if change is not None:
        await record_change(session, ladder, member_id, change, actor=actor)
    return updated


async def delete_override(session: AsyncSession, member_id: str, actor: str) -> domain.Standing:
    ladder = await current_ladder(session)
    now = clock_now(session)
    locked = await lock_standing(session, member_id)
    standing = None if locked is None else await run_due_steps(session, ladder, locked, now)
    if standing is None or standing.override is None:
        raise NotFound(f"member {member_id} has no tier override (or it has ended)")
    figures = await current_figures(session, member_id, ladder, now)
    updated, change = domain.end_override(ladder, standing, figures, now)
    await save_standing(session, updated)
    if change is not None:
        await record_change(session, ladder, member_id, change, actor=actor)
    return updated
