"""Entitlements (priority purchase rights, custom services) and product launches: the CRM grants,
revokes and records service use; the e-commerce backend asks whether a member may buy a SKU now and
consumes the right at checkout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from loyalty_shared.api import MemberIdPath, Rt, json_response
from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import problem_responses
from loyalty_shared.idempotency import idempotency_key
from rewards_service.entitlements import (
    ConsumeBody,
    ConsumptionView,
    EntitlementList,
    EntitlementView,
    GrantBody,
    LaunchBody,
    LaunchView,
    UseBody,
    consume,
    consumptions,
    create_launch,
    grant,
    launch_list,
    launch_view,
    member_entitlements,
    revoke,
    use,
)

router = APIRouter(tags=["entitlements"], route_class=AuthenticatedRoute)

Crm = Annotated[Principal, Depends(require("crm"))]
ShopOrCrm = Annotated[Principal, Depends(require("ecommerce", "crm"))]
Key = Annotated[str, Depends(idempotency_key)]
Uuid = Path(pattern=r"^[0-9a-f-]{36}$")
EntitlementId = Annotated[str, Uuid]
LaunchId = Annotated[str, Uuid]
NO_ENTITLEMENT = (404, "no such entitlement")
STORABLE = r"^[^\x00]+$"  # text PostgreSQL can store: no NUL


def _actor(principal: Principal) -> str:
    return f"crm-key:{principal.key_id}"


@router.get(
    "/v1/members/{member_id}/entitlements",
    response_model=EntitlementList,
    responses=problem_responses(422),
)
async def get_entitlements(
    member_id: MemberIdPath,
    rt: Rt,
    _: ShopOrCrm,
    sku: Annotated[str | None, Query(min_length=1, max_length=64, pattern=STORABLE)] = None,
    category: Annotated[str | None, Query(min_length=1, max_length=64, pattern=STORABLE)] = None,
    quantity: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The member's rights with their state now; with ``?sku=`` (and its category), whether the
    member may buy (pre-order) it now and under which right: the checkout's question. Read-only."""
    async with rt.reading() as connection:
        found = await member_entitlements(connection, member_id, rt.clock.now(), sku, category, quantity)
    return json_response(found)


@router.post(
    "/v1/members/{member_id}/entitlements",
    status_code=201,
    response_model=EntitlementView,
    responses=problem_responses(400, 422),
)
async def post_entitlement(
    member_id: MemberIdPath, body: GrantBody, key: Key, rt: Rt, principal: Crm
) -> EntitlementView:
    """Grant the member a priority purchase right or a custom service, once per Idempotency-Key."""
    async with rt.unit_of_work() as session:
        return await grant(session, member_id, body, key, _actor(principal))


@router.post(
    "/v1/members/{member_id}/entitlements/consume",
    response_model=ConsumptionView,
    responses=problem_responses(
        400, (409, "no right in force covers the SKU (or its quota is used), or its window is not open"), 422
    ),
)
async def post_consume(
    member_id: MemberIdPath, body: ConsumeBody, key: Key, rt: Rt, _: ShopOrCrm
) -> ConsumptionView:
    """A purchase under the member's right for the SKU, at checkout: once per Idempotency-Key, never
    past the quota. Cancelling the order, or refunding it in full, gives the units back."""
    async with rt.unit_of_work() as session:
        return await consume(session, member_id, body, key)


@router.post(
    "/v1/entitlements/{entitlement_id}/consumptions",
    response_model=ConsumptionView,
    responses=problem_responses(400, NO_ENTITLEMENT, (409, "not in force, or not that much left"), 422),
)
async def post_use(entitlement_id: EntitlementId, body: UseBody, key: Key, rt: Rt, _: Crm) -> ConsumptionView:
    """Sessions or hours of a custom service (or units of any right) used, once per Idempotency-Key."""
    async with rt.unit_of_work() as session:
        return await use(session, entitlement_id, body, key)


@router.get(
    "/v1/entitlements/{entitlement_id}/consumptions",
    response_model=list[ConsumptionView],
    responses=problem_responses(NO_ENTITLEMENT, 422),
)
async def get_consumptions(entitlement_id: EntitlementId, rt: Rt, _: Crm) -> list[ConsumptionView]:
    """The entitlement's consumption log, oldest first (given-back ones say when)."""
    async with rt.sessions() as session:
        return await consumptions(session, entitlement_id)


@router.post(
    "/v1/entitlements/{entitlement_id}/revoke",
    response_model=EntitlementView,
    responses=problem_responses(NO_ENTITLEMENT, 422),
)
async def post_revoke(entitlement_id: EntitlementId, rt: Rt, principal: Crm) -> EntitlementView:
    """End the right now (idempotent)."""
    async with rt.unit_of_work() as session:
        return await revoke(session, entitlement_id, _actor(principal))


@router.post(
    "/v1/launches", status_code=201, response_model=LaunchView, responses=problem_responses(400, 422)
)
async def post_launch(body: LaunchBody, rt: Rt, principal: Crm) -> LaunchView:
    """A product launch: a priority window for its SKUs, from ``opens_at`` to ``public_at``."""
    async with rt.unit_of_work() as session:
        return await create_launch(session, body, _actor(principal))


@router.get("/v1/launches", response_model=list[LaunchView])
async def get_launches(rt: Rt, _: Crm) -> list[LaunchView]:
    """The launches, newest window first, with how many rights were used in each."""
    async with rt.sessions() as session:
        return await launch_list(session)


@router.get(
    "/v1/launches/{launch_id}",
    response_model=LaunchView,
    responses=problem_responses((404, "no such launch"), 422),
)
async def get_launch(launch_id: LaunchId, rt: Rt, _: Crm) -> LaunchView:
    async with rt.sessions() as session:
        return await launch_view(session, launch_id)
