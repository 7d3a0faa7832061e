"""CRM administration: the ladder and evaluations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from loyalty_shared.api import Rt
from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import problem_responses
from tiers_service.evaluations import EvaluationSummary, run_evaluation
from tiers_service.ladders import LadderBody, LadderView, change_ladder, ladder_in_force

router = APIRouter(prefix="/v1", tags=["administration"], route_class=AuthenticatedRoute)

Crm = Annotated[Principal, Depends(require("crm"))]


@router.get("/tiers", response_model=LadderView)
async def get_ladder(rt: Rt, _: Crm) -> LadderView:
    async with rt.sessions() as session:
        return await ladder_in_force(session)


@router.put(
    "/tiers",
    response_model=LadderView,
    responses=problem_responses(400, (409, "members hold a tier the new ladder drops"), 422),
)
async def put_ladder(body: LadderBody, rt: Rt, principal: Crm) -> LadderView:
    """Put a new ladder in force as a new version; orders and evaluations from now on use it."""
    async with rt.unit_of_work() as session:
        return await change_ladder(session, body, actor=f"crm-key:{principal.key_id}")


@router.post("/evaluations", response_model=EvaluationSummary)
async def post_evaluation(rt: Rt, _: Crm) -> EvaluationSummary:
    """Run every evaluation step due now (the scheduled job does the same); safe to run again."""
    return await run_evaluation(rt)
