"""CRM administration: earning rules, partner links, the expiry run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from loyalty_shared.api import Rt
from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import NotFound, problem_responses
from points_service import partners
from points_service.earning_rules import RulesBody, RulesView, change_rules, rules_in_force
from points_service.expiry import ExpiryRun, run_expiry

router = APIRouter(prefix="/v1", tags=["administration"], route_class=AuthenticatedRoute)

Crm = Annotated[Principal, Depends(require("crm"))]
Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


@router.get("/rules", response_model=RulesView)
async def get_rules(rt: Rt, _: Crm) -> RulesView:
    async with rt.sessions() as session:
        return await rules_in_force(session)


@router.put("/rules", response_model=RulesView, responses=problem_responses(400, 422))
async def put_rules(body: RulesBody, rt: Rt, principal: Crm) -> RulesView:
    """Put new earning rules in force as a new version; orders processed from now on use them."""
    async with rt.unit_of_work() as session:
        return await change_rules(session, body, actor=f"crm-key:{principal.key_id}")


@router.put("/partners/{partner_id}/members/{member_id}", status_code=204, responses=problem_responses(422))
async def link_partner_member(partner_id: Id, member_id: Id, rt: Rt, _: Crm) -> Response:
    async with rt.unit_of_work() as session:
        await partners.link(session, partner_id, member_id)
    return Response(status_code=204)


@router.delete(
    "/partners/{partner_id}/members/{member_id}",
    status_code=204,
    responses=problem_responses((404, "the member is not linked to the partner"), 422),
)
async def unlink_partner_member(partner_id: Id, member_id: Id, rt: Rt, _: Crm) -> Response:
    async with rt.unit_of_work() as session:
        if not await partners.unlink(session, partner_id, member_id):
            raise NotFound(f"member {member_id} is not linked to partner {partner_id}")
    return Response(status_code=204)


@router.post("/expiry-runs", response_model=ExpiryRun)
async def post_expiry_run(rt: Rt, _: Crm) -> ExpiryRun:
    """Expire every lot due now (the scheduled job does the same); safe to run again."""
    return await run_expiry(rt)
