"""The checkout API as the e-commerce backend calls it, against a real rewards process: a quote
(ladder and tier rates, coupons, store credit), 50 concurrent uses of one coupon succeed once, the
wallet never goes negative under concurrent spends, an unused coupon expires and gives its budget
back."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import ServiceProcessFactory
from harness import (
    SHOP_KEY,
    ServiceProcess,
    assert_problem,
    consumed,
    eventually,
    paid,
    publish,
    published,
    set_clock,
    tier_changed,
    unique,
)
from test_rewards_settlement import REBATE, activate, settle

Q1 = datetime(2027, 1, 1, tzinfo=UTC)
Q2 = datetime(2027, 4, 1, tzinfo=UTC)
DISCOUNTS: dict[str, Any] = {
    "name": "Key account discounts",
    "objective": "repeat orders",
    "measures": [
        {
            "id": "ladder",
            "kind": "ladder-discount",
            "basis": "volume",
            "steps": [{"min": "1000", "value": "3"}, {"min": "100000", "value": "6"}],
        },
        {"id": "tier", "kind": "tier-discount"},
        {
            "id": "welcome",
            "kind": "one-time-discount",
            "amount": "10.00",
            "min_order": "50.00",
            "valid_days": 30,
        },
    ],
    "schedule": {"starts": Q1.isoformat(), "cycle": "quarter"},
    "budget": {"currency": "EUR", "cap": "5000.00"},
}


async def coupons_for(rewards: ServiceProcess, program_id: str, members: list[str]) -> dict[str, Any]:
    async with rewards.client() as client:
        response = await client.post(
            f"/v1/programs/{program_id}/coupons",
            json={"measure_id": "welcome", "member_ids": members},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def quote(rewards: ServiceProcess, body: dict[str, Any]) -> dict[str, Any]:
    async with rewards.client(SHOP_KEY) as client:
        response = await client.post("/v1/checkout/quote", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_a_quote_gives_the_best_rate_then_coupons_then_store_credit(rewards: ServiceProcess) -> None:
    program_id = await activate(rewards, DISCOUNTS)
    member = unique("M")
    orders = [paid(member, unique("O"), "1200.00", time=Q1 + timedelta(days=3))]
    await publish(rewards.infra, rewards.prefix + "orders", orders)
    await eventually(lambda: consumed(rewards, *orders), what="orders consumed")
    await set_clock(rewards, Q2 + timedelta(days=1))
    [coupon] = (await coupons_for(rewards, program_id, [member]))["issued"]
    basket = {"member_id": member, "currency": "EUR", "basket_total": "200.00"}
    ladder = await quote(rewards, basket | {"coupon_codes": [coupon["code"]]})
    assert [(d["kind"], d["amount"], d["rate"]) for d in ladder["discounts"]] == [
        ("ladder", "6.00", "0.03"),
        ("coupon", "10.00", None),
    ]
    assert "2027-Q1" in ladder["discounts"][0]["reason"]
    assert (ladder["total_discount"], ladder["payable"]) == ("16.00", "184.00")

    gold = tier_changed(member, "Silver", "Gold", "1.5", effective_at=Q2, discount_rate="0.05")
    await publish(rewards.infra, rewards.prefix + "loyalty.tiers", [gold])
    await eventually(lambda: consumed(rewards, gold), what="the tier change consumed")
    tier = await quote(rewards, basket | {"coupon_codes": ["AAAA-AAAA-AAAA-AAAA"]})
    assert [(d["kind"], d["amount"]) for d in tier["discounts"]] == [("tier", "10.00"), ("coupon", "0.00")]
    assert tier["discounts"][1]["reason"] == "no such open coupon for this member"
    async with rewards.client() as client:  # the quote is read-only: the coupon is still open
        assert (await client.get(f"/v1/members/{member}/rewards")).json()["items"][0]["status"] == "issued"


async def test_fifty_concurrent_uses_of_one_coupon_succeed_once(rewards: ServiceProcess) -> None:
    program_id = await activate(rewards, DISCOUNTS)
    await set_clock(rewards, Q1 + timedelta(days=1))  # coupons are issued while the program runs
    member = unique("M")
    [coupon] = (await coupons_for(rewards, program_id, [member]))["issued"]
    use = {"code": coupon["code"], "member_id": member, "currency": "EUR", "basket_total": "80.00"}

    async def attempt(n: int) -> Any:
        async with rewards.client(SHOP_KEY) as client:
            return await client.post(
                "/v1/checkout/coupons/use",
                json=use | {"order_id": f"O-{n}"},
                headers={"Idempotency-Key": f"use-{n}"},
            )

    answers = await asyncio.gather(*(attempt(n) for n in range(50)))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 49
    for answer in answers:
        if answer.status_code == 409:
            assert_problem(answer, 409, "coupon-used")
    winner = next(a for a in answers if a.status_code == 200).json()
    assert winner["discount"] == "10.00"
    again = await attempt(int(winner["order_id"].removeprefix("O-")))  # the winner's retry
    assert (again.status_code, again.json()) == (200, winner)
    async with rewards.client() as client:
        view = (await client.get(f"/v1/programs/{program_id}/budget")).json()
    assert (view["committed"], view["spent"]) == ("0.00", "10.00")
    used = await published(rewards, "loyalty.rewards", event_type="coupon.used", member=member)
    assert [(e["data"]["order_id"], e["data"]["code_hint"]) for e in used] == [
        (winner["order_id"], coupon["code"][-4:])
    ]


async def test_a_coupon_below_its_minimum_or_of_another_member_is_refused(rewards: ServiceProcess) -> None:
    program_id = await activate(rewards, DISCOUNTS)
    await set_clock(rewards, Q1 + timedelta(days=1))  # coupons are issued while the program runs
    member = unique("M")
    [coupon] = (await coupons_for(rewards, program_id, [member]))["issued"]
    use = {"code": coupon["code"], "member_id": member, "currency": "EUR", "order_id": "O-1"}
    async with rewards.client(SHOP_KEY) as client:
        key = {"Idempotency-Key": "k1"}
        low = await client.post("/v1/checkout/coupons/use", json=use | {"basket_total": "49.99"}, headers=key)
        assert_problem(low, 422, "below-minimum-order")
        other = use | {"member_id": unique("M"), "basket_total": "80.00"}
        assert_problem(await client.post("/v1/checkout/coupons/use", json=other, headers=key), 404)
        no_key = await client.post("/v1/checkout/coupons/use", json=use | {"basket_total": "80.00"})
        assert_problem(no_key, 400, "idempotency-key-required")
    async with rewards.client() as client:  # the crm key is not the shop's
        assert (await client.post("/v1/checkout/quote", json={})).status_code == 403


async def test_concurrent_wallet_spends_never_take_it_below_zero(
    service_factory: ServiceProcessFactory,
) -> None:
    rewards = await service_factory("rewards")
    document = copy.deepcopy(REBATE)
    document["measures"][0] |= {"pay_as": "cash"}
    document["budget"].pop("point_value")
    await activate(rewards, document)
    member = unique("M")
    orders = [paid(member, unique("O"), "1500.00", time=Q1 + timedelta(days=1))]  # 2 %: 30.00
    await publish(rewards.infra, rewards.prefix + "orders", orders)
    await eventually(lambda: consumed(rewards, *orders), what="orders consumed")
    await set_clock(rewards, Q2)
    assert (await settle(rewards))["paid"] == 1

    async def spend(n: int) -> Any:
        async with rewards.client(SHOP_KEY) as client:
            return await client.post(
                "/v1/checkout/wallet/spend",
                json={"member_id": member, "currency": "EUR", "amount": "7.00", "order_id": f"O-{n}"},
                headers={"Idempotency-Key": f"spend-{n}"},
            )

    answers = await asyncio.gather(*(spend(n) for n in range(10)))
    assert sorted(a.status_code for a in answers) == [200] * 4 + [409] * 6
    async with rewards.client() as client:
        wallet = (await client.get(f"/v1/members/{member}/wallet")).json()
    assert wallet["balances"] == [{"currency": "EUR", "balance": "2.00"}]
    assert sorted(e["balance_after"] for e in wallet["entries"]) == sorted(
        ["30.00", "23.00", "16.00", "9.00", "2.00"]
    )


async def test_an_unused_coupon_expires_and_gives_its_budget_back(
    service_factory: ServiceProcessFactory,
) -> None:
    rewards = await service_factory("rewards", LOYALTY_SETTLEMENT_INTERVAL_S="0.5")
    program_id = await activate(rewards, DISCOUNTS)
    await set_clock(rewards, Q1 + timedelta(days=1))  # coupons are issued while the program runs
    members = [unique("M"), unique("M")]
    issued = (await coupons_for(rewards, program_id, members))["issued"]
    assert len(issued) == 2
    async with rewards.client() as client:
        assert (await client.get(f"/v1/programs/{program_id}/budget")).json()["committed"] == "20.00"
    expires = datetime.fromisoformat(issued[0]["expires_at"])
    await set_clock(rewards, expires + timedelta(seconds=1))

    async def released() -> bool:
        async with rewards.client() as client:
            view = (await client.get(f"/v1/programs/{program_id}/budget")).json()
        return bool(view["committed"] == "0.00" and view["remaining"] == "5000.00")

    await eventually(released, what="the coupons' commitment released")
    async with rewards.client() as client:
        statuses = [
            (await client.get(f"/v1/members/{m}/rewards")).json()["items"][0]["status"] for m in members
        ]
    assert statuses == ["expired", "expired"]


async def test_no_coupon_is_issued_before_the_program_starts(rewards: ServiceProcess) -> None:
    program_id = await activate(rewards, DISCOUNTS)  # starts in 2027; the clock reads today
    async with rewards.client() as client:
        response = await client.post(
            f"/v1/programs/{program_id}/coupons",
            json={"measure_id": "welcome", "member_ids": [unique("M")]},
            headers={"Idempotency-Key": "early"},
        )
    assert_problem(response, 409, "outside-schedule")
