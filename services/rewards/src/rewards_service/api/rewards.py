"""CRM: issued rewards (a member's, one gift's fulfilment), custom gifts and program budgets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from loyalty_shared.api import MemberIdPath, Rt
from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import Problem, problem_responses
from loyalty_shared.idempotency import idempotency_key
from rewards_service.api.programs import ProgramId
from rewards_service.balances import MemberBalances, member_balances
from rewards_service.coupons import CouponIssue, CouponIssueResult, issue_coupons
from rewards_service.redemptions import RedemptionList, member_redemptions
from rewards_service.rewards import (
    BudgetView,
    CustomGiftBody,
    FulfilmentBody,
    RewardList,
    RewardView,
    budget_view,
    change_fulfilment,
    custom_gift,
    get_reward,
    member_rewards,
)

router = APIRouter(tags=["rewards"], route_class=AuthenticatedRoute)

Crm = Annotated[Principal, Depends(require("crm"))]
Key = Annotated[str, Depends(idempotency_key)]
RewardId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$", description="the reward's id")]
NO_PROGRAM = (404, "no such program")
NO_REWARD = (404, "no such reward")


@router.get("/v1/members/{member_id}/rewards", response_model=RewardList, responses=problem_responses(422))
async def get_member_rewards(member_id: MemberIdPath, rt: Rt, _: Crm) -> RewardList:
    async with rt.sessions() as session:
        return await member_rewards(session, member_id)


@router.get(
    "/v1/members/{member_id}/balances",
    response_model=MemberBalances,
    responses=problem_responses((404, "a partner key reading a member not linked to its partner"), 422),
)
async def get_member_balances(
    member_id: MemberIdPath, rt: Rt, principal: Annotated[Principal, Depends(require("crm", "partner"))]
) -> MemberBalances:
    """What the member holds: points (projected from the points service), store credit, open coupons
    and issued rewards. A partner key reads its own members only."""
    async with rt.sessions() as session:
        return await member_balances(session, principal, member_id)


@router.get(
    "/v1/members/{member_id}/redemptions", response_model=RedemptionList, responses=problem_responses(422)
)
async def get_member_redemptions(member_id: MemberIdPath, rt: Rt, _: Crm) -> RedemptionList:
    """The member's catalog redemptions: fulfilled, or failed and (once points gave them back) refunded."""
    async with rt.sessions() as session:
        return await member_redemptions(session, member_id)


@router.get("/v1/rewards/{reward_id}", response_model=RewardView, responses=problem_responses(NO_REWARD, 422))
async def get_one(reward_id: RewardId, rt: Rt, _: Crm) -> RewardView:
    async with rt.sessions() as session:
        return await get_reward(session, reward_id)


@router.put(
    "/v1/rewards/{reward_id}/fulfilment",
    response_model=RewardView,
    responses=problem_responses(400, NO_REWARD, (409, "not a gift, or not allowed from its status"), 422),
)
async def put_fulfilment(reward_id: RewardId, body: FulfilmentBody, rt: Rt, principal: Crm) -> RewardView:
    """Move a gift along issued → shipped → delivered, or cancel it (its unit goes back to stock)."""
    async with rt.unit_of_work() as session:
        return await change_fulfilment(session, reward_id, body, f"crm-key:{principal.key_id}")


@router.post(
    "/v1/programs/{program_id}/gifts",
    status_code=201,
    response_model=RewardView,
    responses=problem_responses(
        400,
        NO_PROGRAM,
        (409, "the program is not active, the member is in its control group, no stock or no budget"),
        422,
    ),
)
async def post_gift(
    program_id: ProgramId, body: CustomGiftBody, key: Key, rt: Rt, principal: Crm
) -> RewardView:
    """A custom gift from the catalog under the program's budget, once per Idempotency-Key."""
    async with rt.unit_of_work() as session:
        result = await custom_gift(session, program_id, body, key, f"crm-key:{principal.key_id}")
    if isinstance(result, Problem):
        raise result  # refused: the refusal is recorded (committed above)
    return result


@router.get(
    "/v1/programs/{program_id}/budget",
    response_model=BudgetView,
    responses=problem_responses(NO_PROGRAM, 422),
)
async def get_budget(program_id: ProgramId, rt: Rt, _: Crm) -> BudgetView:
    """Allocated, committed, spent, remaining, refusals, and the burn per cycle."""
    async with rt.unit_of_work() as session:
        return await budget_view(session, program_id)


@router.post(
    "/v1/programs/{program_id}/coupons",
    status_code=201,
    response_model=CouponIssueResult,
    responses=problem_responses(400, NO_PROGRAM, (409, "the program is not active"), 422),
)
async def post_coupons(
    program_id: ProgramId, body: CouponIssue, key: Key, rt: Rt, _: Crm
) -> CouponIssueResult:
    """Single-use coupons of the program's one-time discount for the members named (control members
    are skipped), once per Idempotency-Key; the codes are in the answer."""
    async with rt.unit_of_work() as session:
        return await issue_coupons(session, program_id, body, key)
