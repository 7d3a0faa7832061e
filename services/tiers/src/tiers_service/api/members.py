"""Members' tiers: the tier with its explanation, the history, CRM overrides."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import problem_responses
from loyalty_shared.service import Runtime, runtime
from tiers_service.overrides import OverrideBody, delete_override, put_override
from tiers_service.views import HistoryPage, MemberTier, history_page, member_tier

router = APIRouter(prefix="/v1/members/{member_id}/tier", tags=["tiers"], route_class=AuthenticatedRoute)

MemberId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", description="the member's id")]
Rt = Annotated[Runtime, Depends(runtime)]
Crm = Annotated[Principal, Depends(require("crm"))]


@router.get("", response_model=MemberTier, responses=problem_responses(422))
async def get_tier(member_id: MemberId, rt: Rt, _: Crm) -> MemberTier:
    """The tier in force and since when, the figures and rule behind it, what the next tier needs,
    what keeping the tier takes at the next evaluation, and the benefits in force."""
    async with rt.sessions() as session:
        return await member_tier(session, member_id)


@router.get("/history", response_model=HistoryPage, responses=problem_responses(400, 422))
async def get_history(
    member_id: MemberId,
    rt: Rt,
    _: Crm,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> HistoryPage:
    async with rt.sessions() as session:
        return await history_page(session, member_id, cursor, limit)


@router.put("/override", response_model=MemberTier, responses=problem_responses(400, 422))
async def put_tier_override(member_id: MemberId, body: OverrideBody, rt: Rt, principal: Crm) -> MemberTier:
    """Hold the member at ``tier`` at least (a floor) until ``until`` or until removed; replaces an
    earlier override. Publishes ``tier.changed`` when the tier in force changes."""
    async with rt.unit_of_work() as session:
        await put_override(session, member_id, body, actor=f"crm-key:{principal.key_id}")
    async with rt.sessions() as session:
        return await member_tier(session, member_id)


@router.delete("/override", status_code=204, responses=problem_responses((404, "no override to remove"), 422))
async def delete_tier_override(member_id: MemberId, rt: Rt, principal: Crm) -> Response:
    """End the override now: the member stands on the earned tier, promoted if the figures qualify."""
    async with rt.unit_of_work() as session:
        await delete_override(session, member_id, actor=f"crm-key:{principal.key_id}")
    return Response(status_code=204)
