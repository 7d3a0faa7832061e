"""Business rules that arrive as events: refunds and cancels, and the tier multiplier projection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from harness import PointsService, cancelled, consumed, eventually, paid, publish, refunded, unique

from loyalty_shared.envelope import new_event
from loyalty_shared.events import TierChanged


async def available(points: PointsService, member: str) -> int:
    return int((await points.balance(member))["available"])


async def test_partial_refunds_then_full_refund_reverse_exactly_what_was_earned(
    points: PointsService,
) -> None:
    member, order = unique("M"), unique("O")
    events = [
        paid(member, order, "99.99"),  # 99 points
        refunded(member, order, "R1", "33.33"),  # floor(99 × 33.33 / 99.99) = 33
        refunded(member, order, "R1", "33.33"),  # the same refund again, under a new event id: once
        refunded(member, order, "R2", "33.33"),  # total 66.66 → 66
        refunded(member, order, "R3", "33.33"),  # total 99.99 → 99: exactly what was earned
    ]
    await publish(points.infra, points.prefix + "orders", events)
    await eventually(lambda: _reversed_is(points, order, 99), what="all refunds applied")
    assert await available(points, member) == 0
    ledger = await points.scalar(
        "SELECT array_agg(points ORDER BY id) FROM ledger_entries WHERE member_id = $1", member
    )
    assert list(ledger) == [99, -33, -33, -33]
    await points.assert_ledger_consistent()


async def test_cancel_reverses_what_refunds_left(points: PointsService) -> None:
    member, order = unique("M"), unique("O")
    events = [
        paid(member, order, "200.00"),
        refunded(member, order, "R1", "50.00"),
        cancelled(member, order, "200.00"),
        cancelled(member, order, "200.00"),  # a second cancel changes nothing
        paid(member, unique("O"), "10.00"),
    ]
    await publish(points.infra, points.prefix + "orders", events)
    await eventually(lambda: _available_is(points, member, 10), what="cancel applied, next order earned")
    assert await points.scalar("SELECT points_reversed FROM orders WHERE order_id = $1", order) == 200
    await points.assert_ledger_consistent()


async def test_tier_change_applies_to_orders_processed_after_it(points: PointsService) -> None:
    member = unique("M")
    now = datetime.now(UTC)
    gold = TierChanged(
        member_id=member,
        from_tier="Silver",
        to_tier="Gold",
        direction="up",
        reason="qualified",
        points_multiplier="1.5",
        figures={"qualifying_spend": "200000.00"},
    )
    stale = gold.model_copy(update={"to_tier": "Silver", "points_multiplier": "1.25", "direction": "down"})
    first = paid(member, unique("O"), "100.00", time=now - timedelta(days=2))  # before both changes
    await publish(points.infra, points.prefix + "orders", [first])
    await eventually(lambda: _available_is(points, member, 100), what="earned at 1x before any tier")
    await publish(
        points.infra,
        points.prefix + "loyalty.tiers",
        [
            new_event("tier.changed", "urn:loyalty:tiers", member, gold, time=now),
            # an older change arriving late must not undo the newer one
            new_event("tier.changed", "urn:loyalty:tiers", member, stale, time=now - timedelta(days=1)),
        ],
    )
    await eventually(lambda: _tier_is(points, member, "Gold"), what="tier projected")
    await publish(points.infra, points.prefix + "orders", [paid(member, unique("O"), "100.00")])
    await eventually(lambda: _available_is(points, member, 250), what="second order earned at 1.5x")
    balance = await points.balance(member)
    assert balance["tier"] == "Gold"


async def test_an_order_earns_at_the_tier_in_force_when_it_was_paid_whatever_arrives_first(
    points: PointsService,
) -> None:
    """tiers says a promotion applies after the promoting order's payment: an order paid up to then
    earns at the old tier even when points sees the promotion first (a backlog, one mixed batch)."""
    member = unique("M")
    promoted_at = datetime.now(UTC) - timedelta(minutes=10)
    gold = TierChanged(
        member_id=member,
        from_tier="Standard",
        to_tier="Gold",
        direction="up",
        reason="qualified",
        points_multiplier="1.5",
        effective_at=promoted_at,
    )
    await publish(
        points.infra,
        points.prefix + "loyalty.tiers",
        [new_event("tier.changed", "urn:loyalty:tiers", member, gold)],
    )
    await eventually(lambda: _tier_is(points, member, "Gold"), what="tier projected")
    before, at, after = unique("O"), unique("O"), unique("O")
    await publish(
        points.infra,
        points.prefix + "orders",
        [
            paid(member, before, "100.00", time=promoted_at - timedelta(days=3)),
            paid(member, at, "100.00", time=promoted_at),  # the promoting order itself
            paid(member, after, "100.00", time=promoted_at + timedelta(seconds=1)),
        ],
    )
    await eventually(lambda: _available_is(points, member, 350), what="100 + 100 at 1x, 150 at 1.5x")
    rows = await points.scalar(
        "SELECT array_agg(points_earned::text || '@' || tier_multiplier::text ORDER BY points_earned) "
        "FROM orders WHERE member_id = $1",
        member,
    )
    assert list(rows) == ["100@1.0000", "100@1.0000", "150@1.5000"]


async def test_a_tier_change_arriving_after_the_orders_it_covers_re_rates_them(
    points: PointsService,
) -> None:
    """tiers was behind (down, or its events delayed): points earned orders paid after a promotion
    at the old tier, one of them partly refunded, one cancelled. When the promotion arrives, each
    is re-rated at the tier of its payment, its reversal recomputed, and the difference credited
    with a ledger entry and points.adjusted; a later demotion that covers one takes it back."""
    member = unique("M")
    promoted_at = datetime.now(UTC) - timedelta(hours=2)
    before, later, refunded_one, cancelled_one = (unique("O") for _ in range(4))
    await publish(
        points.infra,
        points.prefix + "orders",
        [
            paid(member, before, "100.00", time=promoted_at - timedelta(days=1)),  # stays at 1x
            paid(member, later, "100.00", time=promoted_at + timedelta(minutes=1)),
            paid(member, refunded_one, "99.99", time=promoted_at + timedelta(minutes=2)),
            refunded(member, refunded_one, "R1", "33.33"),  # floor(99 × 33.33 / 99.99) = 33 back
            paid(member, cancelled_one, "50.00", time=promoted_at + timedelta(minutes=3)),
            cancelled(member, cancelled_one, "50.00"),
        ],
    )
    await eventually(lambda: _available_is(points, member, 100 + 100 + 66), what="earned at 1x")
    gold = TierChanged(
        member_id=member,
        from_tier="Standard",
        to_tier="Gold",
        direction="up",
        reason="qualified",
        points_multiplier="1.5",
        effective_at=promoted_at,
    )
    up = new_event("tier.changed", "urn:loyalty:tiers", member, gold)
    await publish(points.infra, points.prefix + "loyalty.tiers", [up])
    # later: 150; refunded: floor(99.99 × 1.5) = 149 earned, floor(149 × 33.33 / 99.99) = 49 back
    await eventually(lambda: _available_is(points, member, 100 + 150 + 100), what="re-rated at Gold")
    rows = await points.fetch(
        "SELECT order_id, points_earned, points_reversed, tier_multiplier::text AS m FROM orders "
        "WHERE member_id = $1",
        member,
    )
    state = {r["order_id"]: (r["points_earned"], r["points_reversed"], r["m"]) for r in rows}
    assert state == {
        before: (100, 0, "1.0000"),
        later: (150, 0, "1.5000"),
        refunded_one: (149, 49, "1.5000"),
        cancelled_one: (75, 75, "1.5000"),
    }
    corrections = await points.fetch(
        "SELECT order_id, entry_type, points FROM ledger_entries WHERE event_id = $1 ORDER BY id", up.id
    )
    assert [(r["order_id"], r["entry_type"], r["points"]) for r in corrections] == [
        (later, "earn", 50),
        (refunded_one, "earn", 34),  # (149 - 49) - (99 - 33)
    ]
    # a demotion back to Standard from the moment of the refunded order's payment: it is re-rated
    # down (and its reversal with it), the later order keeps Gold
    down = TierChanged(
        member_id=member,
        from_tier="Gold",
        to_tier="Standard",
        direction="down",
        reason="override-ended",
        points_multiplier="1",
        effective_at=promoted_at + timedelta(minutes=1, seconds=30),
    )
    await publish(
        points.infra,
        points.prefix + "loyalty.tiers",
        [new_event("tier.changed", "urn:loyalty:tiers", member, down)],
    )
    await eventually(lambda: _available_is(points, member, 100 + 150 + 66), what="re-rated down")
    await points.assert_ledger_consistent()
    # the promotion delivered again (the inbox drops it), then the demotion again under a new id
    # (same topic and key: consumed after it; re-rates nothing, every order is at its tier)
    redelivered = new_event("tier.changed", "urn:loyalty:tiers", member, gold, id=up.id)
    again = new_event("tier.changed", "urn:loyalty:tiers", member, down)
    await publish(points.infra, points.prefix + "loyalty.tiers", [redelivered, again])
    await eventually(lambda: consumed(points, again), what="the repeated demotion consumed")
    assert await available(points, member) == 100 + 150 + 66
    await points.assert_ledger_consistent()


async def _reversed_is(points: PointsService, order: str, n: int) -> bool:
    return await points.scalar("SELECT points_reversed FROM orders WHERE order_id = $1", order) == n


async def _available_is(points: PointsService, member: str, n: int) -> bool:
    return await available(points, member) == n


async def _tier_is(points: PointsService, member: str, tier: str) -> bool:
    return await points.scalar("SELECT tier FROM accounts WHERE member_id = $1", member) == tier
