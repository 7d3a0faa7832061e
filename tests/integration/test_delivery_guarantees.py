"""DESIGN.md guarantees 1-3 for the points consumer, against the real broker and database.

1. Effectively once: duplicates, replay from offset 0, SIGKILL between DB commit and offset commit.
2. Nothing lost on the way out: SIGKILL between commit and outbox publish, and after publish before
   the outbox row is marked.
3. Bad input is quarantined: bad JSON, bad schema, unknown type, handlers that raise → dead letters,
   and the consumer keeps going; dead letters can be listed and replayed.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from harness import (
    Infra,
    PointsService,
    cancelled,
    consumed,
    eventually,
    paid,
    publish,
    read_topic,
    refunded,
    rewind_group,
    unique,
)

from loyalty_shared.envelope import new_event
from loyalty_shared.messaging.deadletters import read_dead_letters, replay


async def earned(points: PointsService, member: str) -> int:
    return int((await points.balance(member))["available"])


async def count(points: PointsService, sql: str, *args: Any) -> int:
    return int(await points.scalar(sql, *args))


async def metric(points: PointsService, name: str, **labels: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{points.url}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_duplicate_delivery_changes_state_once(points: PointsService) -> None:
    member, order = unique("M"), unique("O")
    event = paid(member, order, "250.00")
    same_order_new_id = paid(member, order, "250.00")
    await publish(points.infra, points.prefix + "orders", [event, event, same_order_new_id, event])
    marker = paid(member, unique("O"), "1.00")
    await publish(points.infra, points.prefix + "orders", [marker])

    # The marker is on the same partition (same member), after every copy: once it is in the inbox,
    # every copy before it has been handled.
    await eventually(lambda: consumed(points, event, same_order_new_id, marker), what="all copies handled")
    assert await earned(points, member) == 251
    assert await count(points, "SELECT count(*) FROM ledger_entries WHERE member_id = $1", member) == 2
    assert await metric(points, "loyalty_events_consumed_total", outcome="duplicate") >= 2
    await points.assert_ledger_consistent()


async def test_replay_from_offset_zero_changes_nothing(points: PointsService) -> None:
    member, order = unique("M"), unique("O")
    events = [
        paid(member, order, "300.00"),
        refunded(member, order, "R1", "100.00"),
        paid(member, unique("O"), "50.00"),
        cancelled(member, order, "300.00"),
    ]
    await publish(points.infra, points.prefix + "orders", events)
    await eventually(
        lambda: count(points, "SELECT count(*) FROM inbox"), what="all four processed", timeout=30
    )
    await eventually(lambda: _inbox_is(points, 4), what="all four in the inbox")
    before = await _state(points, member)
    assert before["available"] == 50

    await points.stop()
    await rewind_group(points.infra, points.prefix + "loyalty-points", points.prefix + "orders")
    await points.start()
    await eventually(
        lambda: metric(points, "loyalty_events_consumed_total", outcome="duplicate"),
        what="the replayed events were seen again",
    )
    await eventually(lambda: _duplicates_are(points, 4), what="all four replayed as duplicates")
    assert await _state(points, member) == before
    await points.assert_ledger_consistent()


async def test_consumer_killed_between_db_commit_and_offset_commit(points_factory: Any) -> None:
    points: PointsService = await points_factory(start=False)
    members = [unique("M") for _ in range(5)]
    events = [paid(m, unique("O"), "100.00") for m in members for _ in range(4)]
    await publish(points.infra, points.prefix + "orders", events)

    await points.start(wait_ready=False, LOYALTY_FAILPOINTS="consumer.after_db_commit")
    assert await points.wait_exit() == -9, "the failpoint should SIGKILL the service"
    committed_before = await count(points, "SELECT count(*) FROM inbox")
    assert committed_before > 0, "the killed process had committed a batch to the database"

    await points.start()
    await eventually(lambda: _inbox_is(points, len(events)), what="every event processed after restart")
    assert await metric(points, "loyalty_events_consumed_total", outcome="duplicate") >= committed_before
    for member in members:
        assert await earned(points, member) == 400
    await points.assert_ledger_consistent()


async def test_crash_between_commit_and_outbox_publish_delays_but_never_drops(points_factory: Any) -> None:
    points: PointsService = await points_factory(start=False)
    member = unique("M")
    await publish(points.infra, points.prefix + "orders", [paid(member, unique("O"), "10.00")])

    await points.start(wait_ready=False, LOYALTY_FAILPOINTS="relay.before_publish")
    assert await points.wait_exit() == -9
    assert await count(points, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 1
    assert await read_topic(points.infra, points.prefix + "loyalty.points", expect=1, timeout=3) == []

    await points.start()
    await eventually(lambda: _outbox_drained(points), what="the relay published after the restart")
    records = await read_topic(points.infra, points.prefix + "loyalty.points", expect=1)
    assert [json.loads(r.value)["type"] for r in records] == ["points.earned"]


async def test_crash_after_publish_before_marking_republishes_same_event(points_factory: Any) -> None:
    points: PointsService = await points_factory(start=False)
    member = unique("M")
    await publish(points.infra, points.prefix + "orders", [paid(member, unique("O"), "10.00")])

    await points.start(wait_ready=False, LOYALTY_FAILPOINTS="relay.after_publish")
    assert await points.wait_exit() == -9
    await points.start()
    await eventually(lambda: _outbox_drained(points), what="outbox row marked published after restart")
    records = await read_topic(points.infra, points.prefix + "loyalty.points", expect=2)
    ids = {json.loads(r.value)["id"] for r in records}
    assert len(records) == 2 and len(ids) == 1, "at least once: the same event (same id) again"


async def test_poison_events_are_dead_lettered_and_the_consumer_keeps_going(points: PointsService) -> None:
    infra = points.infra
    member = unique("M")
    good_before = paid(member, unique("O"), "10.00")
    bad_schema = json.loads(paid(member, unique("O"), "1.00").to_bytes())
    bad_schema["data"]["amount"] = 12.5  # a JSON number: money must be a decimal string
    unknown = new_event("order.shipped", "urn:test:shop", member, {"order_id": "x"})
    orphan_refund = refunded(member, unique("O"), "R1", "5.00")  # the handler raises: no such order
    overflow = paid(member, unique("O"), "99999999999999.0000")  # the handler raises: points overflow
    good_after = paid(member, unique("O"), "20.00")
    await publish(
        infra,
        points.prefix + "orders",
        [
            good_before,
            (member, b"{not json"),
            (member, json.dumps(bad_schema).encode()),
            unknown,
            orphan_refund,
            overflow,
            good_after,
        ],
    )

    assert await eventually(lambda: _available_is(points, member, 30), what="good events processed")
    letters = await eventually(
        lambda: _dead_letters(infra, points.prefix + "loyalty-points", 5), what="five dead letters"
    )
    by_offset = sorted(letters, key=lambda d: d.original_offset)
    errors = [d.error for d in by_offset]
    assert "not JSON" in errors[0]
    assert "amount" in errors[1] and "decimal string" in errors[1]
    assert "unknown event type 'order.shipped'" in errors[2]
    assert "never paid" in errors[3] and by_offset[3].attempts == 1  # permanent: no retries
    assert by_offset[4].attempts == 3  # transient-looking failure: retried, then quarantined
    assert by_offset[0].value == b"{not json"  # the original bytes, untouched
    assert all(d.original_topic == points.prefix + "orders" for d in letters)
    await points.assert_ledger_consistent()
    # the good events around the poison ones published their points.earned (nothing lost with them)
    earned_events = await read_topic(infra, points.prefix + "loyalty.points", expect=2)
    assert sorted(json.loads(r.value)["data"]["order_id"] for r in earned_events) == sorted(
        [good_before.data["order_id"], good_after.data["order_id"]]
    )


async def test_dead_letters_can_be_replayed_once_the_cause_is_fixed(points: PointsService) -> None:
    infra = points.infra
    member, order = unique("M"), unique("O")
    refund = refunded(member, order, "R1", "50.00")
    await publish(infra, points.prefix + "orders", [refund])  # arrives before its order: quarantined
    letters = await eventually(
        lambda: _dead_letters(infra, points.prefix + "loyalty-points", 1), what="refund dead-lettered"
    )
    await publish(infra, points.prefix + "orders", [paid(member, order, "100.00")])
    await eventually(lambda: _available_is(points, member, 100), what="order paid")

    producer = infra.producer()
    await producer.start()
    try:
        assert await replay(producer, letters) == 1
        await eventually(lambda: _available_is(points, member, 50), what="replayed refund applied")
        await replay(producer, letters)  # a second replay is harmless: the inbox has the event id
    finally:
        await producer.stop()
    marker = paid(member, unique("O"), "1.00")  # after the second replay on the member's partition
    await publish(infra, points.prefix + "orders", [marker])
    await eventually(lambda: consumed(points, marker), what="the second replay handled")
    assert await earned(points, member) == 50 + 1  # the refund once, and the marker's point
    await points.assert_ledger_consistent()


async def test_rebalances_lose_and_double_nothing(points: PointsService) -> None:
    """A second replica joins mid-stream, then the first leaves: every order is counted once."""
    second = PointsService(points.infra, points.database, points.prefix, points.log_dir)
    members = [unique("M") for _ in range(6)]
    waves = [[paid(m, unique("O"), "10.00") for m in members] for _ in range(6)]
    try:
        await publish(points.infra, points.prefix + "orders", [e for wave in waves[:2] for e in wave])
        await second.start(wait_ready=False)
        await publish(points.infra, points.prefix + "orders", [e for wave in waves[2:4] for e in wave])
        await second.wait_ready()
        await points.stop()  # SIGTERM: its partitions move to the second replica
        await publish(points.infra, points.prefix + "orders", [e for wave in waves[4:] for e in wave])
        total = sum(len(wave) for wave in waves)
        await eventually(lambda: _inbox_is(second, total), what="every order processed", timeout=60)
        for member in members:
            assert await earned(second, member) == 60
        await second.assert_ledger_consistent()
    finally:
        second.kill()


async def test_sigterm_stops_cleanly(points: PointsService) -> None:
    # uvicorn shuts the app down gracefully, then re-raises the signal so supervisors see it.
    assert await points.stop() in (0, -15)
    log = points.log()
    assert "points service stopping" in log and "Application shutdown complete" in log


# --- helpers ------------------------------------------------------------------------------------


async def _inbox_is(points: PointsService, n: int) -> bool:
    return await count(points, "SELECT count(*) FROM inbox") == n


async def _duplicates_are(points: PointsService, n: int) -> bool:
    return await metric(points, "loyalty_events_consumed_total", outcome="duplicate") >= n


async def _outbox_drained(points: PointsService) -> bool:
    return await count(points, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def _available_is(points: PointsService, member: str, value: int) -> bool:
    try:
        return await earned(points, member) == value
    except AssertionError:
        return False


async def _dead_letters(infra: Infra, consumer: str, n: int) -> list[Any] | None:
    letters = await read_dead_letters({"bootstrap_servers": infra.bootstrap}, consumer)
    return letters if len(letters) >= n else None


async def _state(points: PointsService, member: str) -> dict[str, Any]:
    balance = await points.balance(member)
    ledger = await count(points, "SELECT count(*) FROM ledger_entries WHERE member_id = $1", member)
    outbox = await count(points, "SELECT count(*) FROM outbox")
    return {
        "available": balance["available"],
        "pending": balance["pending"],
        "ledger": ledger,
        "outbox": outbox,
    }
