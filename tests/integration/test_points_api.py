"""The points REST API against a real service process, a real PostgreSQL and a real broker.

Covers DESIGN.md guarantee 4 (balances never go wrong: idempotent value-moving POSTs, no overdraft
under concurrency, balance = Σ ledger), 5 (least privilege) and 6 (clear errors, no partial writes),
plus redemption, reversal/debt, pending points, expiry and the earning-rules API.

Tests that change global state (earning rules, the expiry run) get their own service (``points``);
the rest share one service per module (``svc``) and keep apart by using their own member ids.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import (
    CRM_KEY,
    OTHER_PARTNER_KEY,
    PARTNER_KEY,
    SHOP_KEY,
    TOPICS,
    Infra,
    PointsService,
    assert_problem,
    count,
    eventually,
    paid,
    publish,
    read_to_end,
    refunded,
    unique,
)

from loyalty_cli.embedded import ensure_topics

VALID_RULES: dict[str, Any] = {
    "points_per_unit": "1",
    "category_multipliers": {},
    "return_window_days": 0,
    "expiry_months": 12,
    "debt_policy": "debt",
    "expiring_soon_days": 30,
}


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def svc(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PointsService]:
    """One points service shared by the module's tests that leave global state (rules, expiry) alone."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    await ensure_topics(infra.bootstrap, [prefix + t for t in TOPICS], partitions=3)
    log_dir: Path = tmp_path_factory.mktemp("points-api")
    service = PointsService(infra, await infra.new_database(), prefix, log_dir)
    await service.start()
    yield service
    service.kill()


# --- helpers ------------------------------------------------------------------------------------


async def written_rows(service: PointsService, member: str) -> dict[str, int]:
    """Every row a value-moving request could write for a member."""
    tables = ("accounts", "ledger_entries", "redemptions", "adjustments", "lots")
    counts = {
        t: await count(service, f"SELECT count(*) FROM {t} WHERE member_id = $1", member) for t in tables
    }
    counts["outbox"] = await count(service, "SELECT count(*) FROM outbox WHERE key = $1", member)
    return counts


async def earn(service: PointsService, member: str, amount: str = "100.00", **kw: Any) -> str:
    """Publish an order.paid and wait until the service has processed it; returns the order id."""
    order = unique("O")
    await publish(service.infra, service.prefix + "orders", [paid(member, order, amount, **kw)])
    await eventually(
        lambda: count(service, "SELECT count(*) FROM orders WHERE order_id = $1", order),
        what=f"order {order} processed",
    )
    return order


async def refund(service: PointsService, member: str, order: str, amount: str) -> str:
    refund_id = unique("R")
    await publish(service.infra, service.prefix + "orders", [refunded(member, order, refund_id, amount)])
    await eventually(
        lambda: count(service, "SELECT count(*) FROM refunds WHERE refund_id = $1", refund_id),
        what=f"refund {refund_id} processed",
    )
    return refund_id


async def credit(service: PointsService, member: str, points: int) -> None:
    async with service.client(CRM_KEY) as crm:
        response = await crm.post(
            f"/v1/members/{member}/points/adjustments",
            json={"points": points, "reason": "test credit", "actor": "tester"},
            headers={"Idempotency-Key": unique("K")},
        )
    assert response.status_code == 201, response.text


async def redeem(
    client: httpx.AsyncClient,
    member: str,
    points: int,
    *,
    key: str | None = None,
    description: str = "gift card",
    **extra: Any,
) -> httpx.Response:
    return await client.post(
        f"/v1/members/{member}/points/redemptions",
        json={"points": points, "description": description, **extra},
        headers={"Idempotency-Key": key or unique("K")},
    )


async def ledger(service: PointsService, member: str) -> list[dict[str, Any]]:
    """The member's whole ledger over the API, newest first."""
    async with service.client(CRM_KEY) as crm:
        response = await crm.get(f"/v1/members/{member}/points/ledger", params={"limit": 200})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def topic_events(service: PointsService, member: str) -> list[dict[str, Any]]:
    """Every event on the service's loyalty.points topic keyed to ``member``, read to the topic's end."""
    records = await read_to_end(service.infra, service.prefix + "loyalty.points")
    return [json.loads(r.value) for r in records if r.key == member.encode()]


async def wait_events(service: PointsService, member: str, event_type: str, n: int) -> list[dict[str, Any]]:
    """Wait until at least ``n`` events of this type for this member are on the topic; return them."""

    async def found() -> list[dict[str, Any]] | None:
        events = [e for e in await topic_events(service, member) if e["type"] == event_type]
        return events if len(events) >= n else None

    events: list[dict[str, Any]] = await eventually(found, what=f"{n} {event_type} event(s) for {member}")
    return events


async def relay_idle(service: PointsService) -> None:
    """Wait until the outbox relay has published everything written so far."""
    await eventually(
        lambda: _no_unpublished(service),
        what="outbox relay published everything",
    )


async def _no_unpublished(service: PointsService) -> bool:
    return await count(service, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


# --- 1. redemption ------------------------------------------------------------------------------


async def test_redemption_debits_points_writes_ledger_and_publishes(svc: PointsService) -> None:
    member = unique("M")
    await earn(svc, member, "100.00")
    assert (await svc.balance(member))["available"] == 100

    async with svc.client(SHOP_KEY) as shop:
        response = await redeem(shop, member, 30, description="coffee machine", reference="cart-42")
    assert response.status_code == 201, response.text
    assert "Idempotent-Replayed" not in response.headers
    body = response.json()
    assert body["member_id"] == member
    assert body["points"] == 30
    assert body["description"] == "coffee machine"
    assert body["reference"] == "cart-42"
    assert body["available_after"] == 70
    assert body["created_at"]
    redemption_id = body["redemption_id"]
    uuid.UUID(redemption_id)

    balance = await svc.balance(member)
    assert balance["available"] == 70
    assert balance["lifetime_redeemed"] == 30
    assert balance["lifetime_earned"] == 100

    newest = (await ledger(svc, member))[0]
    assert newest["entry_type"] == "redeem"
    assert newest["points"] == -30
    assert newest["redemption_id"] == redemption_id
    assert "coffee machine" in newest["reason"]

    [event] = await wait_events(svc, member, "points.redeemed", 1)
    assert event["subject"] == member
    assert event["data"]["redemption_id"] == redemption_id
    assert event["data"]["points"] == 30
    assert event["data"]["member_id"] == member
    assert event["data"]["reference"] == "cart-42"
    await svc.assert_ledger_consistent()


async def test_redemption_spends_the_earliest_expiring_lot_first(svc: PointsService) -> None:
    member = unique("M")
    # The fresh order first, so the old lot has the higher id: spending by id would take the fresh one.
    fresh_order = await earn(svc, member, "100.00")
    old_order = await earn(svc, member, "100.00", time=datetime.now(UTC) - timedelta(days=335))
    assert (await svc.balance(member))["available"] == 200
    old_lot = "SELECT remaining FROM lots WHERE order_id = $1"

    async with svc.client(SHOP_KEY) as shop:
        response = await redeem(shop, member, 30)
    assert response.status_code == 201, response.text
    assert await count(svc, old_lot, old_order) == 70, "the soonest-expiring lot pays first"
    assert await count(svc, old_lot, fresh_order) == 100

    # More than the old lot holds: the old lot is emptied, the rest comes from the fresh one.
    async with svc.client(SHOP_KEY) as shop:
        response = await redeem(shop, member, 90)
    assert response.status_code == 201, response.text
    assert await count(svc, old_lot, old_order) == 0
    assert await count(svc, old_lot, fresh_order) == 80
    assert (await svc.balance(member))["available"] == 80
    await svc.assert_ledger_consistent()


# --- 2. Idempotency-Key -------------------------------------------------------------------------


async def test_value_moving_posts_require_an_idempotency_key(svc: PointsService) -> None:
    member = unique("M")
    await credit(svc, member, 50)
    before = await written_rows(svc, member)
    async with svc.client(CRM_KEY) as crm:
        for path, body in (
            ("redemptions", {"points": 10, "description": "gift"}),
            ("adjustments", {"points": 10, "reason": "goodwill", "actor": "anna"}),
        ):
            url = f"/v1/members/{member}/points/{path}"
            problem = assert_problem(await crm.post(url, json=body), 400, "idempotency-key-required")
            assert "Idempotency-Key" in problem["detail"]
            assert_problem(await crm.post(url, json=body, headers={"Idempotency-Key": "k" * 201}), 400)
    assert await written_rows(svc, member) == before
    assert (await svc.balance(member))["available"] == 50


async def test_redemption_retry_with_the_same_key_is_replayed_not_repeated(svc: PointsService) -> None:
    member = unique("M")
    await earn(svc, member, "100.00")
    key = unique("K")
    async with svc.client(SHOP_KEY) as shop:
        first = await redeem(shop, member, 40, key=key, reference="r-1")
        again = await redeem(shop, member, 40, key=key, reference="r-1")
        third = await redeem(shop, member, 40, key=key, reference="r-1")
        # The same key with another body is refused, whatever differs.
        for changed in (
            {"points": 41, "reference": "r-1"},
            {"points": 40, "reference": "r-2"},
            {"points": 40, "reference": "r-1", "description": "something else"},
        ):
            response = await redeem(shop, member, key=key, **changed)  # type: ignore[arg-type]
            assert_problem(response, 422, "idempotency-key-reused")

    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    for replay in (again, third):
        assert replay.status_code == 201, replay.text
        assert replay.headers.get("Idempotent-Replayed") == "true"
        assert replay.json() == first.json()

    assert (await svc.balance(member))["available"] == 60, "debited once"
    assert await count(svc, "SELECT count(*) FROM redemptions WHERE member_id = $1", member) == 1
    entries = [e for e in await ledger(svc, member) if e["entry_type"] == "redeem"]
    assert [e["points"] for e in entries] == [-40]
    assert (
        await count(
            svc, "SELECT count(*) FROM outbox WHERE key = $1 AND event_type = 'points.redeemed'", member
        )
        == 1
    )
    # A key belongs to its member: the same key for another member is a new redemption.
    other = unique("M")
    await credit(svc, other, 40)
    async with svc.client(SHOP_KEY) as shop:
        response = await redeem(shop, other, 40, key=key, reference="r-1")
    assert response.status_code == 201, response.text
    assert response.json()["redemption_id"] != first.json()["redemption_id"]
    await svc.assert_ledger_consistent()


async def test_adjustment_retry_with_the_same_key_is_replayed_not_repeated(svc: PointsService) -> None:
    member = unique("M")
    key = unique("K")
    url = f"/v1/members/{member}/points/adjustments"
    body = {"points": 25, "reason": "goodwill for a late delivery", "actor": "anna"}
    async with svc.client(CRM_KEY) as crm:
        first = await crm.post(url, json=body, headers={"Idempotency-Key": key})
        again = await crm.post(url, json=body, headers={"Idempotency-Key": key})
        for changed in ({"points": 26}, {"reason": "another reason"}, {"actor": "bob"}):
            response = await crm.post(url, json={**body, **changed}, headers={"Idempotency-Key": key})
            assert_problem(response, 422, "idempotency-key-reused")

    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert (await svc.balance(member))["available"] == 25, "credited once"
    assert await count(svc, "SELECT count(*) FROM adjustments WHERE member_id = $1", member) == 1
    assert [e["entry_type"] for e in await ledger(svc, member)] == ["adjust"]
    await svc.assert_ledger_consistent()


# --- 3. concurrency -----------------------------------------------------------------------------


async def test_concurrent_redemptions_never_overdraw(svc: PointsService) -> None:
    member = unique("M")
    await earn(svc, member, "100.00")
    assert (await svc.balance(member))["available"] == 100

    async with svc.client(SHOP_KEY) as shop:
        responses = await asyncio.gather(*(redeem(shop, member, 10) for _ in range(20)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 10 + [409] * 10, [r.text for r in responses if r.status_code >= 500]
    succeeded = [r.json() for r in responses if r.status_code == 201]
    # Each success saw the balance its predecessors left: 90, 80, ..., 0, never below.
    assert sorted(r["available_after"] for r in succeeded) == list(range(0, 100, 10))
    for r in responses:
        if r.status_code == 409:
            problem = assert_problem(r, 409, "insufficient-points")
            assert problem["available"] == 0 and problem["requested"] == 10

    balance = await svc.balance(member)
    assert balance["available"] == 0
    assert balance["lifetime_redeemed"] == 100
    assert await count(svc, "SELECT count(*) FROM redemptions WHERE member_id = $1", member) == 10
    assert await count(svc, "SELECT min(remaining) FROM lots WHERE member_id = $1", member) >= 0
    assert await count(svc, "SELECT sum(points) FROM ledger_entries WHERE member_id = $1", member) == 0
    await svc.assert_ledger_consistent()


async def test_concurrent_retries_with_one_key_make_one_redemption(svc: PointsService) -> None:
    member = unique("M")
    await earn(svc, member, "100.00")
    key = unique("K")

    async with svc.client(SHOP_KEY) as shop:
        responses = await asyncio.gather(*(redeem(shop, member, 30, key=key) for _ in range(10)))

    assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses]
    assert len({r.json()["redemption_id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 9
    assert await count(svc, "SELECT count(*) FROM redemptions WHERE member_id = $1", member) == 1
    assert (await svc.balance(member))["available"] == 70
    await svc.assert_ledger_consistent()


# --- 4. insufficient balance --------------------------------------------------------------------


async def test_redeeming_more_than_available_is_a_409_and_writes_nothing(svc: PointsService) -> None:
    member = unique("M")
    await earn(svc, member, "50.00")
    before = await written_rows(svc, member)
    async with svc.client(SHOP_KEY) as shop:
        problem = assert_problem(await redeem(shop, member, 51), 409, "insufficient-points")
    assert problem["available"] == 50
    assert problem["requested"] == 51
    assert await written_rows(svc, member) == before
    assert (await svc.balance(member))["available"] == 50

    # A member never seen before: 409 with available 0, and not even an account row is left behind.
    stranger = unique("M")
    async with svc.client(SHOP_KEY) as shop:
        problem = assert_problem(await redeem(shop, stranger, 1), 409, "insufficient-points")
    assert problem["available"] == 0 and problem["requested"] == 1
    assert await written_rows(svc, stranger) == dict.fromkeys(before, 0)


# --- 5. refund after redemption: debt or forgiveness --------------------------------------------


async def test_refund_of_spent_points_becomes_a_debt_repaid_by_later_earnings(svc: PointsService) -> None:
    member = unique("M")
    order = await earn(svc, member, "100.00")
    async with svc.client(SHOP_KEY) as shop:
        assert (await redeem(shop, member, 80)).status_code == 201
    await refund(svc, member, order, "100.00")

    balance = await svc.balance(member)
    assert balance["available"] == -80
    assert balance["debt"] == 80
    assert balance["lifetime_reversed"] == 100
    reverse = (await ledger(svc, member))[0]
    assert reverse["entry_type"] == "reverse" and reverse["points"] == -100
    assert await count(svc, "SELECT remaining FROM lots WHERE order_id = $1", order) == 0
    await svc.assert_ledger_consistent()

    # While in debt nothing can be redeemed.
    async with svc.client(SHOP_KEY) as shop:
        problem = assert_problem(await redeem(shop, member, 1), 409, "insufficient-points")
    assert problem["available"] == -80

    later = await earn(svc, member, "50.00")
    balance = await svc.balance(member)
    assert balance["available"] == -30
    assert balance["debt"] == 30
    earn_entry = (await ledger(svc, member))[0]
    assert earn_entry["entry_type"] == "earn" and earn_entry["points"] == 50
    assert "debt" in earn_entry["reason"]
    assert await count(svc, "SELECT coalesce(sum(remaining), 0) FROM lots WHERE order_id = $1", later) == 0
    await svc.assert_ledger_consistent()


async def test_refund_of_spent_points_is_forgiven_under_the_forgive_policy(points: PointsService) -> None:
    async with points.client(CRM_KEY) as crm:
        response = await crm.put("/v1/rules", json={**VALID_RULES, "debt_policy": "forgive"})
    assert response.status_code == 200, response.text
    assert response.json()["debt_policy"] == "forgive"

    member = unique("M")
    order = await earn(points, member, "100.00")
    async with points.client(SHOP_KEY) as shop:
        assert (await redeem(shop, member, 80)).status_code == 201
    await refund(points, member, order, "100.00")

    balance = await points.balance(member)
    assert balance["available"] == 0
    assert balance["debt"] == 0
    reverse = (await ledger(points, member))[0]
    assert reverse["entry_type"] == "reverse" and reverse["points"] == -20
    assert "forgiven" in reverse["reason"]
    await points.assert_ledger_consistent()

    await earn(points, member, "50.00")
    balance = await points.balance(member)
    assert balance["available"] == 50 and balance["debt"] == 0
    await points.assert_ledger_consistent()


# --- 6. expiry ----------------------------------------------------------------------------------


async def test_expiry_run_expires_due_lots_once(points: PointsService) -> None:
    member, bystander = unique("M"), unique("M")
    old = await earn(points, member, "100.00", time=datetime.now(UTC) - timedelta(days=400))
    await earn(points, bystander, "40.00")
    balance = await points.balance(member)
    assert balance["available"] == 0, "an expired lot is not spendable even before the run"
    assert balance["lifetime_earned"] == 100

    async with points.client(SHOP_KEY) as shop:
        assert_problem(await shop.post("/v1/expiry-runs"), 403, "forbidden")
    async with points.client(CRM_KEY) as crm:
        response = await crm.post("/v1/expiry-runs")
    assert response.status_code == 200, response.text
    assert response.json() == {"members": 1, "lots": 1, "points": 100}

    balance = await points.balance(member)
    assert balance["available"] == 0
    assert balance["lifetime_expired"] == 100
    assert await count(points, "SELECT remaining FROM lots WHERE order_id = $1", old) == 0
    newest = (await ledger(points, member))[0]
    assert newest["entry_type"] == "expire" and newest["points"] == -100
    [event] = await wait_events(points, member, "points.expired", 1)
    assert event["data"]["points"] == 100
    assert (await points.balance(bystander))["available"] == 40
    await points.assert_ledger_consistent()

    # Again: nothing left to expire, nothing written, nothing published.
    entries_before = await count(points, "SELECT count(*) FROM ledger_entries")
    outbox_before = await count(points, "SELECT count(*) FROM outbox")
    async with points.client(CRM_KEY) as crm:
        response = await crm.post("/v1/expiry-runs")
    assert response.status_code == 200, response.text
    assert response.json() == {"members": 0, "lots": 0, "points": 0}
    assert await count(points, "SELECT count(*) FROM ledger_entries") == entries_before
    assert await count(points, "SELECT count(*) FROM outbox") == outbox_before
    await relay_idle(points)
    expired = [e for e in await topic_events(points, member) if e["type"] == "points.expired"]
    assert len(expired) == 1
    assert (await points.balance(member))["lifetime_expired"] == 100
    await points.assert_ledger_consistent()


async def test_points_reads_time_from_the_service_clock(points_factory: Any) -> None:
    """Moving the settable clock past a lot's expiry moves the balance, the expiry run, the time of
    what is published, a redemption and an adjustment with it: nothing in points reads the system
    clock."""
    points = await points_factory(LOYALTY_SETTABLE_CLOCK="true")
    member = unique("M")
    await earn(points, member, "100.00")
    await earn(points, member, "30.00", time=datetime.now(UTC) + timedelta(days=200))
    later = datetime.now(UTC) + timedelta(days=380)
    async with points.client(CRM_KEY) as crm:
        moved = await crm.put("/v1/clock", json={"now": later.isoformat()})
        assert moved.status_code == 200, moved.text
        balance = (await crm.get(f"/v1/members/{member}/points")).json()
        assert datetime.fromisoformat(balance["as_of"]) >= later
        assert balance["available"] == 30, "the first lot has expired by the service's clock"
        run = await crm.post("/v1/expiry-runs")
        assert run.json() == {"members": 1, "lots": 1, "points": 100}, run.text
        redeemed = await crm.post(
            f"/v1/members/{member}/points/redemptions",
            json={"points": 10, "description": "mug"},
            headers={"Idempotency-Key": unique("k")},
        )
        assert redeemed.status_code == 201, redeemed.text
        assert datetime.fromisoformat(redeemed.json()["created_at"]) >= later
        adjusted = await crm.post(
            f"/v1/members/{member}/points/adjustments",
            json={"points": 5, "reason": "goodwill", "actor": "am-1"},
            headers={"Idempotency-Key": unique("k")},
        )
        assert adjusted.status_code == 201, adjusted.text
        assert datetime.fromisoformat(adjusted.json()["created_at"]) >= later
    [expired] = await wait_events(points, member, "points.expired", 1)
    assert datetime.fromisoformat(expired["time"]) >= later
    await points.assert_ledger_consistent()


# --- 7. rules versions and pending points -------------------------------------------------------


async def test_return_window_keeps_points_pending_and_refunds_cancel_them_first(
    points: PointsService,
) -> None:
    async with points.client(CRM_KEY) as crm:
        initial = await crm.get("/v1/rules")
        assert initial.status_code == 200, initial.text
        version = initial.json()["version"]

        partial = {k: v for k, v in VALID_RULES.items() if k != "expiring_soon_days"}
        assert_problem(await crm.put("/v1/rules", json=partial), 422, "validation-error")

        response = await crm.put("/v1/rules", json={**VALID_RULES, "return_window_days": 14})
        assert response.status_code == 200, response.text
        put = response.json()
        assert put["version"] == version + 1
        assert put["return_window_days"] == 14
        assert put["created_by"].startswith("crm-key:")
        assert CRM_KEY not in json.dumps(put), "the key itself is never shown"

        shown = (await crm.get("/v1/rules")).json()
        assert shown["version"] == version + 1
        assert shown["return_window_days"] == 14
    new_version = version + 1

    member = unique("M")
    await credit(points, member, 50)  # spendable now
    order = await earn(points, member, "100.00")
    balance = await points.balance(member)
    assert balance["pending"] == 100
    assert balance["available"] == 50
    earn_entry = next(e for e in await ledger(points, member) if e["entry_type"] == "earn")
    assert earn_entry["rule_version"] == new_version
    assert earn_entry["order_id"] == order
    assert f"v{new_version}" in earn_entry["reason"]

    # Pending points cannot be spent.
    async with points.client(SHOP_KEY) as shop:
        problem = assert_problem(await redeem(shop, member, 60), 409, "insufficient-points")
    assert problem["available"] == 50

    # A partial refund inside the window cancels pending points first; the spendable 50 stay.
    await refund(points, member, order, "30.00")
    balance = await points.balance(member)
    assert balance["pending"] == 70
    assert balance["available"] == 50
    assert balance["debt"] == 0
    reverse = (await ledger(points, member))[0]
    assert reverse["entry_type"] == "reverse" and reverse["points"] == -30
    await points.assert_ledger_consistent()


# --- 8. rules validation ------------------------------------------------------------------------


async def test_invalid_rules_are_refused_and_create_no_version(points: PointsService) -> None:
    async with points.client(CRM_KEY) as crm:
        version = (await crm.get("/v1/rules")).json()["version"]
        rule_sets = await count(points, "SELECT count(*) FROM earning_rules")
        bad = {**VALID_RULES, "category_multipliers": {"books": "-1"}, "expiry_months": 0}
        problem = assert_problem(await crm.put("/v1/rules", json=bad), 422, "invalid-rules")
        assert len(problem["problems"]) == 2, problem
        assert any("books" in p for p in problem["problems"]), problem
        assert any("expiry_months" in p for p in problem["problems"]), problem

        for change in (
            {"points_per_unit": "0"},
            {"points_per_unit": "-1"},
            {"return_window_days": -1},
            {"expiring_soon_days": 0},
            {"expiry_months": 121},
        ):
            response = await crm.put("/v1/rules", json={**VALID_RULES, **change})
            assert_problem(response, 422, "invalid-rules")
        for change in (
            {"points_per_unit": "abc"},
            {"debt_policy": "maybe"},
            {"return_window_days": "two weeks"},
            {"category_multipliers": {"books\x00": "2"}},  # PostgreSQL stores no NUL (was a 500)
        ):
            response = await crm.put("/v1/rules", json={**VALID_RULES, **change})
            assert_problem(response, 422)
        # A key that is not UTF-8 (a lone surrogate) was a 500 too; the problem names it safely.
        body = json.dumps({**VALID_RULES, "category_multipliers": {"\udc00": "2"}})
        response = await crm.put("/v1/rules", content=body, headers={"Content-Type": "application/json"})
        problem = assert_problem(response, 422, "validation-error")
        assert problem["errors"][0]["location"] == ["body", "category_multipliers", "'\\udc00'"], problem

        assert (await crm.get("/v1/rules")).json()["version"] == version
        assert await count(points, "SELECT count(*) FROM earning_rules") == rule_sets

        # Refused attempts use up no version number.
        response = await crm.put("/v1/rules", json=VALID_RULES)
        assert response.status_code == 200, response.text
        assert response.json()["version"] == version + 1


# --- 9. auth ------------------------------------------------------------------------------------


async def test_calls_without_a_valid_key_are_401(svc: PointsService) -> None:
    member = unique("M")
    await credit(svc, member, 10)
    before = await written_rows(svc, member)
    for key in (None, "not-a-key", CRM_KEY + "x"):
        async with svc.client(key) as client:
            for method, url, kw in (
                ("GET", f"/v1/members/{member}/points", {}),
                ("GET", f"/v1/members/{member}/points/ledger", {}),
                ("GET", "/v1/rules", {}),
                ("PUT", "/v1/rules", {"json": VALID_RULES}),
                ("POST", "/v1/expiry-runs", {}),
                ("PUT", f"/v1/partners/P-1/members/{member}", {}),
                (
                    "POST",
                    f"/v1/members/{member}/points/redemptions",
                    {"json": {"points": 1, "description": "x"}, "headers": {"Idempotency-Key": "k1"}},
                ),
                (
                    "POST",
                    f"/v1/members/{member}/points/adjustments",
                    {
                        "json": {"points": 1, "reason": "xyz", "actor": "a"},
                        "headers": {"Idempotency-Key": "k2"},
                    },
                ),
            ):
                response = await client.request(method, url, **kw)
                problem = assert_problem(response, 401, "unauthorized")
                assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), (method, url)
                assert "available" not in problem
    for header in ({"Authorization": "Bearer"}, {"Authorization": f"Basic {CRM_KEY}"}, {"X-API-Key": "nope"}):
        async with httpx.AsyncClient(base_url=svc.url, headers=header) as client:
            assert_problem(await client.get(f"/v1/members/{member}/points"), 401)
    async with httpx.AsyncClient(base_url=svc.url, headers={"X-API-Key": CRM_KEY}) as client:
        assert (await client.get(f"/v1/members/{member}/points")).status_code == 200
    assert await written_rows(svc, member) == before


async def test_authentication_comes_before_request_checks(svc: PointsService) -> None:
    """An unauthenticated caller learns nothing about the request: 401, not 400/422."""
    member = unique("M")
    async with svc.client(None) as anonymous:
        no_idempotency_key = await anonymous.post(
            f"/v1/members/{member}/points/redemptions", json={"points": 1, "description": "x"}
        )
        assert_problem(no_idempotency_key, 401, "unauthorized")
        response = await anonymous.post(
            f"/v1/members/{member}/points/adjustments", json={"points": 5, "reason": "xyz", "actor": "a"}
        )
        assert_problem(response, 401, "unauthorized")
        # FastAPI reads the body before it resolves dependencies: the key is checked before that.
        for body in (b'{"points": 1,', b"\xff"):
            response = await anonymous.post(
                f"/v1/members/{member}/points/redemptions",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert_problem(response, 401, "unauthorized")
            assert_problem(await anonymous.put("/v1/rules", content=body), 401, "unauthorized")
    # A key without the scope is refused for its scope, not for a missing header.
    async with svc.client(PARTNER_KEY) as partner:
        response = await partner.post(
            f"/v1/members/{member}/points/redemptions", json={"points": 1, "description": "x"}
        )
        assert_problem(response, 403, "forbidden")
        response = await partner.put(
            "/v1/rules", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 403, "forbidden")
    async with svc.client(SHOP_KEY) as shop:
        response = await shop.post(
            f"/v1/members/{member}/points/adjustments", json={"points": 5, "reason": "xyz", "actor": "a"}
        )
        assert_problem(response, 403, "forbidden")


async def test_scopes_limit_what_a_key_may_do(svc: PointsService) -> None:
    member = unique("M")
    await credit(svc, member, 100)
    before = await written_rows(svc, member)
    rules_before = await count(svc, "SELECT count(*) FROM earning_rules")
    idem = {"Idempotency-Key": unique("K")}
    async with svc.client(SHOP_KEY) as shop:
        assert (await shop.get(f"/v1/members/{member}/points")).status_code == 200
        assert_problem(await shop.get("/v1/rules"), 403, "forbidden")
        assert_problem(await shop.put("/v1/rules", json=VALID_RULES), 403, "forbidden")
        adjustment = {"points": 1000, "reason": "free points", "actor": "shop"}
        url = f"/v1/members/{member}/points/adjustments"
        assert_problem(await shop.post(url, json=adjustment, headers=idem), 403, "forbidden")
        assert_problem(await shop.put(f"/v1/partners/P-1/members/{member}"), 403, "forbidden")
    async with svc.client(PARTNER_KEY) as partner:
        assert_problem(await redeem(partner, member, 10), 403, "forbidden")
        url = f"/v1/members/{member}/points/adjustments"
        assert_problem(await partner.post(url, json=adjustment, headers=idem), 403, "forbidden")
        # A partner cannot link a member to itself.
        assert_problem(await partner.put(f"/v1/partners/P-1/members/{member}"), 403, "forbidden")
        assert_problem(await partner.get("/v1/rules"), 403, "forbidden")
    assert await written_rows(svc, member) == before
    assert await count(svc, "SELECT count(*) FROM earning_rules") == rules_before
    assert await count(svc, "SELECT count(*) FROM partner_members WHERE member_id = $1", member) == 0
    assert (await svc.balance(member))["available"] == 100


async def test_partner_sees_only_its_linked_members(svc: PointsService) -> None:
    member = unique("M")
    await credit(svc, member, 4321)
    balance_url = f"/v1/members/{member}/points"
    ledger_url = f"/v1/members/{member}/points/ledger"

    async def partner_reads(key: str) -> tuple[httpx.Response, httpx.Response]:
        async with svc.client(key) as partner:
            return await partner.get(balance_url), await partner.get(ledger_url)

    def assert_hidden(response: httpx.Response) -> None:
        problem = assert_problem(response, 404, "not-found")
        assert "available" not in problem and "items" not in problem
        assert "4321" not in response.text

    for response in await partner_reads(PARTNER_KEY):
        assert_hidden(response)

    async with svc.client(CRM_KEY) as crm:
        link = f"/v1/partners/P-1/members/{member}"
        assert (await crm.put(link)).status_code == 204
        assert (await crm.put(link)).status_code == 204, "linking twice is harmless"

    balance, entries = await partner_reads(PARTNER_KEY)
    assert balance.status_code == 200, balance.text
    assert balance.json()["available"] == 4321
    assert entries.status_code == 200, entries.text
    assert [e["points"] for e in entries.json()["items"]] == [4321]
    for response in await partner_reads(OTHER_PARTNER_KEY):
        assert_hidden(response)

    async with svc.client(CRM_KEY) as crm:
        assert (await crm.delete(link)).status_code == 204
        assert_problem(await crm.delete(link), 404, "not-found")
    for response in await partner_reads(PARTNER_KEY):
        assert_hidden(response)


# --- 10. ledger pagination ----------------------------------------------------------------------


async def test_ledger_pages_newest_first_without_gaps_or_duplicates(svc: PointsService) -> None:
    member = unique("M")
    for points in range(1, 8):
        await credit(svc, member, points)
    url = f"/v1/members/{member}/points/ledger"
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    async with svc.client(CRM_KEY) as crm:
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            response = await crm.get(url, params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert len(pages) < 10, "pagination does not end"
        whole = (await crm.get(url, params={"limit": 7})).json()
        assert len(whole["items"]) == 7 and whole["next_cursor"] is None

    assert [len(p) for p in pages] == [3, 3, 1]
    items = [item for page in pages for item in page]
    assert [i["points"] for i in items] == [7, 6, 5, 4, 3, 2, 1], "newest first"
    ids = [i["id"] for i in items]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 7
    assert ids == [i["id"] for i in whole["items"]]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "bm90LWEtY3Vyc29y",  # "not-a-cursor"
        base64.urlsafe_b64encode(b"ledger:abc").decode(),
        base64.urlsafe_b64encode(b"other:5").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"ledger:99999999999999999999999").decode(),
    ],
)
async def test_a_cursor_the_api_did_not_return_is_a_400(svc: PointsService, cursor: str) -> None:
    member = unique("M")
    async with svc.client(CRM_KEY) as crm:
        response = await crm.get(f"/v1/members/{member}/points/ledger", params={"cursor": cursor})
    assert_problem(response, 400, "invalid-cursor")


# --- 11. clear errors ---------------------------------------------------------------------------


async def test_bad_requests_get_problem_details_and_write_nothing(svc: PointsService) -> None:
    member = unique("M")
    await earn(svc, member, "100.00")
    before = await written_rows(svc, member)
    redemptions = f"/v1/members/{member}/points/redemptions"
    adjustments = f"/v1/members/{member}/points/adjustments"
    json_headers = {"Content-Type": "application/json"}

    cases: list[tuple[str, str, str, dict[str, Any], int]] = [
        # (what, method, url, httpx kwargs, expected status)
        ("malformed JSON", "POST", redemptions, {"content": b'{"points": 10,', "headers": json_headers}, 422),
        ("JSON array", "POST", redemptions, {"json": [10, "gift"]}, 422),
        ("JSON null", "POST", redemptions, {"content": b"null", "headers": json_headers}, 422),
        ("empty body", "POST", redemptions, {"content": b"", "headers": json_headers}, 422),
        ("points 0", "POST", redemptions, {"json": {"points": 0, "description": "x"}}, 422),
        ("points negative", "POST", redemptions, {"json": {"points": -10, "description": "x"}}, 422),
        ("points 'abc'", "POST", redemptions, {"json": {"points": "abc", "description": "x"}}, 422),
        ("points fractional", "POST", redemptions, {"json": {"points": 1.5, "description": "x"}}, 422),
        ("points huge", "POST", redemptions, {"json": {"points": 10**20, "description": "x"}}, 422),
        ("no description", "POST", redemptions, {"json": {"points": 10}}, 422),
        ("empty description", "POST", redemptions, {"json": {"points": 10, "description": ""}}, 422),
        ("long description", "POST", redemptions, {"json": {"points": 10, "description": "x" * 501}}, 422),
        # PostgreSQL stores no NUL character: refused before the INSERT (it was a 500 there)
        ("NUL in description", "POST", redemptions, {"json": {"points": 1, "description": "a\x00"}}, 422),
        (
            "NUL in reference",
            "POST",
            redemptions,
            {"json": {"points": 1, "description": "x", "reference": "\x00"}},
            422,
        ),
        (
            "NUL in reason",
            "POST",
            adjustments,
            {"json": {"points": 5, "reason": "ab\x00", "actor": "a"}},
            422,
        ),
        ("NUL in actor", "POST", adjustments, {"json": {"points": 5, "reason": "xyz", "actor": "\x00"}}, 422),
        ("adjustment 0", "POST", adjustments, {"json": {"points": 0, "reason": "zero", "actor": "a"}}, 422),
        ("adjustment no actor", "POST", adjustments, {"json": {"points": 5, "reason": "xyz"}}, 422),
        (
            "adjustment short reason",
            "POST",
            adjustments,
            {"json": {"points": 5, "reason": "x", "actor": "a"}},
            422,
        ),
        (
            "adjustment huge",
            "POST",
            adjustments,
            {"json": {"points": 10**9, "reason": "xyz", "actor": "a"}},
            422,
        ),
        (
            "member id with illegal characters",
            "POST",
            "/v1/members/bad member!/points/redemptions",
            {"json": {"points": 10, "description": "x"}},
            422,
        ),
        (
            "member id too long",
            "POST",
            f"/v1/members/{'m' * 65}/points/adjustments",
            {"json": {"points": 10, "reason": "xyz", "actor": "a"}},
            422,
        ),
        ("member id illegal (GET)", "GET", "/v1/members/-dash/points", {}, 422),
        ("ledger limit 0", "GET", f"/v1/members/{member}/points/ledger?limit=0", {}, 422),
        ("ledger limit abc", "GET", f"/v1/members/{member}/points/ledger?limit=abc", {}, 422),
        ("ledger limit too big", "GET", f"/v1/members/{member}/points/ledger?limit=100000", {}, 422),
        ("unknown route", "GET", "/v1/no-such-thing", {}, 404),
        ("unknown member sub-route", "POST", f"/v1/members/{member}/points/redeem", {"json": {}}, 404),
        ("wrong method", "DELETE", redemptions, {}, 405),
    ]
    async with svc.client(CRM_KEY) as crm:
        for what, method, url, kw, status in cases:
            headers = {"Idempotency-Key": unique("K"), **kw.pop("headers", {})}
            response = await crm.request(method, url, headers=headers, **kw)
            assert response.status_code == status, f"{what}: {response.status_code} {response.text}"
            assert_problem(response, status)
            if status == 422 and method == "POST":
                assert response.json().get("errors"), f"{what}: the problem says what is wrong"

    assert await written_rows(svc, member) == before
    assert (await svc.balance(member))["available"] == 100
    await svc.assert_ledger_consistent()


# --- 12. adjustments ----------------------------------------------------------------------------


async def test_adjustments_credit_and_debit_with_reason_and_actor(svc: PointsService) -> None:
    member = unique("M")
    url = f"/v1/members/{member}/points/adjustments"
    async with svc.client(CRM_KEY) as crm:
        response = await crm.post(
            url,
            json={"points": 25, "reason": "goodwill for a late delivery", "actor": "anna@crm"},
            headers={"Idempotency-Key": unique("K")},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["member_id"] == member
        assert body["points"] == 25 and body["available_after"] == 25
        assert body["reason"] == "goodwill for a late delivery" and body["actor"] == "anna@crm"
        adjustment_id = body["adjustment_id"]

        entry = (await ledger(svc, member))[0]
        assert entry["entry_type"] == "adjust" and entry["points"] == 25
        assert entry["actor"] == "anna@crm"
        assert entry["reason"] == "goodwill for a late delivery"
        assert entry["adjustment_id"] == adjustment_id
        [event] = await wait_events(svc, member, "points.adjusted", 1)
        assert event["data"]["adjustment_id"] == adjustment_id and event["data"]["actor"] == "anna@crm"

        before = await written_rows(svc, member)
        debit = {"points": -30, "reason": "correction", "actor": "bob"}
        problem = assert_problem(
            await crm.post(url, json=debit, headers={"Idempotency-Key": unique("K")}),
            409,
            "insufficient-points",
        )
        assert problem["available"] == 25 and problem["requested"] == 30
        zero = {"points": 0, "reason": "correction", "actor": "bob"}
        problem = assert_problem(
            await crm.post(url, json=zero, headers={"Idempotency-Key": unique("K")}), 422, "validation-error"
        )
        assert "0" in problem["detail"]
        assert await written_rows(svc, member) == before

        response = await crm.post(
            url, json={**debit, "points": -10}, headers={"Idempotency-Key": unique("K")}
        )
        assert response.status_code == 201, response.text
        assert response.json()["available_after"] == 15
        entry = (await ledger(svc, member))[0]
        assert entry["entry_type"] == "adjust" and entry["points"] == -10 and entry["actor"] == "bob"

    assert (await svc.balance(member))["available"] == 15
    await svc.assert_ledger_consistent()


async def test_a_credit_pays_an_outstanding_debt_first(svc: PointsService) -> None:
    member = unique("M")
    order = await earn(svc, member, "100.00")
    async with svc.client(SHOP_KEY) as shop:
        assert (await redeem(shop, member, 100)).status_code == 201
    await refund(svc, member, order, "100.00")
    assert (await svc.balance(member))["debt"] == 100

    await credit(svc, member, 130)
    balance = await svc.balance(member)
    assert balance["debt"] == 0
    assert balance["available"] == 30
    await svc.assert_ledger_consistent()


async def test_a_balance_past_int32_is_never_a_500(svc: PointsService) -> None:
    member = unique("M")
    url = f"/v1/members/{member}/points/adjustments"
    body = {"points": 100_000_000, "reason": "big credit", "actor": "a"}
    for i in range(22):  # the 22nd takes the balance to 2.2 billion
        async with svc.client(CRM_KEY) as crm:
            response = await crm.post(url, json=body, headers={"Idempotency-Key": unique("K")})
        assert response.status_code < 500, f"credit {i + 1}: {response.status_code} {response.text}"
        if response.status_code != 201:
            assert_problem(response, response.status_code)
    await svc.assert_ledger_consistent()
