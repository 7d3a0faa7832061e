"""CRM: the catalog of gifts, services and coupons, and their stock."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from loyalty_shared.api import Rt
from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import problem_responses
from loyalty_shared.idempotency import idempotency_key
from rewards_service.catalog import (
    ITEM_ID,
    ItemKind,
    ItemList,
    ItemStatus,
    ItemTerms,
    ItemView,
    NewItem,
    RestockBody,
    create_item,
    edit_item,
    get_item,
    list_items,
    restock,
)

router = APIRouter(prefix="/v1/catalog", tags=["catalog"], route_class=AuthenticatedRoute)

Crm = Annotated[Principal, Depends(require("crm"))]
Reader = Annotated[Principal, Depends(require("crm", "ecommerce"))]
ItemId = Annotated[str, Path(pattern=ITEM_ID, description="the item's code")]
Key = Annotated[str, Depends(idempotency_key)]
NO_ITEM = (404, "no such item")


@router.post(
    "", status_code=201, response_model=ItemView, responses=problem_responses(400, (409, "exists"), 422)
)
async def post_item(body: NewItem, rt: Rt, _: Crm) -> ItemView:
    async with rt.unit_of_work() as session:
        return await create_item(session, body)


@router.get("", response_model=ItemList, responses=problem_responses(422))
async def get_items(
    rt: Rt, _: Reader, kind: ItemKind | None = None, status: ItemStatus | None = None
) -> ItemList:
    async with rt.sessions() as session:
        return await list_items(session, kind, status)


@router.get("/{item_id}", response_model=ItemView, responses=problem_responses(NO_ITEM, 422))
async def get_one(item_id: ItemId, rt: Rt, _: Reader) -> ItemView:
    async with rt.sessions() as session:
        return await get_item(session, item_id)


@router.put("/{item_id}", response_model=ItemView, responses=problem_responses(400, NO_ITEM, 422))
async def put_item(item_id: ItemId, terms: ItemTerms, rt: Rt, _: Crm) -> ItemView:
    """Change an item's terms (its stock moves by restocks, gifts and redemptions)."""
    async with rt.unit_of_work() as session:
        return await edit_item(session, item_id, terms)


@router.post("/{item_id}/restocks", response_model=ItemView, responses=problem_responses(400, NO_ITEM, 422))
async def post_restock(item_id: ItemId, body: RestockBody, key: Key, rt: Rt, principal: Crm) -> ItemView:
    """Add units to the stock, once per Idempotency-Key."""
    async with rt.unit_of_work() as session:
        return await restock(session, item_id, body, key, f"crm-key:{principal.key_id}")
