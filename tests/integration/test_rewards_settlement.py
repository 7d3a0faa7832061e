"""Rebates settled at cycle close, as real processes (rewards and points on one broker, each its own
PostgreSQL database): a quarter's rebate settles once and is credited once in points; a late refund
adjusts the next statement and never rewrites the closed one; a cash rebate lands in the wallet."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import ServiceProcessFactory
from harness import (
    ServiceProcess,
    consumed,
    count,
    eventually,
    paid,
    publish,
    published,
    read_to_end,
    refunded,
    set_clock,
    unique,
)

from loyalty_shared.envelope import new_event
from loyalty_shared.events import RebateSettled, RewardIssued

Q1 = datetime(2027, 1, 1, tzinfo=UTC)
Q2 = datetime(2027, 4, 1, tzinfo=UTC)
Q3 = datetime(2027, 7, 1, tzinfo=UTC)
REBATE: dict[str, Any] = {
    "name": "Quarterly volume rebate",
    "objective": "+15 % sales in the target group",
    "measures": [
        {
            "id": "volume",
            "kind": "rebate",
            "basis": "volume",
            "steps": [{"min": "1000", "value": "2"}, {"min": "5000", "value": "3"}],
            "pay_as": "points",
        }
    ],
    "schedule": {"starts": Q1.isoformat(), "ends": "2028-01-01T00:00:00+00:00", "cycle": "quarter"},
    "budget": {"currency": "EUR", "cap": "100000.00", "point_value": "0.01"},
}


async def activate(rewards: ServiceProcess, document: dict[str, Any]) -> str:
    async with rewards.client() as client:
        response = await client.post("/v1/programs", json=document)
        assert response.status_code == 201, response.text
        program_id: str = response.json()["id"]
        response = await client.post(f"/v1/programs/{program_id}/lifecycle", json={"action": "activate"})
        assert response.status_code == 200, response.text
    return program_id


async def settle(rewards: ServiceProcess) -> dict[str, Any]:
    async with rewards.client() as client:
        response = await client.post("/v1/settlements")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def statements(rewards: ServiceProcess, member: str) -> list[dict[str, Any]]:
    async with rewards.client() as client:
        listed = (await client.get(f"/v1/members/{member}/statements")).json()["items"]
        return [(await client.get(f"/v1/statements/{s['statement_id']}")).json() for s in listed]


async def test_a_quarter_rebate_settles_once_credited_once_and_a_late_refund_adjusts_the_next(
    service_factory: ServiceProcessFactory,
) -> None:
    rewards = await service_factory("rewards")
    points = await service_factory("points", prefix=rewards.prefix)
    program_id = await activate(rewards, REBATE)
    member, first, second = unique("M"), unique("O"), unique("O")
    q1_orders = [
        paid(member, first, "3000.00", time=Q1 + timedelta(days=10)),
        paid(member, second, "4000.00", time=Q1 + timedelta(days=20)),
        refunded(member, second, "R1", "500.00", time=Q1 + timedelta(days=25)),
    ]
    await publish(rewards.infra, rewards.prefix + "orders", q1_orders)
    await eventually(lambda: consumed(rewards, *q1_orders), what="Q1 orders consumed")

    await set_clock(rewards, Q2 + timedelta(hours=1))
    report = await settle(rewards)
    assert (report["statements"], report["paid"], report["refused"]) == (1, 1, 0)
    assert (await settle(rewards))["statements"] == 0  # settled once
    [q1] = await statements(rewards, member)
    assert (q1["cycle"], q1["net_spend"], q1["orders"], q1["step_min"], q1["rebate"], q1["payable"]) == (
        "2027-Q1",
        "6500.00",
        2,
        "5000.00",
        "195.00",
        "195.00",
    )
    assert (q1["points"], q1["status"]) == (19500, "paid")
    assert [(line["kind"], line["order_id"], line["deducted"], line["amount"]) for line in q1["lines"]] == [
        ("order", first, "0.00", "3000.00"),
        ("order", second, "500.00", "3500.00"),
        ("rebate", None, None, "195.00"),
    ]
    settled = await published(rewards, "loyalty.rewards", event_type="rebate.settled", member=member)
    assert [(e["data"]["points"], e["data"]["cost"]) for e in settled] == [(19500, "195.00")]

    async def credited() -> list[Any]:
        return await points.fetch(
            "SELECT points, reason FROM ledger_entries WHERE member_id = $1 AND adjustment_id = $2",
            member,
            q1["reward_id"],
        )

    [entry] = await eventually(credited, what="the rebate credited in points")
    assert entry["points"] == 19500 and "Quarterly volume rebate" in entry["reason"]
    # The same event delivered again: credited once.
    again = await points.fetch(
        "SELECT event_id FROM ledger_entries WHERE adjustment_id = $1", q1["reward_id"]
    )
    assert len(again) == 1
    await points.assert_ledger_consistent()

    late = refunded(member, first, "R2", "1000.00", time=Q2 + timedelta(days=5))  # Q1 now 5500: 165
    q2_order = paid(member, unique("O"), "2000.00", time=Q2 + timedelta(days=6))  # 2 % = 40
    await publish(rewards.infra, rewards.prefix + "orders", [late, q2_order])
    await eventually(lambda: consumed(rewards, late, q2_order), what="Q2 orders consumed")
    await set_clock(rewards, Q3 + timedelta(hours=1))
    assert (await settle(rewards))["statements"] == 1
    q1_again, q2 = await statements(rewards, member)
    assert q1_again == q1  # a closed statement is never rewritten
    assert (q2["cycle"], q2["rebate"], q2["adjustments"], q2["payable"], q2["points"]) == (
        "2027-Q2",
        "40.00",
        "-30.00",
        "10.00",
        1000,
    )
    assert [(line["kind"], line["cycle"], line["amount"]) for line in q2["lines"]][1:] == [
        ("rebate", "2027-Q2", "40.00"),
        ("adjustment", "2027-Q1", "-30.00"),
    ]
    async with rewards.client() as client:
        view = (await client.get(f"/v1/programs/{program_id}/budget")).json()
    assert (view["spent"], view["committed"]) == ("205.00", "0.00")
    await eventually(lambda: _adjusted(points, member, 2), what="both rebates credited in points")
    await points.assert_ledger_consistent()


async def _adjusted(points: ServiceProcess, member: str, n: int) -> bool:
    found = await count(
        points, "SELECT count(*) FROM ledger_entries WHERE member_id = $1 AND actor = 'rewards'", member
    )
    return found == n


async def test_a_cash_rebate_lands_in_the_wallet_once(rewards: ServiceProcess) -> None:
    document = copy.deepcopy(REBATE)
    document["measures"][0] |= {"pay_as": "cash", "id": "cash-volume"}
    document["budget"].pop("point_value")
    await activate(rewards, document)
    member = unique("M")
    orders = [paid(member, unique("O"), "1500.00", time=Q1 + timedelta(days=1))]
    await publish(rewards.infra, rewards.prefix + "orders", orders)
    await eventually(lambda: consumed(rewards, *orders), what="orders consumed")
    await set_clock(rewards, Q2)
    assert (await settle(rewards))["paid"] == 1
    assert (await settle(rewards))["paid"] == 0
    async with rewards.client() as client:
        wallet = (await client.get(f"/v1/members/{member}/wallet")).json()
    assert wallet["balances"] == [{"currency": "EUR", "balance": "30.00"}]
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in wallet["entries"]] == [
        ("rebate", "30.00", "30.00")
    ]


async def test_points_skips_the_rewards_events_it_has_nothing_to_do_with(points: ServiceProcess) -> None:
    """Points reads ``loyalty.rewards`` for rebates only: a gift issued there is neither applied nor
    dead-lettered; a rebate after it is credited."""
    member = unique("M")
    gift = new_event(
        "reward.issued",
        "urn:loyalty:rewards",
        member,
        RewardIssued(
            reward_id=unique("R"),
            program_id="p-1",
            program_version=1,
            member_id=member,
            kind="gift",
            item_id="mug",
            currency="EUR",
            cost="25.00",  # type: ignore[arg-type]
            reason="a big order",
            issued_at=Q1,
        ),
    )
    rebate = new_event(
        "rebate.settled",
        "urn:loyalty:rewards",
        member,
        RebateSettled(
            statement_id=unique("S"),
            reward_id=unique("R"),
            program_id="p-1",
            program_name="Quarterly volume rebate",
            program_version=1,
            measure_id="volume",
            member_id=member,
            cycle="2027-Q1",
            pay_as="points",
            points=700,
            amount="7.00",  # type: ignore[arg-type]
            currency="EUR",
            cost="7.00",  # type: ignore[arg-type]
            net_spend="350.00",  # type: ignore[arg-type]
            orders=1,
            settled_at=Q2,
        ),
    )
    await publish(points.infra, points.prefix + "loyalty.rewards", [gift, rebate, rebate])
    await eventually(lambda: consumed(points, rebate), what="the rebate consumed")
    assert not await consumed(points, gift)
    assert await count(points, "SELECT count(*) FROM ledger_entries WHERE member_id = $1", member) == 1
    dead = await read_to_end(points.infra, points.prefix + "loyalty-points.dlq")
    assert [r for r in dead if member.encode() in (r.key or b"")] == []
