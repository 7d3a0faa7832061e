"""Smoke: the tiers service starts, consumes an order, promotes, and points sees the tier."""

from __future__ import annotations

from conftest import Platform
from harness import eventually, paid, publish, unique


async def test_an_order_promotes_and_points_sees_the_tier(platform: Platform) -> None:
    member = unique("M")
    await publish(platform.tiers.infra, platform.prefix + "orders", [paid(member, unique("O"), "250000.00")])

    async def tier() -> object:
        body = await platform.tiers.get(f"/v1/members/{member}/tier")
        return body if body["known"] else None

    view = await eventually(tier, what="member known to tiers")
    assert view["tier"] == "Gold", view
    print(view["explanation"])

    async def points_tier() -> object:
        balance = await platform.points.balance(member)
        return balance if balance["tier"] == "Gold" else None

    await eventually(points_tier, what="points projected Gold")
