"""Members' tiers: the tier with its explanation, the history, CRM overrides."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from loyalty_shared.api import MemberIdPath, Rt, json_response
from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import problem_responses
from tiers_service.overrides import OverrideBody, delete_override, put_override
from tiers_service.views import HistoryPage, MemberTier, history_page, read_member_tier

router = APIRouter(prefix="/v1/members/{member_id}/tier", tags=["tiers"], route_class=AuthenticatedRoute)

Crm = Annotated[Principal, Depends(require("crm"))]


@router.get("", response_model=MemberTier, responses=problem_responses(422))
async def get_tier(member_id: MemberIdPath, rt: Rt, _: Crm) -> Response:
    """The tier in force and since when, the figures and rule behind it, what the next tier needs,
    what keeping the tier takes at the next evaluation, and the benefits in force."""
    async with rt.reading() as connection:
        return json_response(await read_member_tier(connection, member_id, rt.clock.now()))


@router.get("/history", response_model=HistoryPage, responses=problem_responses(400, 422))
async def get_history(
    member_id: MemberIdPath,
    rt: Rt,
    _: Crm,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> HistoryPage:
    async with rt.sessions() as session:
        return await history_page(session, member_id, cursor, limit)


@router.put("/override", response_model=MemberTier, responses=problem_responses(400, 422))
async def put_tier_override(member_id: MemberIdPath, body: OverrideBody, rt: Rt, principal: Crm) -> Response:
    """Hold the member at ``tier`` at least (a floor) until ``until`` or until removed; replaces an
    earlier override. Publishes ``tier.changed`` when the tier in force changes."""
    async with rt.unit_of_work() as session:
        await put_override(session, member_id, body, actor=f"crm-key:{principal.key_id}")
    async with rt.reading() as connection:
        return json_response(await read_member_tier(connection, member_id, rt.clock.now()))


@router.delete("/override", status_code=204, responses=problem_responses((404, "no override to remove"), 422))
async def delete_tier_override(member_id: MemberIdPath, rt: Rt, principal: Crm) -> Response:
    """End the override now: the member stands on the earned tier, promoted if the figures qualify."""
    async with rt.unit_of_work() as session:
        await delete_override(session, member_id, actor=f"crm-key:{principal.key_id}")
    return Response(status_code=204)
