"""Rewards issued by programs, as real processes over a real broker and PostgreSQL: a threshold gift
once per cycle under duplicates and replay, an upgrade gift once per promotion, a budget that runs
out in the middle of a batch, the control group held out and recorded."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from harness import (
    ServiceProcess,
    consumed,
    count,
    eventually,
    paid,
    publish,
    published,
    rewind_group,
    tier_changed,
    unique,
)

Q1 = datetime(2026, 2, 1, tzinfo=UTC)
Q2 = datetime(2026, 5, 1, tzinfo=UTC)

PROGRAM: dict[str, Any] = {
    "name": "Big orders",
    "objective": "more big orders",
    "measures": [
        {"id": "big-order", "kind": "threshold-gift", "basis": "order", "min": "1000", "item": "mug"}
    ],
    "schedule": {
        "starts": "2026-01-01T00:00:00+00:00",
        "ends": "2027-01-01T00:00:00+00:00",
        "cycle": "quarter",
    },
    "budget": {"currency": "EUR", "cap": "1000.00"},
}
MUG: dict[str, Any] = {
    "item_id": "mug",
    "kind": "gift",
    "name": "Mug",
    "currency": "EUR",
    "value": "25.00",
    "stock": 50,
}


async def setup(
    rewards: ServiceProcess, program: dict[str, Any] | None = None, item: dict[str, Any] | None = None
) -> str:
    """The catalog item and an active program; the program's id."""
    async with rewards.client() as client:
        response = await client.post("/v1/catalog", json=item or MUG)
        assert response.status_code == 201, response.text
        response = await client.post("/v1/programs", json=program or PROGRAM)
        assert response.status_code == 201, response.text
        program_id: str = response.json()["id"]
        response = await client.post(f"/v1/programs/{program_id}/lifecycle", json={"action": "activate"})
        assert response.status_code == 200, response.text
    return program_id


async def rewards_of(rewards: ServiceProcess, member: str) -> list[dict[str, Any]]:
    async with rewards.client() as client:
        response = await client.get(f"/v1/members/{member}/rewards")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def budget(rewards: ServiceProcess, program_id: str) -> dict[str, Any]:
    async with rewards.client() as client:
        response = await client.get(f"/v1/programs/{program_id}/budget")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_threshold_gift_once_per_cycle_under_duplicates_and_replay(rewards: ServiceProcess) -> None:
    program_id = await setup(rewards)
    member = unique("M")
    big = paid(member, unique("O"), "1500.00", time=Q1)
    resent = paid(member, big.data["order_id"], "1500.00", time=Q1)  # the same order, another event id
    second = paid(member, unique("O"), "2000.00", time=Q1 + timedelta(days=3))  # same quarter: no gift
    small = paid(member, unique("O"), "999.99", time=Q2)
    next_quarter = paid(member, unique("O"), "1000.00", time=Q2 + timedelta(days=1))
    events = [big, big, resent, second, small, next_quarter]
    await publish(rewards.infra, rewards.prefix + "orders", events)
    await eventually(lambda: consumed(rewards, *events), what="every order consumed")

    gifts = await rewards_of(rewards, member)
    assert [(g["kind"], g["item_id"], g["cycle"], g["status"], g["program_version"]) for g in gifts] == [
        ("gift", "mug", "2026-Q1", "issued", 1),
        ("gift", "mug", "2026-Q2", "issued", 1),
    ]
    assert big.data["order_id"] in gifts[0]["reason"]
    issued = await published(rewards, "loyalty.rewards", event_type="reward.issued", member=member)
    assert sorted(e["data"]["reward_id"] for e in issued) == sorted(g["reward_id"] for g in gifts)
    enrolled = await published(
        rewards, "loyalty.rewards", event_type="program.member_enrolled", member=member
    )
    assert [(e["data"]["program_id"], e["data"]["group"]) for e in enrolled] == [(program_id, "treatment")]

    await rewards.stop()
    await rewind_group(rewards.infra, rewards.prefix + "loyalty-rewards", rewards.prefix + "orders")
    await rewards.start()
    replayed = paid(member, unique("O"), "1.00", time=Q2 + timedelta(days=2))  # after the replay
    await publish(rewards.infra, rewards.prefix + "orders", [replayed])
    await eventually(lambda: consumed(rewards, replayed), what="the replay consumed")
    assert len(await rewards_of(rewards, member)) == 2
    view = await budget(rewards, program_id)
    assert (view["committed"], view["spent"], view["remaining"], view["refusals"]) == (
        "50.00",
        "0.00",
        "950.00",
        0,
    )
    assert [(b["cycle"], b["issued"], b["cost"]) for b in view["burn"]] == [
        ("2026-Q1", 1, "25.00"),
        ("2026-Q2", 1, "25.00"),
    ]
    assert await count(rewards, "SELECT stock FROM catalog_items WHERE item_id = 'mug'") == 48


async def test_a_budget_running_out_mid_batch_never_over_issues(rewards: ServiceProcess) -> None:
    document = copy.deepcopy(PROGRAM)
    document["budget"]["cap"] = "75.00"  # three mugs
    program_id = await setup(rewards, document)
    await rewards.stop()  # the ten orders wait on the topic: one batch when it is back
    members = [unique("M") for _ in range(10)]
    events = [paid(m, unique("O"), "1200.00", time=Q1) for m in members]
    await publish(rewards.infra, rewards.prefix + "orders", events)
    await rewards.start()
    await eventually(lambda: consumed(rewards, *events), what="every order consumed")

    assert await count(rewards, "SELECT count(*) FROM rewards WHERE program_id = $1", program_id) == 3
    view = await budget(rewards, program_id)
    assert (view["committed"], view["remaining"], view["refusals"]) == ("75.00", "0.00", 7)
    assert view["refusals_by_reason"] == {"budget-exhausted": 7}
    assert view["exhausted_at"] is not None
    exhausted = await published(rewards, "loyalty.rewards", event_type="program.budget_exhausted")
    assert [(e["subject"], e["data"]["cap"], e["data"]["used"]) for e in exhausted] == [
        (f"program:{program_id}", "75.00", "75.0000")
    ]


async def test_the_control_group_is_held_out_recorded_and_published(rewards: ServiceProcess) -> None:
    document = copy.deepcopy(PROGRAM) | {"control_share": "0.5"}
    program_id = await setup(rewards, document)
    members = [unique("M") for _ in range(24)]
    events = [paid(m, unique("O"), "1000.00", time=Q1) for m in members]
    await publish(rewards.infra, rewards.prefix + "orders", events)
    await eventually(lambda: consumed(rewards, *events), what="every order consumed")

    groups = {
        r["member_id"]: r["grp"]
        for r in await rewards.fetch(
            "SELECT member_id, grp FROM participants WHERE program_id = $1", program_id
        )
    }
    assert set(groups) == set(members)
    control = {m for m, g in groups.items() if g == "control"}
    assert 0 < len(control) < len(members)
    rewarded = {
        r["member_id"]
        for r in await rewards.fetch("SELECT member_id FROM rewards WHERE program_id = $1", program_id)
    }
    assert rewarded == set(members) - control
    enrolled = await published(rewards, "loyalty.rewards", event_type="program.member_enrolled")
    assert {e["data"]["member_id"]: e["data"]["group"] for e in enrolled} == groups


async def test_an_upgrade_gift_once_per_promotion(rewards: ServiceProcess) -> None:
    document = copy.deepcopy(PROGRAM) | {
        "measures": [{"id": "welcome-gold", "kind": "tier-upgrade-gift", "tiers": ["Gold"]}],
        "target_group": {"tiers": ["Gold"]},
    }
    item = MUG | {"item_id": "gold-box", "name": "Gold welcome box"}
    await setup(rewards, document, item)
    member = unique("M")
    at = Q1 + timedelta(days=10)
    gold = tier_changed(member, "Silver", "Gold", "1.5", effective_at=at, upgrade_gift="gold-box")
    again = tier_changed(member, "Silver", "Gold", "1.5", effective_at=at, upgrade_gift="gold-box")
    silver = tier_changed(
        member, None, "Silver", "1.2", effective_at=at - timedelta(days=5), upgrade_gift="gold-box"
    )  # not a target tier: nothing
    events = [silver, gold, gold, again]
    await publish(rewards.infra, rewards.prefix + "loyalty.tiers", events)
    await eventually(lambda: consumed(rewards, *events), what="every change consumed")
    gifts = await rewards_of(rewards, member)
    assert [(g["item_id"], g["measure_id"], g["reason"]) for g in gifts] == [
        ("gold-box", "welcome-gold", "promoted to Gold")
    ]
    issued = await published(rewards, "loyalty.rewards", event_type="reward.issued", member=member)
    assert [json.dumps(e["data"]["item_id"]) for e in issued] == ['"gold-box"']
