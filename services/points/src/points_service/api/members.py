"""Members' points: balance, ledger, redemptions, adjustments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from loyalty_shared.api import MemberIdPath, Rt, json_response
from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import problem_responses
from loyalty_shared.idempotency import idempotency_key
from points_service.adjustments import AdjustmentRequest, AdjustmentResult, adjust
from points_service.balances import LedgerPage, PointsBalance, ledger_page, member_balance
from points_service.partners import ensure_may_read
from points_service.redemptions import RedemptionRequest, RedemptionResult, redeem

router = APIRouter(prefix="/v1/members/{member_id}/points", tags=["points"], route_class=AuthenticatedRoute)

Key = Annotated[str, Depends(idempotency_key)]
NOT_YOURS = (404, "a partner key reading a member not linked to its partner")
NOT_ENOUGH = (409, "not enough points")


@router.get("", response_model=PointsBalance, responses=problem_responses(NOT_YOURS, 422))
async def get_balance(
    member_id: MemberIdPath,
    rt: Rt,
    principal: Annotated[Principal, Depends(require("crm", "ecommerce", "partner"))],
) -> Response:
    async with rt.reading() as connection:
        balance = await member_balance(connection, member_id, rt.clock.now(), principal.partner_id)
    return json_response(balance)


@router.get("/ledger", response_model=LedgerPage, responses=problem_responses(400, NOT_YOURS, 422))
async def get_ledger(
    member_id: MemberIdPath,
    rt: Rt,
    principal: Annotated[Principal, Depends(require("crm", "ecommerce", "partner"))],
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> LedgerPage:
    async with rt.sessions() as session:
        await ensure_may_read(session, principal, member_id)
        return await ledger_page(session, member_id, cursor, limit)


@router.post(
    "/redemptions",
    response_model=RedemptionResult,
    status_code=201,
    responses=problem_responses(400, NOT_ENOUGH, 422),
)
async def post_redemption(
    member_id: MemberIdPath,
    body: RedemptionRequest,
    rt: Rt,
    _: Annotated[Principal, Depends(require("ecommerce", "crm"))],  # before the key: authenticate first
    key: Key,
    response: Response,
) -> RedemptionResult:
    async with rt.unit_of_work() as session:
        result, created = await redeem(session, member_id, body, key)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return result


@router.post(
    "/adjustments",
    response_model=AdjustmentResult,
    status_code=201,
    responses=problem_responses(400, (409, "a debit of more points than are available"), 422),
)
async def post_adjustment(
    member_id: MemberIdPath,
    body: AdjustmentRequest,
    rt: Rt,
    _: Annotated[Principal, Depends(require("crm"))],  # before the key: authenticate first
    key: Key,
    response: Response,
) -> AdjustmentResult:
    async with rt.unit_of_work() as session:
        result, created = await adjust(session, member_id, body, key)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return result
