"""One rule for invalid order events (loyalty_shared.orders and the schemas' limits): points, tiers
and rewards, consuming the same orders topic, dead-letter exactly the same events and apply the
rest."""

from __future__ import annotations

import json
from typing import Any

from conftest import Platform, ServiceProcessFactory
from harness import (
    ServiceProcess,
    cancelled,
    consumed,
    eventually,
    paid,
    publish,
    refunded,
    unique,
)

from loyalty_shared.envelope import MAX_EVENT_BYTES, CloudEvent
from loyalty_shared.events.orders import MAX_ORDER_LINES
from loyalty_shared.messaging.deadletters import DeadLetter, read_dead_letters


async def letters(service: ServiceProcess, n: int) -> list[DeadLetter] | None:
    found = await read_dead_letters(
        {"bootstrap_servers": service.infra.bootstrap}, f"{service.prefix}loyalty-{service.name}"
    )
    found = [letter for letter in found if letter.original_topic == service.prefix + "orders"]
    return found if len(found) >= n else None


async def test_every_service_dead_letters_the_same_order_events(
    platform: Platform, service_factory: ServiceProcessFactory
) -> None:
    rewards = await service_factory("rewards", prefix=platform.prefix)
    services = (platform.points, platform.tiers, rewards)
    member, other = unique("M"), unique("M")
    order = paid(member, unique("O"), "50.00")
    order_id = order.data["order_id"]
    lines = [{"sku": f"S-{i}", "category": "office", "quantity": 1, "unit_price": "1.00"} for i in range(501)]
    too_many_lines = json.loads(paid(member, unique("O"), "501.00").to_bytes())
    too_many_lines["data"]["lines"] = lines
    too_big = json.loads(paid(member, unique("O"), "5.00").to_bytes())
    too_big["padding"] = "x" * MAX_EVENT_BYTES  # a CloudEvents extension attribute
    bad: list[CloudEvent | tuple[str, bytes]] = [
        refunded(member, order_id, "R-80", "80.00"),  # more than the 50.00 paid
        refunded(member, unique("O"), "R-1", "5.00"),  # an order never paid
        (member, cancelled(other, order_id, "50.00").to_bytes()),  # another member's order (keyed
        # by the order's member, so it comes after the order.paid)
        (member, json.dumps(too_many_lines).encode()),
        (member, json.dumps(too_big).encode()),
        (member, b"{not json"),
    ]
    good = [refunded(member, order_id, "R-20", "20.00"), paid(member, unique("O"), "10.00")]
    await publish(platform.points.infra, platform.prefix + "orders", [order, *bad, *good])

    for service in services:
        await eventually(lambda s=service: consumed(s, order, *good), what=f"{service.name}: good events")
    seen: dict[str, list[tuple[int, int]]] = {}
    errors: dict[str, list[str]] = {}
    for service in services:
        found: list[DeadLetter] = await eventually(
            lambda s=service: letters(s, len(bad)), what=f"{service.name}: dead letters"
        )
        found.sort(key=lambda d: (d.original_partition, d.original_offset))
        seen[service.name] = [(d.original_partition, d.original_offset) for d in found]
        errors[service.name] = [d.error for d in found]
    assert len(seen["points"]) == len(bad)
    assert seen["points"] == seen["tiers"] == seen["rewards"], errors
    assert errors["points"] == errors["tiers"] == errors["rewards"]
    joined = "\n".join(errors["points"])
    for fragment in ("refund exceeds amount paid", "never paid", "belongs to member", "not JSON"):
        assert fragment in joined
    assert f"at most {MAX_ORDER_LINES}" in joined
    assert f"the limit is {MAX_EVENT_BYTES} bytes" in joined

    # What was valid is applied in both: 50.00 paid, 20.00 of it refunded, then 10.00.
    tier: dict[str, Any] = await platform.tiers.get(f"/v1/members/{member}/tier")
    assert (tier["qualifying_spend"], tier["qualifying_orders"]) == ("40.00", 2)
    balance: dict[str, Any] = await platform.points.balance(member)
    assert balance["lifetime_earned"] == 60 and balance["lifetime_reversed"] == 20
    net = await rewards.scalar(
        "SELECT sum(amount - refunded) FROM orders WHERE member_id = $1 AND cancelled_at IS NULL", member
    )
    assert str(net) == "40.0000"
