"""Catalog redemption, the rewards side of the saga: points has debited the member (``points.redeemed``
with the reference ``catalog:<item id>``); rewards fulfils it from stock or says why it cannot, and
then points gives the points back.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

REFERENCE_PREFIX = "catalog:"


def catalog_item_of(reference: str | None) -> str | None:
    """The catalog item a redemption's reference names (``catalog:<item id>``); None for a
    redemption that is not a catalog one (points pays for other things too)."""
    if reference is None or not reference.startswith(REFERENCE_PREFIX):
        return None
    item = reference[len(REFERENCE_PREFIX) :]
    return item or None


@dataclass(frozen=True)
class Redeemable:
    """What a redemption is judged on: the item as it stands under its lock."""

    status: str
    points_price: int | None
    stock: int
    tiers: Collection[str]
    valid_from: datetime | None
    valid_until: datetime | None


def redemption_problem(item: Redeemable | None, points: int, tier: str | None, at: datetime) -> str | None:
    """Why the redemption cannot be fulfilled, or None: the item exists, is active and valid at
    ``at``, is redeemable at exactly the points debited, is open to the member's tier, and is in stock."""
    if item is None:
        return "unknown item"
    if item.status != "active":
        return "item withdrawn"
    if (item.valid_from is not None and at < item.valid_from) or (
        item.valid_until is not None and at >= item.valid_until
    ):
        return "item not valid now"
    if item.points_price is None:
        return "item not redeemable for points"
    if points != item.points_price:
        return f"item costs {item.points_price} points, {points} were debited"
    if item.tiers and tier not in item.tiers:
        return f"item is for tiers {', '.join(sorted(item.tiers))} only"
    if item.stock <= 0:
        return "out of stock"
    return None
