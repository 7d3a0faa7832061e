"""The tiers service's event side against the real broker and database: promotion on an order,
demotion only at evaluation after grace, the points multiplier that follows, and DESIGN.md
guarantees 1-3 for the tiers consumer (duplicates, replay from offset 0, crashes, dead letters).

The tiers service's clock is settable (``PUT /v1/clock``): evaluations at the next 1 January and the
end of grace are reached by moving it forward. Orders are stamped with the real time unless said.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from conftest import Platform, ServiceProcessFactory
from harness import (
    ServiceProcess,
    cancelled,
    consumed,
    evaluate,
    eventually,
    paid,
    publish,
    published,
    read_to_end,
    refunded,
    rewind_group,
    set_clock,
    tier_changes,
    unique,
)

from loyalty_shared.envelope import CloudEvent, new_event
from loyalty_shared.events import OrderPaid, OrderRefunded
from loyalty_shared.messaging.deadletters import DeadLetter, read_dead_letters

NOW = datetime.now(UTC)
NEXT_EVALUATION = datetime(NOW.year + 1, 1, 1, tzinfo=UTC)  # the default ladder: every 1 January (UTC)
GRACE_END = NEXT_EVALUATION + timedelta(days=30)
LAST_EVALUATION_WINDOW_START = datetime(NOW.year, 1, 1, tzinfo=UTC)  # rolling 12 months before it
GOLD_RULE = "Gold: 200000.00 EUR qualifying spend or 60 qualifying orders"
ZERO_SUMMARY = {
    "members": 0,
    "evaluations": 0,
    "kept": 0,
    "grace_started": 0,
    "promoted": 0,
    "demoted": 0,
    "overrides_ended": 0,
}


# --- helpers ------------------------------------------------------------------------------------


async def tier(service: ServiceProcess, member: str) -> dict[str, Any]:
    body: dict[str, Any] = await service.get(f"/v1/members/{member}/tier")
    return body


async def history(service: ServiceProcess, member: str) -> list[dict[str, Any]]:
    """The member's whole tier history over the API, oldest first."""
    body = await service.get(f"/v1/members/{member}/tier/history?limit=200")
    assert body["next_cursor"] is None
    return list(reversed(body["items"]))


async def publish_and_wait(service: ServiceProcess, *events: CloudEvent) -> None:
    await publish(service.infra, service.prefix + "orders", list(events))
    await eventually(lambda: consumed(service, *events), what=f"{len(events)} order event(s) processed")


def moves(changes: list[dict[str, Any]]) -> list[tuple[str | None, str, str, str]]:
    return [
        (c["data"]["from_tier"], c["data"]["to_tier"], c["data"]["direction"], c["data"]["reason"])
        for c in changes
    ]


def by_id(event: dict[str, Any]) -> str:
    return str(event["id"])


def distinct(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events by id, the first of each (order kept)."""
    seen: dict[str, dict[str, Any]] = {}
    for event in events:
        seen.setdefault(event["id"], event)
    return list(seen.values())


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def summary(**counts: int) -> dict[str, int]:
    return {**ZERO_SUMMARY, **counts}


def without_as_of(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "as_of"}


async def points_orders(points: ServiceProcess, member: str) -> dict[str, tuple[int, Decimal]]:
    """What each of the member's orders earned in points, and at which tier multiplier."""
    conn = await points.db()
    try:
        rows = await conn.fetch(
            "SELECT order_id, points_earned, tier_multiplier FROM orders WHERE member_id = $1", member
        )
    finally:
        await conn.close()
    return {r["order_id"]: (r["points_earned"], r["tier_multiplier"]) for r in rows}


async def points_orders_are(points: ServiceProcess, member: str, n: int) -> bool:
    return len(await points_orders(points, member)) == n


async def qualifying_total(service: ServiceProcess, member: str) -> Decimal:
    value = await service.scalar(
        "SELECT coalesce(sum(qualifying - refunded), 0) FROM qualifying_orders "
        "WHERE member_id = $1 AND cancelled_at IS NULL",
        member,
    )
    return Decimal(value)


async def metric(service: ServiceProcess, name: str, **labels: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{service.url}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def dead_letters(service: ServiceProcess, n: int) -> list[DeadLetter] | None:
    letters = await read_dead_letters(
        {"bootstrap_servers": service.infra.bootstrap}, service.prefix + "loyalty-tiers"
    )
    return letters if len(letters) >= n else None


def order_paid(member: str, order: str, amount: str, *, currency: str = "EUR", **kw: Any) -> CloudEvent:
    data = OrderPaid(order_id=order, member_id=member, currency=currency, amount=amount, lines=[])  # type: ignore[arg-type]
    return new_event("order.paid", "urn:test:shop", member, data, **kw)


def refund_with_lines(
    member: str, order: str, refund: str, amount: str, lines: list[dict[str, Any]]
) -> CloudEvent:
    data = OrderRefunded(
        order_id=order,
        member_id=member,
        currency="EUR",
        amount=amount,  # type: ignore[arg-type]
        refund_id=refund,
        lines=lines,  # type: ignore[arg-type]
    )
    return new_event("order.refunded", "urn:test:shop", member, data)


def line(category: str, quantity: int, unit_price: str) -> dict[str, Any]:
    return {"sku": unique("SKU"), "category": category, "quantity": quantity, "unit_price": unit_price}


# --- 1. promotion, once ---------------------------------------------------------------------------


async def test_an_order_crossing_gold_publishes_one_tier_changed_despite_redelivery(
    tiers: ServiceProcess,
) -> None:
    member, first, crossing_order = unique("M"), unique("O"), unique("O")
    silver = paid(member, first, "60000.00")
    crossing = paid(member, crossing_order, "150000.00")
    same_order_new_id = paid(member, crossing_order, "150000.00")
    await publish_and_wait(tiers, silver, crossing, crossing, same_order_new_id, crossing)

    changes = await tier_changes(tiers, member)
    assert moves(changes) == [(None, "Silver", "up", "qualified"), ("Silver", "Gold", "up", "qualified")]
    assert [c["data"]["to_tier"] for c in changes].count("Gold") == 1
    gold = changes[1]["data"]
    assert gold["points_multiplier"] == "1.5"
    assert gold["benefits"]["points_multiplier"] == "1.5"
    assert gold["benefits"]["upgrade_gift"] == "gold-welcome-gift"
    figures = gold["figures"]
    assert figures["qualifying_spend"] == "210000.00"
    assert figures["qualifying_orders"] == 2
    assert figures["rule"] == GOLD_RULE
    assert figures["order_id"] == crossing_order
    assert figures["ladder_version"] == 0
    assert figures["currency"] == "EUR"
    assert figures["window"] == "the rolling 12 months"
    assert figures["window_end"] is None
    assert changes[0]["data"]["figures"]["qualifying_spend"] == "60000.00"

    entries = await history(tiers, member)
    assert [(e["from_tier"], e["to_tier"], e["reason"]) for e in entries] == [
        (None, "Silver", "qualified"),
        ("Silver", "Gold", "qualified"),
    ]
    assert [e["event_id"] for e in entries] == [c["id"] for c in changes]
    assert entries[1]["figures"] == figures
    assert entries[1]["ladder_version"] == 0 and entries[1]["actor"] is None

    rows = await tiers.scalar(
        "SELECT array_agg(qualifying ORDER BY paid_at) FROM qualifying_orders WHERE member_id = $1", member
    )
    assert list(rows) == [Decimal("60000.0000"), Decimal("150000.0000")]
    view = await tier(tiers, member)
    assert (view["tier"], view["qualifying_spend"], view["qualifying_orders"]) == ("Gold", "210000.00", 2)
    # the identical event twice more: skipped by the inbox; the new id for the same order: processed,
    # but the order was already counted
    assert await metric(tiers, "loyalty_events_consumed_total", outcome="duplicate") >= 2
    assert await tiers.scalar("SELECT count(*) FROM inbox") == 3


# --- 2. the points multiplier follows the tier ----------------------------------------------------


async def test_points_earn_at_gold_after_the_promoting_order_which_earned_at_the_old_tier(
    platform: Platform,
) -> None:
    tiers, points = platform.tiers, platform.points
    member, promoting, next_order = unique("M"), unique("O"), unique("O")
    promoting_event = paid(member, promoting, "250000.00")
    await publish_and_wait(tiers, promoting_event)
    (gold,) = await tier_changes(tiers, member)
    # the change applies to orders paid after the promoting order's payment
    assert at(gold["data"]["effective_at"]) == promoting_event.time

    async def points_tier_is_gold() -> bool:
        return bool((await points.balance(member))["tier"] == "Gold")

    await eventually(points_tier_is_gold, what="points projected Gold")
    balance = await points.balance(member)
    assert (balance["tier_multiplier"], balance["available"]) == ("1.5", 250000)

    await publish(points.infra, points.prefix + "orders", [paid(member, next_order, "100.00")])

    async def available_is(n: int) -> bool:
        return bool((await points.balance(member))["available"] == n)

    await eventually(lambda: available_is(250150), what="next order earned at 1.5x")
    assert await points_orders(points, member) == {
        promoting: (250000, Decimal("1")),
        next_order: (150, Decimal("1.5")),
    }
    earned = await published(points, "loyalty.points", event_type="points.earned", member=member)
    by_order = {e["data"]["order_id"]: e["data"] for e in earned}
    assert len(earned) == 2
    assert (by_order[promoting]["points"], Decimal(by_order[promoting]["tier_multiplier"])) == (
        250000,
        Decimal("1"),
    )
    assert by_order[promoting]["tier"] is None
    assert (by_order[next_order]["points"], by_order[next_order]["tier"]) == (150, "Gold")
    assert Decimal(by_order[next_order]["tier_multiplier"]) == Decimal("1.5")


async def test_in_a_backlog_each_change_applies_from_its_own_promoting_order(tiers: ServiceProcess) -> None:
    """Orders consumed late (an outage, a lag): each change still applies from its promoting order's
    payment, so orders paid between two promotions earn at the tier they were paid in."""
    member = unique("M")
    paid_at = datetime.now(UTC) - timedelta(hours=3)
    to_silver = paid(member, unique("O"), "60000.00", time=paid_at)
    to_gold = paid(member, unique("O"), "150000.00", time=paid_at + timedelta(hours=1))
    await publish_and_wait(tiers, to_silver, to_gold)

    changes = await tier_changes(tiers, member)
    assert moves(changes) == [(None, "Silver", "up", "qualified"), ("Silver", "Gold", "up", "qualified")]
    assert at(changes[0]["data"]["effective_at"]) == to_silver.time
    # Gold applies to orders paid after the order that reached it, not from when it was processed
    assert at(changes[1]["data"]["effective_at"]) == to_gold.time
    assert at(changes[1]["data"]["figures"]["effective_at"]) == to_gold.time


# --- 3. demotion only at evaluation, after grace, one step ----------------------------------------


async def test_a_refund_below_gold_demotes_one_tier_only_after_evaluation_and_grace(
    platform: Platform,
) -> None:
    tiers, points = platform.tiers, platform.points
    member, order = unique("M"), unique("O")
    await publish_and_wait(tiers, paid(member, order, "250000.00"))
    await publish_and_wait(tiers, refunded(member, order, unique("R"), "240000.00"))

    # Refunds never demote by themselves, nor does an evaluation before the evaluation point.
    assert without_as_of(await evaluate(tiers)) == ZERO_SUMMARY
    view = await tier(tiers, member)
    assert (view["tier"], view["earned_tier"], view["status"]) == ("Gold", "Gold", "at-risk")
    assert view["qualifying_spend"] == "10000.00"
    assert (view["keep"]["tier"], view["keep"]["met"]) == ("Gold", False)
    assert (view["keep"]["missing_spend"], view["keep"]["missing_orders"]) == ("190000.00", 59)
    assert at(view["keep"]["deadline"]) == NEXT_EVALUATION == at(view["next_evaluation_at"])
    assert view["grace_until"] is None

    # At the evaluation point: below Gold, so grace until 1 January + 30 days.
    await set_clock(tiers, NEXT_EVALUATION + timedelta(hours=1))
    assert without_as_of(await evaluate(tiers)) == summary(members=1, evaluations=1, grace_started=1)
    view = await tier(tiers, member)
    assert (view["tier"], view["earned_tier"], view["status"]) == ("Gold", "Gold", "in-grace")
    assert at(view["grace_until"]) == GRACE_END
    assert at(view["keep"]["deadline"]) == GRACE_END
    assert at(view["keep"]["counted_from"]) == LAST_EVALUATION_WINDOW_START
    assert at(view["next_evaluation_at"]) == datetime(NOW.year + 2, 1, 1, tzinfo=UTC)
    assert moves(await tier_changes(tiers, member)) == [(None, "Gold", "up", "qualified")]

    # Grace over, the shortfall not made up: one step down (Silver), although the figures
    # (10000.00) qualify for Standard only.
    await set_clock(tiers, GRACE_END + timedelta(hours=1))
    assert without_as_of(await evaluate(tiers)) == summary(members=1, demoted=1)
    view = await tier(tiers, member)
    assert (view["tier"], view["earned_tier"], view["grace_until"]) == ("Silver", "Silver", None)
    assert view["benefits"]["points_multiplier"] == "1.25"
    decided = view["decided_by"]
    assert (decided["reason"], decided["from_tier"], decided["outcome"]) == (
        "evaluated",
        "Gold",
        "grace ended below the tier",
    )
    assert view["explanation"].startswith(f"Silver since {GRACE_END.date().isoformat()} (at evaluation: ")
    changes = await tier_changes(tiers, member)
    assert moves(changes) == [(None, "Gold", "up", "qualified"), ("Gold", "Silver", "down", "evaluated")]
    demotion = changes[1]["data"]
    assert demotion["points_multiplier"] == "1.25"
    assert at(demotion["effective_at"]) == GRACE_END
    assert demotion["figures"]["qualifying_spend"] == "10000.00"
    assert demotion["figures"]["rule"] == GOLD_RULE
    assert demotion["figures"]["demoted_to"] == "Silver"
    assert at(demotion["figures"]["window_start"]) == LAST_EVALUATION_WINDOW_START
    assert at(demotion["figures"]["window_end"]) == GRACE_END
    entries = await history(tiers, member)
    assert len(entries) == 2 and at(entries[1]["at"]) == GRACE_END

    # Idempotent: nothing is due any more.
    assert without_as_of(await evaluate(tiers)) == ZERO_SUMMARY
    assert len(await history(tiers, member)) == 2
    assert len(await tier_changes(tiers, member)) == 2

    async def points_tier_is_silver() -> bool:
        balance = await points.balance(member)
        return bool((balance["tier"], balance["tier_multiplier"]) == ("Silver", "1.25"))

    await eventually(points_tier_is_silver, what="points projected Silver")
    # An order earns at the tier in force when it was paid: Silver from the end of grace on.
    before_demotion, after_demotion = unique("O"), unique("O")
    await publish(
        points.infra,
        points.prefix + "orders",
        [
            paid(member, before_demotion, "100.00"),
            paid(member, after_demotion, "100.00", time=GRACE_END + timedelta(hours=2)),
        ],
    )
    await eventually(
        lambda: points_orders_are(points, member, 3), what="both orders earned in points", timeout=30
    )
    assert await points_orders(points, member) == {
        order: (250000, Decimal("1")),
        before_demotion: (150, Decimal("1.5")),
        after_demotion: (125, Decimal("1.25")),
    }


# --- 4. re-qualifying in grace ---------------------------------------------------------------------


async def test_requalifying_in_grace_keeps_the_tier(tiers: ServiceProcess) -> None:
    member, order = unique("M"), unique("O")
    await publish_and_wait(
        tiers, paid(member, order, "250000.00"), refunded(member, order, unique("R"), "100000.00")
    )
    await set_clock(tiers, NEXT_EVALUATION + timedelta(hours=1))
    assert without_as_of(await evaluate(tiers)) == summary(members=1, evaluations=1, grace_started=1)
    view = await tier(tiers, member)
    assert (view["status"], view["keep"]["missing_spend"]) == ("in-grace", "50000.00")

    # 150000 since the evaluated window began, plus 49999.99: still short, grace goes on
    in_grace = NEXT_EVALUATION + timedelta(days=5)
    await publish_and_wait(tiers, paid(member, unique("O"), "49999.99", time=in_grace))
    view = await tier(tiers, member)
    assert (view["status"], view["keep"]["missing_spend"]) == ("in-grace", "0.01")
    assert at(view["grace_until"]) == GRACE_END
    # ... and 0.01 more makes 200000.00 again: grace cleared
    await publish_and_wait(tiers, paid(member, unique("O"), "0.01", time=in_grace + timedelta(days=1)))
    view = await tier(tiers, member)
    assert (view["tier"], view["earned_tier"], view["grace_until"]) == ("Gold", "Gold", None)
    assert view["status"] != "in-grace"
    assert at(view["next_evaluation_at"]) == datetime(NOW.year + 2, 1, 1, tzinfo=UTC)

    await set_clock(tiers, GRACE_END + timedelta(hours=1))
    assert without_as_of(await evaluate(tiers)) == ZERO_SUMMARY
    assert (await tier(tiers, member))["tier"] == "Gold"
    assert moves(await tier_changes(tiers, member)) == [(None, "Gold", "up", "qualified")]


# --- 5. replay from offset 0 -----------------------------------------------------------------------


SNAPSHOT_QUERIES = {
    "members": "SELECT * FROM members ORDER BY member_id",
    "history": "SELECT * FROM tier_history ORDER BY id",
    "orders": "SELECT * FROM qualifying_orders ORDER BY order_id",
    "refunds": "SELECT * FROM qualifying_refunds ORDER BY order_id, refund_id",
    "inbox": 'SELECT consumer, event_id, topic, partition, "offset" FROM inbox ORDER BY event_id',
    "outbox": "SELECT id, event_id FROM outbox ORDER BY id",
}


async def snapshot(service: ServiceProcess) -> dict[str, list[dict[str, Any]]]:
    conn = await service.db()
    try:
        return {name: [dict(r) for r in await conn.fetch(sql)] for name, sql in SNAPSHOT_QUERIES.items()}
    finally:
        await conn.close()


async def test_replaying_orders_from_offset_zero_changes_nothing(tiers: ServiceProcess) -> None:
    gold, silver, small = unique("M"), unique("M"), unique("M")
    o1, o2, o3 = unique("O"), unique("O"), unique("O")
    events = [
        paid(gold, o1, "60000.00"),
        paid(gold, o2, "150000.00"),
        refunded(gold, o2, "R1", "50000.00"),
        paid(silver, o3, "70000.00"),
        cancelled(silver, o3, "70000.00"),
        paid(silver, unique("O"), "55000.00"),
        paid(small, unique("O"), "100.00", lines=[line("gift-cards", 1, "100.00")]),
    ]
    await publish_and_wait(tiers, *events)
    before = await snapshot(tiers)
    changes_before = await tier_changes(tiers)
    assert sorted(moves(changes_before), key=str) == sorted(
        [
            (None, "Silver", "up", "qualified"),
            ("Silver", "Gold", "up", "qualified"),
            (None, "Silver", "up", "qualified"),
            (None, "Standard", "up", "qualified"),
        ],
        key=str,
    )
    assert len(before["inbox"]) == len(events) and len(before["history"]) == 4

    await tiers.stop()
    await rewind_group(tiers.infra, tiers.prefix + "loyalty-tiers", tiers.prefix + "orders")
    await tiers.start()

    async def all_seen_again() -> bool:
        return await metric(tiers, "loyalty_events_consumed_total", outcome="duplicate") >= len(events)

    await eventually(all_seen_again, what="every order event replayed as a duplicate")
    assert await metric(tiers, "loyalty_events_consumed_total", outcome="processed") == 0
    assert await snapshot(tiers) == before
    assert sorted(await tier_changes(tiers), key=by_id) == sorted(changes_before, key=by_id)


# --- 6. kit guarantees for the tiers consumer -----------------------------------------------------


async def test_killed_between_db_commit_and_offset_commit_counts_spend_once(
    service_factory: ServiceProcessFactory,
) -> None:
    tiers = await service_factory("tiers", start=False)
    members = [unique("M") for _ in range(3)]
    events = [paid(m, unique("O"), "60000.00") for m in members for _ in range(4)]
    await publish(tiers.infra, tiers.prefix + "orders", events)

    await tiers.start(wait_ready=False, LOYALTY_FAILPOINTS="consumer.after_db_commit")
    assert await tiers.wait_exit() == -9, "the failpoint should SIGKILL the service"
    committed_before = int(await tiers.scalar("SELECT count(*) FROM inbox"))
    assert committed_before > 0, "the killed process had committed a batch to the database"

    await tiers.start()
    await eventually(lambda: consumed(tiers, *events), what="every order processed after the restart")
    assert await metric(tiers, "loyalty_events_consumed_total", outcome="duplicate") >= committed_before
    for member in members:
        assert await qualifying_total(tiers, member) == Decimal("240000")
        assert await tiers.scalar("SELECT count(*) FROM qualifying_orders WHERE member_id = $1", member) == 4
        view = await tier(tiers, member)
        assert (view["tier"], view["qualifying_spend"], view["qualifying_orders"]) == ("Gold", "240000.00", 4)
        # (the relay publishes at least once: a re-publish would carry the same event id)
        assert moves(distinct(await tier_changes(tiers, member))) == [
            (None, "Silver", "up", "qualified"),
            ("Silver", "Gold", "up", "qualified"),
        ]
        assert await tiers.scalar("SELECT count(*) FROM tier_history WHERE member_id = $1", member) == 2
    assert len(distinct(await tier_changes(tiers))) == 6
    assert await tiers.scalar("SELECT count(*) FROM outbox") == 6


async def test_poison_order_events_are_dead_lettered_and_the_consumer_keeps_going(
    tiers: ServiceProcess,
) -> None:
    member, someone_else = unique("M"), unique("M")
    good_before = paid(member, unique("O"), "100.00")
    paid_order = good_before.data["order_id"]
    bad_schema = json.loads(paid(member, unique("O"), "1.00").to_bytes())
    bad_schema["data"]["amount"] = 12.5  # a JSON number: money must be a decimal string
    in_usd = order_paid(member, unique("O"), "500.00", currency="USD")
    orphan_refund = refunded(member, unique("O"), "R1", "5.00")
    orphan_cancel = cancelled(member, unique("O"), "5.00")
    refund_in_usd = new_event(
        "order.refunded",
        "urn:test:shop",
        member,
        OrderRefunded(
            order_id=paid_order,
            member_id=member,
            currency="USD",
            amount="5.00",  # type: ignore[arg-type]
            refund_id="R-usd",
        ),
    )
    not_theirs = refunded(someone_else, paid_order, "R-other", "5.00")
    too_much = refunded(member, paid_order, "R-big", "100.01")  # more than the 100.00 paid
    good_after = paid(member, unique("O"), "200.00")
    poison = [orphan_refund, orphan_cancel, refund_in_usd, not_theirs, too_much]
    await publish(
        tiers.infra,
        tiers.prefix + "orders",
        [
            good_before,
            (member, json.dumps(bad_schema).encode()),
            # on the member's partition (key), so the offsets follow this order
            in_usd,
            *[(member, event.to_bytes()) for event in poison],
            good_after,
        ],
    )
    await eventually(lambda: consumed(tiers, good_before, in_usd, good_after), what="good orders processed")
    letters = await eventually(lambda: dead_letters(tiers, 6), what="six dead letters")
    assert len(letters) == 6
    by_offset = sorted(letters, key=lambda d: d.original_offset)
    errors = [d.error for d in by_offset]
    assert "amount" in errors[0] and "decimal string" in errors[0] and by_offset[0].attempts == 0
    assert errors[1:] == [
        f"InvalidOrderEvent: order {orphan_refund.data['order_id']} was never paid here (no order.paid seen)",
        f"InvalidOrderEvent: order {orphan_cancel.data['order_id']} was never paid here (no order.paid seen)",
        f"InvalidOrderEvent: order {paid_order} was paid in EUR, not USD",
        f"InvalidOrderEvent: order {paid_order} belongs to member {member}, not {someone_else}",
        f"InvalidOrderEvent: refund exceeds amount paid: refund R-big of 100.01 would bring the "
        f"refunded total of order {paid_order} to 100.01, more than the 100.00 EUR paid",
    ]
    assert [d.attempts for d in by_offset[1:]] == [1, 1, 1, 1, 1]  # permanent: no retries
    assert by_offset[0].value == json.dumps(bad_schema).encode()  # the original bytes
    assert [d.value for d in by_offset[1:]] == [event.to_bytes() for event in poison]
    assert all(d.original_topic == tiers.prefix + "orders" for d in letters)

    # An order in another currency than the ladder's is valid: it is kept, counting nothing.
    view = await tier(tiers, member)
    assert (view["qualifying_spend"], view["qualifying_orders"]) == ("300.00", 2)
    assert (
        await tiers.scalar(
            "SELECT qualifying FROM qualifying_orders WHERE order_id = $1", in_usd.data["order_id"]
        )
        == 0
    )
    assert await tiers.scalar("SELECT count(*) FROM qualifying_refunds WHERE order_id = $1", paid_order) == 0
    assert await tiers.scalar("SELECT count(*) FROM members WHERE member_id = $1", someone_else) == 0
    # and it keeps going afterwards
    later = paid(member, unique("O"), "0.50")
    await publish_and_wait(tiers, later)
    assert (await tier(tiers, member))["qualifying_spend"] == "300.50"


async def test_crash_before_outbox_publish_still_publishes_the_tier_change(
    service_factory: ServiceProcessFactory,
) -> None:
    tiers = await service_factory("tiers", start=False)
    member = unique("M")
    await publish(tiers.infra, tiers.prefix + "orders", [paid(member, unique("O"), "250000.00")])

    await tiers.start(wait_ready=False, LOYALTY_FAILPOINTS="relay.before_publish")
    assert await tiers.wait_exit() == -9
    assert await tiers.scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 1
    assert await tiers.scalar("SELECT count(*) FROM tier_history WHERE member_id = $1", member) == 1
    assert await read_to_end(tiers.infra, tiers.prefix + "loyalty.tiers") == []

    await tiers.start()
    changes = await tier_changes(tiers, member)
    assert moves(changes) == [(None, "Gold", "up", "qualified")]
    assert changes[0]["id"] == await tiers.scalar(
        "SELECT event_id FROM tier_history WHERE member_id = $1", member
    )


# --- 7. what refunds and cancels take away ---------------------------------------------------------


async def test_cancels_and_refunds_reduce_qualifying_spend_exactly(tiers: ServiceProcess) -> None:
    member = unique("M")
    mixed, plain, to_cancel, gift_only = unique("O"), unique("O"), unique("O"), unique("O")
    mixed_lines = [line("electronics", 1, "800.00"), line("gift-cards", 1, "200.00")]
    await publish_and_wait(
        tiers,
        paid(member, mixed, "1000.00", lines=mixed_lines),  # qualifies 800.00: gift cards excluded
        paid(member, plain, "500.00"),  # no lines: qualifies whole
        paid(member, to_cancel, "300.00"),
        paid(member, gift_only, "400.00", lines=[line("gift-cards", 2, "200.00")]),  # qualifies 0
    )
    view = await tier(tiers, member)
    assert (view["qualifying_spend"], view["qualifying_orders"]) == ("1600.00", 3)

    gift_refund = refund_with_lines(member, mixed, "R-gift", "200.00", [line("gift-cards", 1, "200.00")])
    electronics_refund = refund_with_lines(
        member, mixed, "R-elec", "100.00", [line("electronics", 1, "100.00")]
    )
    electronics_again = refund_with_lines(
        member, mixed, "R-elec", "100.00", [line("electronics", 1, "100.00")]
    )  # the same refund id under a new event id: counted once
    await publish_and_wait(tiers, gift_refund, electronics_refund, electronics_again)
    assert (await tier(tiers, member))["qualifying_spend"] == "1500.00"

    await publish_and_wait(
        tiers,
        refunded(member, plain, "R-plain", "50.00"),  # 50 × 500/500
        refunded(member, mixed, "R-share", "100.00"),  # no lines: the order's share, 100 × 800/1000
        cancelled(member, to_cancel, "300.00"),
        cancelled(member, to_cancel, "300.00"),  # a second cancel changes nothing
    )
    view = await tier(tiers, member)
    assert (view["qualifying_spend"], view["qualifying_orders"]) == ("1070.00", 2)
    assert (view["next_tier"]["tier"], view["next_tier"]["missing_spend"]) == ("Silver", "48930.00")
    assert view["next_tier"]["missing_orders"] == 22

    conn = await tiers.db()
    try:
        refunds = {
            r["refund_id"]: r["qualifying"]
            for r in await conn.fetch(
                "SELECT refund_id, qualifying FROM qualifying_refunds WHERE order_id = ANY($1::text[])",
                [mixed, plain],
            )
        }
        orders = {
            r["order_id"]: (r["qualifying"], r["refunded"], r["cancelled_at"] is not None)
            for r in await conn.fetch(
                "SELECT order_id, qualifying, refunded, cancelled_at FROM qualifying_orders "
                "WHERE member_id = $1",
                member,
            )
        }
    finally:
        await conn.close()
    assert refunds == {
        "R-gift": Decimal("0"),
        "R-elec": Decimal("100"),
        "R-share": Decimal("80"),
        "R-plain": Decimal("50"),
    }
    assert orders == {
        mixed: (Decimal("800"), Decimal("180"), False),
        plain: (Decimal("500"), Decimal("50"), False),
        to_cancel: (Decimal("300"), Decimal("0"), True),
        gift_only: (Decimal("0"), Decimal("0"), False),
    }
    # refunds and cancels never change the tier by themselves: Standard since the first order
    assert moves(await tier_changes(tiers, member)) == [(None, "Standard", "up", "qualified")]
