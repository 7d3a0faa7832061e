"""Entitlements as real processes over a real broker and PostgreSQL: a promotion grants the tier's
rights and a demotion ends them exactly at its ``effective_at``; a launch's priority window lets only
members with a right buy; a quota is never exceeded under 100 concurrent consumptions; an order
cancelled or refunded in full gives its units back once; a custom service's hours; bad input and
wrong keys are problems."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from harness import (
    PARTNER_KEY,
    SHOP_KEY,
    ServiceProcess,
    assert_problem,
    cancelled,
    consumed,
    count,
    eventually,
    paid,
    publish,
    published,
    refunded,
    set_clock,
    tier_changed,
    unique,
)

RIGHTS = "loyalty.rewards"
PROGRAM: dict[str, Any] = {
    "name": "Early access for big buyers",
    "objective": "more big orders",
    "control_share": "0.5",
    "measures": [],
    "schedule": {"starts": "2026-01-01T00:00:00+00:00", "cycle": "quarter"},
    "budget": {"currency": "EUR", "cap": "1000.00"},
}


def now() -> datetime:
    return datetime.now(UTC)


async def create_launch(
    rewards: ServiceProcess, skus: list[str], opens_at: datetime, public_at: datetime
) -> str:
    async with rewards.client() as client:
        response = await client.post(
            "/v1/launches",
            json={
                "name": "X200 launch",
                "skus": skus,
                "opens_at": opens_at.isoformat(),
                "public_at": public_at.isoformat(),
            },
        )
    assert response.status_code == 201, response.text
    launch_id: str = response.json()["launch_id"]
    return launch_id


async def entitlements(rewards: ServiceProcess, member: str, sku: str | None = None) -> dict[str, Any]:
    async with rewards.client(SHOP_KEY) as client:
        response = await client.get(
            f"/v1/members/{member}/entitlements", params={"sku": sku} if sku else None
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def grant(rewards: ServiceProcess, member: str, body: dict[str, Any]) -> dict[str, Any]:
    async with rewards.client() as client:
        response = await client.post(
            f"/v1/members/{member}/entitlements", json=body, headers={"Idempotency-Key": unique("K")}
        )
    assert response.status_code == 201, response.text
    granted: dict[str, Any] = response.json()
    return granted


async def buy(
    client: httpx.AsyncClient, member: str, sku: str, order: str, key: str | None = None, quantity: int = 1
) -> httpx.Response:
    return await client.post(
        f"/v1/members/{member}/entitlements/consume",
        json={"sku": sku, "order_id": order, "quantity": quantity},
        headers={"Idempotency-Key": key or unique("K")},
    )


async def test_a_promotion_grants_the_tier_rights_and_a_demotion_ends_them_at_effective_at(
    rewards: ServiceProcess,
) -> None:
    member = unique("M")
    start = now()
    await create_launch(rewards, ["X200"], start - timedelta(days=1), start + timedelta(days=30))
    assert (await entitlements(rewards, member, "X200"))["decision"]["reason"] == "no-right"

    promoted_at = start - timedelta(hours=1)
    up = tier_changed(
        member,
        "silver",
        "gold",
        "1.5",
        effective_at=promoted_at,
        priority_purchase=True,
        service_level="key-account-desk",
    )
    again = tier_changed(  # the same change sent twice under two event ids
        member,
        "silver",
        "gold",
        "1.5",
        effective_at=promoted_at,
        priority_purchase=True,
        service_level="key-account-desk",
    )
    await publish(rewards.infra, rewards.prefix + "loyalty.tiers", [up, again])
    await eventually(lambda: consumed(rewards, up, again), what="the promotion consumed")
    held = await entitlements(rewards, member, "X200")
    rights = {(e["kind"], e["scope"]["service"]): e for e in held["entitlements"]}
    assert set(rights) == {("priority-purchase", None), ("custom-service", "key-account-desk")}
    for right in rights.values():
        assert right["source"] == "tier" and right["tier"] == "gold" and right["state"] == "active"
        assert datetime.fromisoformat(right["valid_from"]) == promoted_at
    decision = held["decision"]
    assert decision["allowed"] and decision["reason"] == "priority-right"
    assert decision["entitlement_id"] == rights[("priority-purchase", None)]["entitlement_id"]

    demoted_at = now() + timedelta(minutes=10)
    down = tier_changed(
        member,
        "gold",
        "silver",
        "1.25",
        effective_at=demoted_at,
        direction="down",
        reason="evaluated",
        priority_purchase=False,
        service_level="standard",
    )
    await publish(rewards.infra, rewards.prefix + "loyalty.tiers", [down])
    await eventually(lambda: consumed(rewards, down), what="the demotion consumed")
    held = await entitlements(rewards, member, "X200")
    for right in held["entitlements"]:
        assert datetime.fromisoformat(right["valid_until"]) == demoted_at
        assert right["state"] == "active", "in force until the demotion takes effect"
    assert held["decision"]["allowed"]

    await set_clock(rewards, demoted_at - timedelta(seconds=1))
    assert (await entitlements(rewards, member, "X200"))["decision"]["allowed"]
    await set_clock(rewards, demoted_at)
    held = await entitlements(rewards, member, "X200")
    assert {e["state"] for e in held["entitlements"]} == {"ended"}
    assert held["decision"] == held["decision"] | {"allowed": False, "reason": "no-right"}
    async with rewards.client(SHOP_KEY) as client:
        assert_problem(await buy(client, member, "X200", unique("O")), 409, "no-right")

    granted = await published(rewards, RIGHTS, event_type="entitlement.granted", member=member)
    ended = await published(rewards, RIGHTS, event_type="entitlement.ended", member=member)
    assert len(granted) == 2, "the duplicate promotion granted nothing more"
    assert sorted(e["data"]["entitlement_id"] for e in ended) == sorted(
        rights[k]["entitlement_id"] for k in rights
    )
    assert {datetime.fromisoformat(e["data"]["ends_at"]) for e in ended} == {demoted_at}


async def test_a_quota_is_never_exceeded_under_100_concurrent_consumptions(rewards: ServiceProcess) -> None:
    member = unique("M")
    launch = await create_launch(
        rewards, ["X200", "X200-PRO"], now() - timedelta(days=1), now() + timedelta(days=7)
    )
    right = await grant(
        rewards,
        member,
        {
            "kind": "priority-purchase",
            "name": "X200 early access",
            "scope": {"launch_id": launch},
            "quota": 10,
        },
    )
    async with rewards.client(SHOP_KEY) as client:
        answers = await asyncio.gather(*(buy(client, member, "X200", f"O-{i}") for i in range(100)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 10 + [409] * 90, statuses
    for response in answers:
        if response.status_code == 409:
            assert_problem(response, 409, "no-right")
    used = await count(
        rewards, "SELECT used FROM entitlements WHERE entitlement_id = $1", right["entitlement_id"]
    )
    logged = await count(
        rewards,
        "SELECT count(*) FROM entitlement_consumptions WHERE entitlement_id = $1",
        right["entitlement_id"],
    )
    assert (used, logged) == (10, 10)
    remaining = sorted(r.json()["remaining"] for r in answers if r.status_code == 200)
    assert remaining == list(range(10)), "each consumption saw the one before it"

    async with rewards.client() as client:
        view = (await client.get(f"/v1/launches/{launch}")).json()
        listed = (await client.get("/v1/launches")).json()
    assert [v for v in listed if v["launch_id"] == launch] == [view]
    assert (view["phase"], view["rights_used"], view["members"], view["units"]) == ("priority", 1, 1, 10)
    events = await published(rewards, RIGHTS, event_type="entitlement.consumed", member=member)
    assert len(events) == 10


async def test_a_consumption_is_once_per_idempotency_key(rewards: ServiceProcess) -> None:
    member = unique("M")
    await grant(
        rewards, member, {"kind": "priority-purchase", "name": "X", "scope": {"skus": ["X9"]}, "quota": 5}
    )
    async with rewards.client(SHOP_KEY) as client:
        first = await buy(client, member, "X9", "O-1", key="same", quantity=2)
        retry = await buy(client, member, "X9", "O-1", key="same", quantity=2)
        other = await buy(client, member, "X9", "O-2", key="same", quantity=2)
    assert first.status_code == 200 and retry.json() == first.json()
    assert_problem(other, 422, "idempotency-key-reused")
    assert (await entitlements(rewards, member))["entitlements"][0]["used"] == 2


async def test_an_order_cancelled_or_refunded_in_full_gives_its_units_back_once(
    rewards: ServiceProcess,
) -> None:
    member = unique("M")
    right = await grant(
        rewards,
        member,
        {"kind": "priority-purchase", "name": "X", "scope": {"categories": ["phones"]}, "quota": 4},
    )
    whole, part, gone = unique("O"), unique("O"), unique("O")
    async with rewards.client(SHOP_KEY) as client:
        for order, quantity in ((whole, 2), (part, 1), (gone, 1)):
            response = await client.post(
                f"/v1/members/{member}/entitlements/consume",
                json={"sku": "X1", "category": "phones", "order_id": order, "quantity": quantity},
                headers={"Idempotency-Key": unique("K")},
            )
            assert response.status_code == 200, response.text
    assert (await entitlements(rewards, member))["entitlements"][0]["remaining"] == 0

    refund = unique("R")
    events = [
        paid(member, whole, "200.00"),
        paid(member, part, "100.00"),
        paid(member, gone, "100.00"),
        refunded(member, whole, refund, "200.00"),
        refunded(member, whole, refund, "200.00"),  # the same refund again, under another event id
        refunded(member, part, unique("R"), "40.00"),  # partial: the unit stays used
        cancelled(member, gone, "100.00"),
        cancelled(member, gone, "100.00"),
        cancelled(member, whole, "200.00"),  # cancelled after its full refund: nothing more back
    ]
    await publish(rewards.infra, rewards.prefix + "orders", events)
    await eventually(lambda: consumed(rewards, *events), what="the orders consumed")

    held = (await entitlements(rewards, member))["entitlements"][0]
    assert (held["used"], held["remaining"]) == (1, 3)
    returned = await published(rewards, RIGHTS, event_type="entitlement.returned", member=member)
    assert sorted(
        (e["data"]["order_id"], e["data"]["quantity"], e["data"]["reason"]) for e in returned
    ) == sorted([(whole, 2, "order-refunded"), (gone, 1, "order-cancelled")])
    async with rewards.client() as client:
        log = (await client.get(f"/v1/entitlements/{right['entitlement_id']}/consumptions")).json()
    assert [(c["order_id"], c["returned_at"] is not None) for c in log] == [
        (whole, True),
        (part, False),
        (gone, True),
    ]


async def test_custom_service_hours_revocation_and_bad_input(rewards: ServiceProcess) -> None:
    member = unique("M")
    desk = await grant(
        rewards,
        member,
        {
            "kind": "custom-service",
            "name": "On-site engineer",
            "scope": {"service": "engineer"},
            "unit": "hours",
            "quota": 10,
        },
    )
    path = f"/v1/entitlements/{desk['entitlement_id']}/consumptions"
    async with rewards.client() as client:
        for hours in (4, 6):
            response = await client.post(
                path, json={"quantity": hours, "note": "audit"}, headers={"Idempotency-Key": unique("K")}
            )
            assert response.status_code == 200, response.text
        assert response.json()["remaining"] == 0
        assert_problem(
            await client.post(path, json={"quantity": 1}, headers={"Idempotency-Key": unique("K")}),
            409,
            "quota-exceeded",
        )

        revoked = await client.post(f"/v1/entitlements/{desk['entitlement_id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
        again = await client.post(f"/v1/entitlements/{desk['entitlement_id']}/revoke")
        assert again.json() == revoked.json()

        bad_grants = [
            {"kind": "custom-service", "name": "x", "scope": {}},
            {
                "kind": "priority-purchase",
                "name": "x",
                "valid_from": "2026-01-02T00:00:00Z",
                "valid_until": "2026-01-01T00:00:00Z",
            },
            {"kind": "priority-purchase", "name": "x", "scope": {"launch_id": str(uuid.uuid4())}},
        ]
        for body in bad_grants:
            response = await client.post(
                f"/v1/members/{member}/entitlements", json=body, headers={"Idempotency-Key": unique("K")}
            )
            assert_problem(response, 422)
        for body in (
            {"kind": "gold-bar", "name": "x"},
            {"kind": "priority-purchase", "name": "x", "quota": 0},
        ):
            response = await client.post(
                f"/v1/members/{member}/entitlements", json=body, headers={"Idempotency-Key": unique("K")}
            )
            assert_problem(response, 422)
        assert_problem(
            await client.post(
                f"/v1/members/{member}/entitlements", json={"kind": "priority-purchase", "name": "x"}
            ),
            400,
        )
        assert_problem(await buy(client, member, "X", "O", quantity=0), 422)
        launch = {
            "name": "x",
            "skus": ["A", "A"],
            "opens_at": "2026-01-02T00:00:00Z",
            "public_at": "2026-01-01T00:00:00Z",
        }
        assert_problem(await client.post("/v1/launches", json=launch), 422, "invalid-launch")
        assert_problem(await client.get(f"/v1/launches/{uuid.uuid4()}"), 404, "launch-not-found")
        assert_problem(
            await client.post(f"/v1/entitlements/{uuid.uuid4()}/revoke"), 404, "entitlement-not-found"
        )
    unchanged = await count(rewards, "SELECT count(*) FROM entitlements WHERE member_id = $1", member)
    assert unchanged == 1, "no refused grant wrote anything"

    async with rewards.client(None) as client:
        assert_problem(await client.get(f"/v1/members/{member}/entitlements"), 401)
    async with rewards.client(PARTNER_KEY) as client:
        assert_problem(await client.get(f"/v1/members/{member}/entitlements"), 403)
    async with rewards.client(SHOP_KEY) as client:
        assert_problem(
            await client.post(
                f"/v1/members/{member}/entitlements",
                json={"kind": "priority-purchase", "name": "x"},
                headers={"Idempotency-Key": "k"},
            ),
            403,
        )


async def test_a_program_rule_grants_a_right_once_per_cycle_and_never_to_its_control_group(
    rewards: ServiceProcess,
) -> None:
    launch = await create_launch(rewards, ["X300"], now() - timedelta(days=1), now() + timedelta(days=7))
    document = copy.deepcopy(PROGRAM)
    document["measures"] = [
        {
            "id": "early-access",
            "kind": "entitlement",
            "basis": "order",
            "min": "1000",
            "right": "priority-purchase",
            "name": "Early access: X300",
            "launch_id": launch,
            "quota": 1,
            "valid_days": 30,
        }
    ]
    async with rewards.client() as client:
        response = await client.post("/v1/programs", json=document)
        assert response.status_code == 201, response.text
        program_id = response.json()["id"]
        response = await client.post(f"/v1/programs/{program_id}/lifecycle", json={"action": "activate"})
        assert response.status_code == 200, response.text

    members = [unique("M") for _ in range(12)]
    events = []
    for member in members:
        first = paid(member, unique("O"), "1500.00")
        again = paid(member, first.data["order_id"], "1500.00")  # the same order paid again, a new event id
        events += [first, again, paid(member, unique("O"), "2000.00"), paid(member, unique("O"), "50.00")]
    await publish(rewards.infra, rewards.prefix + "orders", events)
    await eventually(lambda: consumed(rewards, *events), what="every order consumed")

    groups = {
        r["member_id"]: r["grp"]
        for r in await rewards.fetch(
            "SELECT member_id, grp FROM participants WHERE program_id = $1", program_id
        )
    }
    treated = {m for m, g in groups.items() if g == "treatment"}
    assert set(groups) == set(members) and 0 < len(treated) < len(members)
    rows = await rewards.fetch(
        "SELECT member_id, source, valid_from, valid_until, quota FROM entitlements WHERE program_id = $1",
        program_id,
    )
    assert sorted(r["member_id"] for r in rows) == sorted(treated), (
        "one right per treated member, none held out"
    )
    for row in rows:
        assert (row["source"], row["quota"]) == ("program", 1)
        assert row["valid_until"] - row["valid_from"] == timedelta(days=30)
    member = sorted(treated)[0]
    decision = (await entitlements(rewards, member, "X300"))["decision"]
    assert decision["allowed"] and decision["reason"] == "priority-right"
    control = sorted(set(members) - treated)[0]
    assert (await entitlements(rewards, control, "X300"))["decision"]["reason"] == "no-right"
    granted = await published(rewards, RIGHTS, event_type="entitlement.granted")
    assert sorted(e["subject"] for e in granted if e["data"]["program_id"] == program_id) == sorted(treated)
