"""Partners read reward balances of their own members only, against real processes: the points
service owns the links and publishes them; rewards projects them and the points balance."""

from __future__ import annotations

from typing import Any

from conftest import ServiceProcessFactory
from harness import (
    OTHER_PARTNER_KEY,
    PARTNER_KEY,
    SHOP_KEY,
    ServiceProcess,
    assert_problem,
    eventually,
    unique,
)
from test_rewards_redemption import MUG, credit, redeem


async def link(points: ServiceProcess, partner: str, member: str, *, unlink: bool = False) -> None:
    async with points.client() as client:
        path = f"/v1/partners/{partner}/members/{member}"
        response = await (client.delete(path) if unlink else client.put(path))
    assert response.status_code == 204, response.text


async def balances(rewards: ServiceProcess, member: str, key: str) -> Any:
    async with rewards.client(key) as client:
        return await client.get(f"/v1/members/{member}/balances")


async def test_a_partner_key_never_reads_another_partners_member(
    service_factory: ServiceProcessFactory,
) -> None:
    rewards = await service_factory("rewards")
    points = await service_factory("points", prefix=rewards.prefix)
    async with rewards.client() as client:
        assert (await client.post("/v1/catalog", json=MUG)).status_code == 201
    ours, theirs = unique("M"), unique("M")
    await link(points, "P-1", ours)
    await link(points, "P-2", theirs)
    for member in (ours, theirs):
        await credit(points, member, 500)
    assert (await redeem(points, ours, unique("K"))).status_code == 201  # a mug for 100 points

    async def projected() -> Any:
        answer = await balances(rewards, ours, PARTNER_KEY)
        body = answer.json() if answer.status_code == 200 else {}
        return body if body.get("points") == 400 and len(body.get("rewards", [])) == 1 else None

    body = await eventually(projected, what="the partner sees its member's points and gift")
    assert [(r["kind"], r["item_id"]) for r in body["rewards"]] == [("gift", "mug")]
    assert (body["wallet"], body["open_coupons"]) == ([], [])

    for member, key in ((theirs, PARTNER_KEY), (ours, OTHER_PARTNER_KEY), (unique("M"), PARTNER_KEY)):
        assert_problem(await balances(rewards, member, key), 404)
    assert (await balances(rewards, theirs, OTHER_PARTNER_KEY)).status_code == 200
    assert (await balances(rewards, ours, SHOP_KEY)).status_code == 403
    assert (await balances(rewards, theirs, "")).status_code == 401
    async with rewards.client(PARTNER_KEY) as client:  # a partner reads balances, nothing else
        assert (await client.get(f"/v1/members/{ours}/rewards")).status_code == 403
        assert (await client.get(f"/v1/members/{ours}/wallet")).status_code == 403

    await link(points, "P-1", ours, unlink=True)

    async def unlinked() -> bool:
        return (await balances(rewards, ours, PARTNER_KEY)).status_code == 404

    await eventually(unlinked, what="the unlink reaches rewards")
