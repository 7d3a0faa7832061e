"""Catalog redemption, a saga across two real processes (points debits, rewards fulfils from stock,
a failure is given back by points), on one broker, each service its own PostgreSQL database."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from conftest import ServiceProcessFactory
from harness import SHOP_KEY, ServiceProcess, count, eventually, published, unique

MUG: dict[str, Any] = {
    "item_id": "mug",
    "kind": "gift",
    "name": "Mug",
    "currency": "EUR",
    "value": "4.00",
    "points_price": 100,
    "stock": 10,
}


async def credit(points: ServiceProcess, member: str, amount: int) -> None:
    async with points.client() as client:
        response = await client.post(
            f"/v1/members/{member}/points/adjustments",
            json={"points": amount, "reason": "welcome credit", "actor": "test"},
            headers={"Idempotency-Key": unique("K")},
        )
    assert response.status_code in (200, 201), response.text


async def redeem(points: ServiceProcess, member: str, key: str, item: str = "mug", amount: int = 100) -> Any:
    async with points.client(SHOP_KEY) as client:
        return await client.post(
            f"/v1/members/{member}/points/redemptions",
            json={"points": amount, "description": f"catalog {item}", "reference": f"catalog:{item}"},
            headers={"Idempotency-Key": key},
        )


async def balance(points: ServiceProcess, member: str) -> int:
    async with points.client() as client:
        body = (await client.get(f"/v1/members/{member}/points")).json()
    return int(body["available"])


async def test_200_concurrent_redemptions_of_10_in_stock_fulfil_10_and_give_the_rest_back(
    service_factory: ServiceProcessFactory,
) -> None:
    rewards = await service_factory("rewards")
    points = await service_factory("points", prefix=rewards.prefix)
    async with rewards.client() as client:
        assert (await client.post("/v1/catalog", json=MUG)).status_code == 201
    members = [unique("M") for _ in range(40)]
    await asyncio.gather(*(credit(points, m, 500) for m in members))
    attempts = [(m, f"{m}-r{n}") for m in members for n in range(5)]  # 200 redemptions
    answers = await asyncio.gather(*(redeem(points, m, key) for m, key in attempts))
    assert [a.status_code for a in answers] == [201] * 200

    async def settled() -> bool:
        done = await count(rewards, "SELECT count(*) FROM redemptions")
        refunded = await count(rewards, "SELECT count(*) FROM redemptions WHERE status = 'refunded'")
        return done == 200 and refunded == 190

    await eventually(settled, timeout=90, what="every redemption fulfilled or refunded")
    assert await count(rewards, "SELECT count(*) FROM redemptions WHERE status = 'fulfilled'") == 10
    assert await count(rewards, "SELECT stock FROM catalog_items WHERE item_id = 'mug'") == 0
    fulfilled = Counter(
        r["member_id"]
        for r in await rewards.fetch("SELECT member_id FROM redemptions WHERE status = 'fulfilled'")
    )
    reasons = {
        r["reason"] for r in await rewards.fetch("SELECT reason FROM redemptions WHERE status <> 'fulfilled'")
    }
    assert reasons == {"out of stock"}
    balances = await asyncio.gather(*(balance(points, m) for m in members))
    assert balances == [500 - 100 * fulfilled[m] for m in members]
    assert await count(points, "SELECT count(*) FROM ledger_entries WHERE entry_type = 'restore'") == 190
    await points.assert_ledger_consistent()
    gifts = await published(rewards, "loyalty.rewards", event_type="reward.issued")
    assert len(gifts) == 10
    failed = await published(rewards, "loyalty.rewards", event_type="redemption.failed")
    assert len(failed) == 190 and len({e["data"]["redemption_id"] for e in failed}) == 190


async def test_a_redemption_failed_for_its_tier_or_price_is_given_back_and_a_cancelled_gift_too(
    service_factory: ServiceProcessFactory,
) -> None:
    rewards = await service_factory("rewards")
    points = await service_factory("points", prefix=rewards.prefix)
    async with rewards.client() as client:
        gold_only = MUG | {"item_id": "gold-mug", "tiers": ["Gold"]}
        for item in (MUG, gold_only):
            assert (await client.post("/v1/catalog", json=item)).status_code == 201
    member = unique("M")
    await credit(points, member, 1000)
    wrong_tier = await redeem(points, member, unique("K"), item="gold-mug")
    wrong_price = await redeem(points, member, unique("K"), amount=90)
    unknown = await redeem(points, member, unique("K"), item="no-such-item")
    good = await redeem(points, member, unique("K"))
    assert [a.status_code for a in (wrong_tier, wrong_price, unknown, good)] == [201] * 4

    async def views() -> list[dict[str, Any]] | None:
        async with rewards.client() as client:
            items: list[dict[str, Any]] = (await client.get(f"/v1/members/{member}/redemptions")).json()[
                "items"
            ]
        return items if len(items) == 4 and sum(i["status"] == "refunded" for i in items) == 3 else None

    seen = await eventually(views, what="three refunded, one fulfilled")
    by_id = {v["redemption_id"]: v for v in seen}
    assert by_id[wrong_tier.json()["redemption_id"]]["reason"] == "item is for tiers Gold only"
    assert "costs 100 points, 90 were debited" in by_id[wrong_price.json()["redemption_id"]]["reason"]
    assert by_id[unknown.json()["redemption_id"]]["reason"] == "unknown item"
    assert await balance(points, member) == 900

    gift = by_id[good.json()["redemption_id"]]
    async with rewards.client() as client:
        response = await client.put(
            f"/v1/rewards/{gift['reward_id']}/fulfilment", json={"status": "cancelled"}
        )
        assert response.status_code == 200, response.text
    await eventually(lambda: _balance_is(points, member, 1000), what="the cancelled gift's points given back")
    assert await count(rewards, "SELECT stock FROM catalog_items WHERE item_id = 'mug'") == 10
    await points.assert_ledger_consistent()


async def _balance_is(points: ServiceProcess, member: str, expected: int) -> bool:
    return await balance(points, member) == expected
