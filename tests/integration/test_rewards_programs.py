"""The rewards service as a real process: programs (drafts, versions, lifecycle, every problem of a
bad document in one 422, least privilege) and the member facts it projects from ``orders`` and
``loyalty.tiers`` (orders net of refunds and cancels, the tier in force; bad order events
dead-lettered by the kit's one rule: test_order_validity)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from harness import (
    PARTNER_KEY,
    ServiceProcess,
    assert_problem,
    cancelled,
    consumed,
    eventually,
    paid,
    publish,
    refunded,
    tier_changed,
    unique,
)

DOCUMENT: dict[str, Any] = {
    "name": "Key accounts 2026",
    "objective": "+15 % sales in the target group",
    "targets": [{"metric": "sales_uplift_pct", "target": "15"}],
    "target_group": {"tiers": ["Gold", "Platinum"]},
    "control_share": "0.1",
    "measures": [
        {
            "id": "quarterly-rebate",
            "kind": "rebate",
            "basis": "volume",
            "steps": [{"min": "50000", "value": "1"}, {"min": "100000", "value": "2.5"}],
            "fixed": False,
            "pay_as": "points",
            "personalised": {},
        },
        {
            "id": "big-order-gift",
            "kind": "threshold-gift",
            "basis": "order",
            "min": "20000",
            "item": "espresso",
        },
    ],
    "schedule": {
        "starts": "2026-01-01T00:00:00+00:00",
        "ends": "2027-01-01T00:00:00+00:00",
        "cycle": "quarter",
    },
    "budget": {"currency": "EUR", "cap": "250000.00", "per_member_cap": "15000.00", "point_value": "0.01"},
}


async def create(rewards: ServiceProcess, document: dict[str, Any] | None = None) -> dict[str, Any]:
    async with rewards.client() as client:
        response = await client.post("/v1/programs", json=document or DOCUMENT)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def lifecycle(rewards: ServiceProcess, program_id: str, action: str) -> Any:
    async with rewards.client() as client:
        return await client.post(f"/v1/programs/{program_id}/lifecycle", json={"action": action})


async def test_a_program_is_a_draft_then_versions_and_a_lifecycle(rewards: ServiceProcess) -> None:
    program = await create(rewards)
    assert (program["status"], program["version"], program["name"]) == ("draft", 1, "Key accounts 2026")
    assert program["document"]["budget"]["cap"] == "250000.00"
    edited = copy.deepcopy(DOCUMENT) | {"name": "Key accounts 2026 (v2)", "control_share": "0.2"}
    async with rewards.client() as client:
        response = await client.put(f"/v1/programs/{program['id']}", json=edited)
        assert response.status_code == 200, response.text
        assert (response.json()["version"], response.json()["name"]) == (2, "Key accounts 2026 (v2)")
        versions = (await client.get(f"/v1/programs/{program['id']}/versions")).json()["items"]
    assert [(v["version"], v["document"]["control_share"]) for v in versions] == [(1, "0.1"), (2, "0.2")]

    steps = [("activate", "active"), ("pause", "paused"), ("activate", "active"), ("end", "ended")]
    for action, status in steps:
        response = await lifecycle(rewards, program["id"], action)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
    assert_problem(await lifecycle(rewards, program["id"], "activate"), 409, "invalid-transition")
    async with rewards.client() as client:
        assert_problem(await client.put(f"/v1/programs/{program['id']}", json=DOCUMENT), 409, "program-ended")
        ended = (await client.get("/v1/programs", params={"status": "ended"})).json()["items"]
        assert [p["id"] for p in ended] == [program["id"]]
        assert (await client.get(f"/v1/programs/{program['id']}")).json()["version"] == 2
    history = await rewards.fetch(
        "SELECT action, version, status FROM program_events WHERE program_id = $1 ORDER BY id", program["id"]
    )
    assert [tuple(r) for r in history] == [
        ("create", 1, "draft"),
        ("edit", 2, "draft"),
        ("activate", 2, "active"),
        ("pause", 2, "paused"),
        ("activate", 2, "active"),
        ("end", 2, "ended"),
    ]


async def test_a_draft_cannot_be_ended_or_paused(rewards: ServiceProcess) -> None:
    program = await create(rewards)
    for action in ("pause", "end"):
        assert_problem(await lifecycle(rewards, program["id"], action), 409, "invalid-transition")


async def test_a_bad_document_gets_every_problem_at_once_and_writes_nothing(rewards: ServiceProcess) -> None:
    bad = copy.deepcopy(DOCUMENT)
    bad["control_share"] = "0.9"
    bad["schedule"]["ends"] = "2025-01-01T00:00:00+00:00"
    bad["measures"][0]["steps"] = [{"min": "100000", "value": "1"}, {"min": "50000", "value": "2"}]
    bad["measures"].append({"id": "x", "kind": "free-lunch"})
    async with rewards.client() as client:
        problem = assert_problem(await client.post("/v1/programs", json=bad), 422, "invalid-program")
        assert_problem(await client.post("/v1/programs", json=[1, 2]), 422)
    assert len(problem["problems"]) >= 4, problem
    text = " ".join(problem["problems"])
    assert "control_share" in text and "ends" in text and "free-lunch" in text
    assert await rewards.scalar("SELECT count(*) FROM programs") == 0


async def test_programs_need_a_crm_key(rewards: ServiceProcess) -> None:
    program = await create(rewards)
    for key in (None, PARTNER_KEY):
        async with rewards.client(key) as client:
            status = 401 if key is None else 403
            assert_problem(await client.get("/v1/programs"), status)
            assert_problem(await client.post("/v1/programs", json=DOCUMENT), status)
            assert_problem(await client.get(f"/v1/programs/{program['id']}"), status)
    async with rewards.client() as client:
        assert_problem(await client.get("/v1/programs/00000000-0000-0000-0000-000000000000"), 404)
        assert_problem(await client.get("/v1/programs/not-a-uuid"), 422)


async def test_member_facts_follow_orders_refunds_cancels_and_tiers(rewards: ServiceProcess) -> None:
    member, first, second = unique("M"), unique("O"), unique("O")
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    gold = tier_changed(member, "Silver", "Gold", "1.5", effective_at=t0)
    silver_earlier = tier_changed(member, None, "Silver", "1.25", effective_at=t0 - timedelta(days=30))
    events = [
        paid(member, first, "1000.00", time=t0),
        paid(member, second, "200.00", time=t0 + timedelta(days=1)),
        refunded(member, first, "R1", "250.00"),
        refunded(member, first, "R1", "250.00"),  # the same refund id again: once
        cancelled(member, second, "200.00"),
        gold,
        silver_earlier,  # took effect before Gold: arrives late, changes nothing
    ]
    await publish(rewards.infra, rewards.prefix + "orders", events[:5])
    await publish(rewards.infra, rewards.prefix + "loyalty.tiers", events[5:])
    await eventually(lambda: consumed(rewards, *events), what="every event consumed")
    orders = await rewards.fetch(
        "SELECT order_id, amount, refunded, cancelled_at IS NOT NULL AS cancelled FROM orders "
        "WHERE member_id = $1 ORDER BY paid_at",
        member,
    )
    assert [(r["order_id"], str(r["amount"]), str(r["refunded"]), r["cancelled"]) for r in orders] == [
        (first, "1000.0000", "250.0000", False),
        (second, "200.0000", "0.0000", True),
    ]
    facts = await rewards.fetch(
        "SELECT tier, first_order_at, last_order_at FROM members WHERE member_id = $1", member
    )
    assert (facts[0]["tier"], facts[0]["first_order_at"], facts[0]["last_order_at"]) == (
        "Gold",
        t0,
        t0 + timedelta(days=1),
    )
