"""The rewards service's catalog as a real process: items created, read, listed by kind and status and
edited; restocks once per Idempotency-Key; a duplicate item and bad bodies as problems; and least
privilege on every catalog and rewards route (no key, a partner key, an ecommerce key)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from harness import (
    PARTNER_KEY,
    SHOP_KEY,
    ServiceProcess,
    assert_problem,
    count,
    eventually,
)

MUG: dict[str, Any] = {
    "item_id": "gift-mug",
    "kind": "gift",
    "name": "Mug",
    "description": "A mug with the logo",
    "currency": "EUR",
    "value": "25.00",
    "points_price": 2500,
    "stock": 10,
    "tiers": ["Gold", "Platinum"],
    "valid_from": "2026-01-01T00:00:00+00:00",
    "valid_until": "2027-01-01T00:00:00+00:00",
}
VISIT: dict[str, Any] = {
    "item_id": "service-visit",
    "kind": "service",
    "name": "An on-site visit",
    "currency": "EUR",
    "value": "400.00",
    "stock": 3,
}
COUPON: dict[str, Any] = {
    "item_id": "coupon-10",
    "kind": "coupon",
    "name": "10 EUR off",
    "currency": "EUR",
    "value": "10.00",
    "stock": 0,
    "status": "withdrawn",
}


async def post_item(client: httpx.AsyncClient, item: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/catalog", json=item)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def ids(client: httpx.AsyncClient, query: str = "") -> list[str]:
    response = await client.get(f"/v1/catalog{query}")
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


async def stock(client: httpx.AsyncClient, item_id: str) -> int:
    response = await client.get(f"/v1/catalog/{item_id}")
    assert response.status_code == 200, response.text
    value: int = response.json()["stock"]
    return value


async def test_an_item_is_created_read_listed_by_kind_and_status_and_edited(rewards: ServiceProcess) -> None:
    async with rewards.client() as client:
        created = await post_item(client, MUG)
        for name in ("item_id", "kind", "name", "description", "currency", "points_price", "stock", "tiers"):
            assert created[name] == MUG[name], name
        assert Decimal(created["value"]) == Decimal("25")
        assert datetime.fromisoformat(created["valid_from"]) == datetime.fromisoformat(MUG["valid_from"])
        assert created["status"] == "active"  # the default
        assert created["created_at"] == created["updated_at"]

        response = await client.get("/v1/catalog/gift-mug")
        assert response.status_code == 200, response.text
        read = response.json()
        for name in ("item_id", "kind", "name", "description", "currency", "points_price", "stock", "tiers"):
            assert read[name] == MUG[name], name
        assert (Decimal(read["value"]), read["status"]) == (Decimal("25"), "active")
        for name in ("valid_from", "valid_until"):
            assert datetime.fromisoformat(read[name]) == datetime.fromisoformat(MUG[name]), name
        for name in ("created_at", "updated_at"):
            assert datetime.fromisoformat(read[name]) == datetime.fromisoformat(created[name]), name

        await post_item(client, VISIT)
        await post_item(client, COUPON)
        assert await ids(client) == ["coupon-10", "gift-mug", "service-visit"]  # by id
        assert await ids(client, "?kind=gift") == ["gift-mug"]
        assert await ids(client, "?kind=service") == ["service-visit"]
        assert await ids(client, "?status=withdrawn") == ["coupon-10"]
        assert await ids(client, "?status=active") == ["gift-mug", "service-visit"]
        assert await ids(client, "?kind=coupon&status=active") == []
        assert await ids(client, "?kind=service&status=active") == ["service-visit"]
        assert_problem(await client.get("/v1/catalog?kind=voucher"), 422, "validation-error")
        assert_problem(await client.get("/v1/catalog?status=gone"), 422, "validation-error")
        assert_problem(await client.get("/v1/catalog/no-such-item"), 404, "item-not-found")
        assert_problem(await client.get("/v1/catalog/-bad-id"), 422, "validation-error")

        terms = {
            "name": "Big mug",
            "currency": "EUR",
            "value": "30.00",
            "points_price": None,
            "status": "withdrawn",
        }
        response = await client.put("/v1/catalog/gift-mug", json=terms)
        assert response.status_code == 200, response.text
        edited = response.json()
        assert (edited["name"], Decimal(edited["value"]), edited["status"]) == (
            "Big mug",
            Decimal("30"),
            "withdrawn",
        )
        # every term is replaced (the ones left out take their defaults); the id, kind and stock stay
        assert (edited["description"], edited["points_price"], edited["tiers"]) == (None, None, [])
        assert (edited["valid_from"], edited["valid_until"]) == (None, None)
        assert (edited["item_id"], edited["kind"], edited["stock"]) == ("gift-mug", "gift", 10)
        assert datetime.fromisoformat(edited["created_at"]) == datetime.fromisoformat(read["created_at"])
        assert datetime.fromisoformat(edited["updated_at"]) >= datetime.fromisoformat(read["updated_at"])
        response = await client.get("/v1/catalog/gift-mug")
        assert (response.json()["name"], response.json()["status"]) == ("Big mug", "withdrawn")
        assert await ids(client, "?status=withdrawn") == ["coupon-10", "gift-mug"]

        assert_problem(await client.put("/v1/catalog/no-such-item", json=terms), 404, "item-not-found")
        assert_problem(
            await client.put("/v1/catalog/gift-mug", json=terms | {"value": 30}), 422, "validation-error"
        )
        assert_problem(
            await client.put("/v1/catalog/gift-mug", json={"name": "No value", "currency": "EUR"}),
            422,
            "validation-error",
        )
        assert (await client.get("/v1/catalog/gift-mug")).json()["name"] == "Big mug"


async def test_a_restock_adds_once_per_idempotency_key(rewards: ServiceProcess) -> None:
    async with rewards.client() as client:
        await post_item(client, MUG)
        await post_item(client, VISIT)
        body = {"quantity": 5, "note": "delivery 42"}
        missing = await client.post("/v1/catalog/gift-mug/restocks", json=body)
        assert_problem(missing, 400, "idempotency-key-required")
        blank = await client.post("/v1/catalog/gift-mug/restocks", json=body, headers={"Idempotency-Key": ""})
        assert_problem(blank, 400, "idempotency-key-required")
        assert await stock(client, "gift-mug") == 10

        key = {"Idempotency-Key": str(uuid.uuid4())}
        first = await client.post("/v1/catalog/gift-mug/restocks", json=body, headers=key)
        assert first.status_code == 200, first.text
        assert first.json()["stock"] == 15
        again = await client.post("/v1/catalog/gift-mug/restocks", json=body, headers=key)
        assert again.status_code == 200, again.text
        assert again.json()["stock"] == 15  # added once
        assert await stock(client, "gift-mug") == 15

        other_body = await client.post(
            "/v1/catalog/gift-mug/restocks", json=body | {"quantity": 6}, headers=key
        )
        problem = assert_problem(other_body, 422, "idempotency-key-reused")
        assert key["Idempotency-Key"] in problem["detail"]
        other_note = await client.post(
            "/v1/catalog/gift-mug/restocks", json=body | {"note": "another delivery"}, headers=key
        )
        assert_problem(other_note, 422, "idempotency-key-reused")
        assert await stock(client, "gift-mug") == 15

        another = await client.post(
            "/v1/catalog/gift-mug/restocks",
            json={"quantity": 5},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert another.status_code == 200, another.text
        assert another.json()["stock"] == 20
        # a key is per item: the same key restocks another item
        visit = await client.post("/v1/catalog/service-visit/restocks", json=body, headers=key)
        assert visit.status_code == 200, visit.text
        assert visit.json()["stock"] == 8

        fresh = {"Idempotency-Key": str(uuid.uuid4())}
        for bad in (
            {"quantity": 0},
            {"quantity": -1},
            {"quantity": 1.5},
            {},
            {"quantity": 1, "note": "x" * 501},
        ):
            response = await client.post("/v1/catalog/gift-mug/restocks", json=bad, headers=fresh)
            assert_problem(response, 422, "validation-error")
        unknown = await client.post("/v1/catalog/no-such-item/restocks", json=body, headers=fresh)
        assert_problem(unknown, 404, "item-not-found")
        assert await stock(client, "gift-mug") == 20

        racing = {"Idempotency-Key": str(uuid.uuid4())}  # one restock retried at once: added once
        responses = await asyncio.gather(
            *(
                client.post("/v1/catalog/gift-mug/restocks", json={"quantity": 7}, headers=racing)
                for _ in range(6)
            )
        )
        assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
        assert await stock(client, "gift-mug") == 27

    restocks = await rewards.fetch("SELECT item_id, quantity, note, actor FROM restocks ORDER BY id")
    assert [(r["item_id"], r["quantity"], r["note"]) for r in restocks] == [
        ("gift-mug", 5, "delivery 42"),
        ("gift-mug", 5, None),
        ("service-visit", 5, "delivery 42"),
        ("gift-mug", 7, None),
    ]
    assert all(r["actor"].startswith("crm-key:") for r in restocks)


async def test_a_duplicate_item_and_bad_bodies_are_problems(rewards: ServiceProcess) -> None:
    async with rewards.client() as client:
        await post_item(client, MUG)
        duplicate = await client.post("/v1/catalog", json=VISIT | {"item_id": "gift-mug"})
        assert "gift-mug" in assert_problem(duplicate, 409, "item-exists")["detail"]

        bad: dict[str, tuple[dict[str, Any], str]] = {
            "value as a JSON number": (VISIT | {"value": 400}, "value"),
            "value as a float": (VISIT | {"value": 400.5}, "value"),
            "negative value": (VISIT | {"value": "-1.00"}, "value"),
            "value in exponent form": (VISIT | {"value": "1e3"}, "value"),
            "valid_until before valid_from": (
                VISIT
                | {"valid_from": "2026-06-01T00:00:00+00:00", "valid_until": "2026-05-01T00:00:00+00:00"},
                "valid_until",
            ),
            "valid_until equal to valid_from": (
                VISIT
                | {"valid_from": "2026-06-01T00:00:00+00:00", "valid_until": "2026-06-01T00:00:00+00:00"},
                "valid_until",
            ),
            "a naive valid_from": (VISIT | {"valid_from": "2026-06-01T00:00:00"}, "valid_from"),
            "negative stock": (VISIT | {"stock": -1}, "stock"),
            "unknown kind": (VISIT | {"kind": "voucher"}, "kind"),
            "unknown status": (VISIT | {"status": "gone"}, "status"),
            "bad item id": (VISIT | {"item_id": "-visit"}, "item_id"),
            "lowercase currency": (VISIT | {"currency": "eur"}, "currency"),
            "no name": ({k: v for k, v in VISIT.items() if k != "name"}, "name"),
            "empty name": (VISIT | {"name": ""}, "name"),
            "points price 0": (VISIT | {"points_price": 0}, "points_price"),
            "a tier that is no tier name": (VISIT | {"tiers": ["1st"]}, "tier"),
        }
        for what, (body, mentioned) in bad.items():
            response = await client.post("/v1/catalog", json=body)
            problem = assert_problem(response, 422, "validation-error")
            assert mentioned in problem["detail"], (what, problem)
            assert problem["errors"], (what, problem)
        not_json = await client.post(
            "/v1/catalog", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert not_json.status_code in (400, 422), not_json.text
        assert not_json.headers["content-type"].startswith("application/problem+json")

        assert await ids(client) == ["gift-mug"]  # nothing else was created
    assert await count(rewards, "SELECT count(*) FROM catalog_items") == 1


async def test_an_item_created_concurrently_twice_is_a_conflict_not_an_internal_error(
    rewards: ServiceProcess,
) -> None:
    # Deterministic: another transaction has inserted the id and not committed yet, so the request
    # finds no item, inserts, and waits on the primary key until the other one commits.
    conn = await rewards.db()
    try:
        racing = conn.transaction()
        await racing.start()
        await conn.execute(
            "INSERT INTO catalog_items (item_id, kind, name, currency, value, stock, status, created_at, "
            "updated_at) VALUES ('service-visit', 'service', 'Visit', 'EUR', 400, 3, 'active', now(), now())"
        )
        async with rewards.client() as client:
            request = asyncio.ensure_future(client.post("/v1/catalog", json=VISIT))

            async def waiting_on_the_key() -> bool:
                waiting = await rewards.scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' "
                    "AND query LIKE 'INSERT INTO catalog_items%'",
                    rewards.database,
                )
                return bool(waiting)

            await eventually(
                waiting_on_the_key, timeout=10, interval=0.05, what="the insert waits on the key"
            )
            await racing.commit()
            response = await request
    finally:
        await conn.close()
    assert_problem(response, 409, "item-exists")


# Realistic bodies for the routes known today; any other route of these tags is tried with an empty
# body (the key is checked before the body is read).
BODIES: dict[str, dict[str, Any]] = {
    "POST /v1/catalog": VISIT,
    "PUT /v1/catalog/{item_id}": {"name": "Hacked", "currency": "EUR", "value": "0"},
    "POST /v1/catalog/{item_id}/restocks": {"quantity": 1000},
    "PUT /v1/rewards/{reward_id}/fulfilment": {"status": "cancelled"},
    "POST /v1/programs/{program_id}/gifts": {"member_id": "M-1", "item_id": "gift-mug"},
}
KNOWN = {
    "POST /v1/catalog",
    "GET /v1/catalog",
    "GET /v1/catalog/{item_id}",
    "PUT /v1/catalog/{item_id}",
    "POST /v1/catalog/{item_id}/restocks",
    "GET /v1/members/{member_id}/rewards",
    "GET /v1/rewards/{reward_id}",
    "PUT /v1/rewards/{reward_id}/fulfilment",
    "POST /v1/programs/{program_id}/gifts",
    "GET /v1/programs/{program_id}/budget",
}
SHOP_READS = {"GET /v1/catalog", "GET /v1/catalog/{item_id}"}
PARTNER_READS = {"GET /v1/members/{member_id}/balances"}  # its own members only: test_rewards_partners


async def test_least_privilege_on_every_catalog_and_rewards_route(rewards: ServiceProcess) -> None:
    async with rewards.client() as client:
        await post_item(client, MUG)
        openapi = (await client.get("/openapi.json")).json()
    params = {
        "item_id": "gift-mug",
        "member_id": "M-1",
        "reward_id": str(uuid.uuid4()),
        "program_id": str(uuid.uuid4()),
    }
    routes = sorted(
        (method.upper(), template)
        for template, operations in openapi["paths"].items()
        for method, operation in operations.items()
        if {"catalog", "rewards"} & set(operation.get("tags", ()))
    )
    assert {f"{method} {template}" for method, template in routes} >= KNOWN
    key = {"Idempotency-Key": str(uuid.uuid4())}
    for method, template in routes:
        route = f"{method} {template}"
        path = template.format(**params)
        body = BODIES.get(route, {}) if method in ("POST", "PUT", "PATCH") else None
        async with rewards.client(key=None) as client:
            no_key = await client.request(method, path, json=body, headers=key)
            assert_problem(no_key, 401, "unauthorized")
            assert no_key.headers["www-authenticate"].startswith("Bearer"), route
            unknown = await client.request(
                method, path, json=body, headers=key | {"Authorization": "Bearer not-a-key"}
            )
            assert_problem(unknown, 401, "unauthorized")
        async with rewards.client(key=PARTNER_KEY) as client:
            if route in PARTNER_READS:  # M-1 is not one of P-1's members
                assert_problem(await client.request(method, path, headers=key), 404, "not-found")
                continue
            assert_problem(await client.request(method, path, json=body, headers=key), 403, "forbidden")
            if body is not None:  # the key is checked before the body: a bad body is still a 403
                bad_body = await client.request(method, path, json={"bad": True}, headers=key)
                assert_problem(bad_body, 403, "forbidden")
        async with rewards.client(key=SHOP_KEY) as client:
            response = await client.request(method, path, json=body, headers=key)
            if route in SHOP_READS:
                assert response.status_code == 200, (route, response.text)
            else:
                assert_problem(response, 403, "forbidden")

    async with rewards.client(key=SHOP_KEY) as client:
        assert await ids(client) == ["gift-mug"]  # the ecommerce key reads the catalog
        assert (await client.get("/v1/catalog/gift-mug")).json()["stock"] == 10
    async with rewards.client() as client:  # nothing any refused call asked for happened
        assert await ids(client) == ["gift-mug"]
        mug = (await client.get("/v1/catalog/gift-mug")).json()
        assert (mug["name"], mug["stock"]) == ("Mug", 10)
    assert await count(rewards, "SELECT count(*) FROM restocks") == 0
