"""The catalog: gifts, services and coupons that programs give and members redeem, with their stock.

The CRM creates items, edits them (a withdrawn item is neither given nor redeemed) and restocks
them; a restock is a POST with an Idempotency-Key, kept (the item's stock history). Gifts take one
unit each under the item's row lock; a cancelled gift returns it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, model_validator
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.errors import Conflict, NotFound
from loyalty_shared.events.types import Amount, Currency
from loyalty_shared.idempotency import fingerprint, reused_key
from rewards_service.models import CatalogItem, Restock

ItemKind = Literal["gift", "service", "coupon"]
ItemStatus = Literal["active", "withdrawn"]
ITEM_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TIER = r"^[A-Za-z][A-Za-z0-9 ._-]{0,31}$"


class ItemTerms(BaseModel):
    """What the CRM may change on an item (all of it but the id and the kind)."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    currency: Currency
    value: Amount = Field(description="what one unit costs a program's budget, e.g. '25.00'")
    points_price: int | None = Field(
        default=None, ge=1, le=100_000_000, description="what a member redeems it for; none: not redeemable"
    )
    tiers: list[Annotated[str, StringConstraints(pattern=TIER)]] = Field(
        default_factory=list, max_length=32, description="tiers that may redeem it (empty: every tier)"
    )
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    status: ItemStatus = "active"

    @model_validator(mode="after")
    def _window(self) -> ItemTerms:
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class NewItem(ItemTerms):
    item_id: str = Field(pattern=ITEM_ID, description="the CRM's code for it, e.g. 'gift-mug'")
    kind: ItemKind
    stock: int = Field(ge=0, le=100_000_000, description="units on hand")


class RestockBody(BaseModel):
    quantity: int = Field(ge=1, le=100_000_000, description="units added to the stock")
    note: str | None = Field(default=None, max_length=500)


class ItemView(NewItem):
    created_at: datetime
    updated_at: datetime


class ItemList(BaseModel):
    items: list[ItemView]


def _view(item: CatalogItem) -> ItemView:
    return ItemView(
        item_id=item.item_id,
        kind=item.kind,
        name=item.name,
        description=item.description,
        currency=item.currency,
        value=item.value,
        points_price=item.points_price,
        stock=item.stock,
        tiers=list(item.tiers),
        valid_from=item.valid_from,
        valid_until=item.valid_until,
        status=item.status,
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


async def find_item(session: AsyncSession, item_id: str, *, lock: bool = False) -> CatalogItem:
    item = await session.get(CatalogItem, item_id, with_for_update=lock)
    if item is None:
        raise NotFound(f"no catalog item {item_id!r}", code="item-not-found")
    return item


async def create_item(session: AsyncSession, body: NewItem) -> ItemView:
    """A new item; 409 when the id is taken (also by a create that commits while this one runs)."""
    now = clock_now(session)
    created = await session.scalar(
        insert(CatalogItem)
        .values(**body.model_dump(), created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["item_id"])
        .returning(CatalogItem.item_id)
    )
    if created is None:
        raise Conflict(f"catalog item {body.item_id!r} exists already", code="item-exists")
    return await get_item(session, body.item_id)


async def edit_item(session: AsyncSession, item_id: str, terms: ItemTerms) -> ItemView:
    item = await find_item(session, item_id, lock=True)
    for name, value in terms.model_dump().items():
        setattr(item, name, value)
    item.updated_at = clock_now(session)
    return _view(item)


async def restock(session: AsyncSession, item_id: str, body: RestockBody, key: str, actor: str) -> ItemView:
    """Add units; the same Idempotency-Key again adds nothing (a different body: 422)."""
    item = await find_item(session, item_id, lock=True)
    request_hash = fingerprint(body)
    done = await session.scalar(
        select(Restock).where(Restock.item_id == item_id, Restock.idempotency_key == key)
    )
    if done is not None:
        if done.request_hash != request_hash:
            raise reused_key(key)
        return _view(item)
    now = clock_now(session)
    item.stock += body.quantity
    item.updated_at = now
    session.add(
        Restock(
            item_id=item_id,
            idempotency_key=key,
            request_hash=request_hash,
            quantity=body.quantity,
            note=body.note,
            actor=actor,
            at=now,
        )
    )
    return _view(item)


async def get_item(session: AsyncSession, item_id: str) -> ItemView:
    return _view(await find_item(session, item_id))


async def list_items(session: AsyncSession, kind: ItemKind | None, status: ItemStatus | None) -> ItemList:
    query = select(CatalogItem).order_by(CatalogItem.item_id)
    if kind is not None:
        query = query.where(CatalogItem.kind == kind)
    if status is not None:
        query = query.where(CatalogItem.status == status)
    return ItemList(items=[_view(item) for item in await session.scalars(query)])
