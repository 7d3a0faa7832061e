"""The checks of `loyalty chaos` are pure: a consistent state passes, and a doctored one (an earning
doubled, a refund reversed by one point too many, an outbox event missing from its topic) is
reported, each as what it is."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from loyalty_cli.chaos import (
    Mismatch,
    Observed,
    PointsState,
    Record,
    RewardsState,
    TiersState,
    check,
    figures,
)
from loyalty_shared.envelope import CloudEvent, new_event
from loyalty_shared.events import (
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderRefunded,
    PointsEarned,
    PointsReversed,
    TierChanged,
)
from points_service.domain import DEFAULT_RULES
from tiers_service.domain import DEFAULT_LADDER

MEMBER = "M-0001"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=1)


def line(category: str, quantity: int, price: str) -> OrderLine:
    return OrderLine(sku="SK-1", category=category, quantity=quantity, unit_price=Decimal(price))


def order_event(data: OrderPaid | OrderRefunded | OrderCancelled, minutes: int) -> CloudEvent:
    return new_event(data.event_type, "test", MEMBER, data, time=T0 + timedelta(minutes=minutes))


def emitted(data: PointsEarned | PointsReversed | TierChanged) -> CloudEvent:
    return new_event(data.event_type, "urn:loyalty:test", MEMBER, data, time=NOW)


def records(topic: str, events: list[CloudEvent]) -> list[Record]:
    return [Record(topic, 0, offset, event) for offset, event in enumerate(events)]


def outbox(events: list[CloudEvent], topic: str) -> list[dict[str, Any]]:
    return [
        {"event_id": e.id, "topic": topic, "event_type": e.type, "event": e, "published": True}
        for e in events
    ]


def consistent() -> Observed:
    """One member: order A (100.00, 100 points), order B (50.00, 50 points) refunded 25.00 (25 points
    back), order C (30.00, 30 points) cancelled; tiers put the member on Standard at A's payment."""
    a = OrderPaid(
        order_id="A",
        member_id=MEMBER,
        currency="EUR",
        amount=Decimal("100.00"),
        lines=[line("electronics", 1, "100.00")],
    )
    b_lines = [line("office-supplies", 2, "25.00")]
    b = OrderPaid(order_id="B", member_id=MEMBER, currency="EUR", amount=Decimal("50.00"), lines=b_lines)
    c = OrderPaid(
        order_id="C",
        member_id=MEMBER,
        currency="EUR",
        amount=Decimal("30.00"),
        lines=[line("industrial", 1, "30.00")],
    )
    refund = OrderRefunded(
        order_id="B",
        member_id=MEMBER,
        currency="EUR",
        amount=Decimal("25.00"),
        lines=[line("office-supplies", 1, "25.00")],
        refund_id="R1",
    )
    cancel = OrderCancelled(
        order_id="C", member_id=MEMBER, currency="EUR", amount=Decimal("30.00"), lines=c.lines
    )
    orders = [
        order_event(a, 0),
        order_event(b, 10),
        order_event(c, 20),
        order_event(refund, 30),
        order_event(cancel, 40),
    ]
    t1, t2, t3 = (e.time for e in orders[:3])
    later = NOW + timedelta(days=365)
    earned = [
        emitted(
            PointsEarned(
                member_id=MEMBER,
                order_id=o,
                points=p,
                rule_version=1,
                tier_multiplier="1",
                available_at=t,
                expires_at=later,
            )
        )
        for o, p, t in (("A", 100, t1), ("B", 50, t2), ("C", 30, t3))
    ]
    reversed_ = [
        emitted(
            PointsReversed(
                member_id=MEMBER, order_id="B", refund_id="R1", reason="refund", points=25, reversed_total=25
            )
        ),
        emitted(
            PointsReversed(member_id=MEMBER, order_id="C", reason="cancel", points=30, reversed_total=30)
        ),
    ]
    changed = emitted(
        TierChanged(
            member_id=MEMBER,
            to_tier="Standard",
            direction="up",
            reason="qualified",
            points_multiplier="1",
            effective_at=t1,
        )
    )
    points_events = earned + reversed_

    def paid_row(order_id: str, amount: str, points: int, at: datetime, **changes: Any) -> dict[str, Any]:
        row = {
            "order_id": order_id,
            "member_id": MEMBER,
            "amount": Decimal(amount),
            "points_earned": points,
            "refunded_total": Decimal(0),
            "points_reversed": 0,
            "cancelled": False,
            "rule_version": 1,
            "tier_multiplier": Decimal("1.0000"),
            "paid_at": at,
        }
        return row | changes

    def entry(kind: str, points: int, order_id: str, refund_id: str | None = None) -> dict[str, Any]:
        return {
            "member_id": MEMBER,
            "entry_type": kind,
            "points": points,
            "order_id": order_id,
            "refund_id": refund_id,
        }

    def qualifying(order_id: str, amount: str, at: datetime, **changes: Any) -> dict[str, Any]:
        row = {
            "order_id": order_id,
            "member_id": MEMBER,
            "currency": "EUR",
            "amount": Decimal(amount),
            "qualifying": Decimal(amount),
            "refunded": Decimal(0),
            "refunded_amount": Decimal(0),
            "paid_at": at,
            "cancelled_at": None,
        }
        return row | changes

    points = PointsState(
        rules={1: DEFAULT_RULES},
        orders=[
            paid_row("A", "100.00", 100, t1),
            paid_row("B", "50.00", 50, t2, refunded_total=Decimal("25.00"), points_reversed=25),
            paid_row("C", "30.00", 30, t3, points_reversed=30, cancelled=True),
        ],
        refunds=[{"order_id": "B", "refund_id": "R1", "amount": Decimal("25.00"), "points_reversed": 25}],
        ledger=[
            entry("earn", 100, "A"),
            entry("earn", 50, "B"),
            entry("earn", 30, "C"),
            entry("reverse", -25, "B", "R1"),
            entry("reverse", -30, "C"),
        ],
        lots=[
            {"member_id": MEMBER, "order_id": "A", "remaining": 100},
            {"member_id": MEMBER, "order_id": "B", "remaining": 25},
            {"member_id": MEMBER, "order_id": "C", "remaining": 0},
        ],
        accounts=[{"member_id": MEMBER, "debt": 0}],
        tier_periods=[
            {
                "member_id": MEMBER,
                "effective_at": t1,
                "tier": "Standard",
                "tier_multiplier": Decimal("1.0000"),
            }
        ],
        inbox=[{"consumer": "loyalty-points", "event_id": e.id} for e in [*orders, changed]],
        outbox=outbox(points_events, "loyalty.points"),
    )
    tiers = TiersState(
        ladder=DEFAULT_LADDER,
        orders=[
            qualifying("A", "100.00", t1),
            qualifying("B", "50.00", t2, refunded=Decimal("25.00"), refunded_amount=Decimal("25.00")),
            qualifying("C", "30.00", t3, cancelled_at=orders[4].time),
        ],
        refunds=[
            {"order_id": "B", "refund_id": "R1", "amount": Decimal("25.00"), "qualifying": Decimal("25.00")}
        ],
        history=[
            {
                "id": 1,
                "member_id": MEMBER,
                "at": t1,
                "from_tier": None,
                "to_tier": "Standard",
                "event_id": changed.id,
            }
        ],
        inbox=[{"consumer": "loyalty-tiers", "event_id": e.id} for e in orders],
        outbox=outbox([changed], "loyalty.tiers"),
    )
    rewards = RewardsState(
        orders=[
            {"order_id": "A", "amount": Decimal("100.0000"), "refunded": Decimal(0), "cancelled_at": None},
            {
                "order_id": "B",
                "amount": Decimal("50.0000"),
                "refunded": Decimal("25.0000"),
                "cancelled_at": None,
            },
            {"order_id": "C", "amount": Decimal("30.0000"), "refunded": Decimal(0), "cancelled_at": NOW},
        ],
        inbox=[{"consumer": "loyalty-rewards", "event_id": e.id} for e in [*orders, changed]],
    )
    return Observed(
        published=orders,
        orders_topic=records("orders", orders),
        points_topic=records("loyalty.points", points_events),
        tiers_topic=records("loyalty.tiers", [changed]),
        points=points,
        tiers=tiers,
        checked_at=NOW,
        rewards=rewards,
    )


def about(mismatches: list[Mismatch], kind: str, *words: str) -> list[Mismatch]:
    return [m for m in mismatches if m.kind == kind and all(w in m.what for w in words)]


def test_a_consistent_state_passes() -> None:
    assert check(consistent()) == []


def test_a_redelivery_on_a_topic_is_harmless() -> None:
    seen = consistent()
    again = [*seen.points_topic, dataclasses.replace(seen.points_topic[0], offset=99)]
    assert check(dataclasses.replace(seen, points_topic=again)) == []


def test_an_earning_applied_twice_is_reported() -> None:
    seen = consistent()
    ledger = [*seen.points.ledger, seen.points.ledger[0]]
    found = check(dataclasses.replace(seen, points=dataclasses.replace(seen.points, ledger=ledger)))
    assert about(found, "duplicated", "earning of order A"), found
    assert about(found, "mismatch", "Σ ledger 225"), found  # and the balance no longer adds up


def test_a_refund_reversed_by_one_point_too_many_is_reported() -> None:
    seen = consistent()
    # The ledger, the refund, the order and the lots all say 26 (the balance still adds up).
    ledger = [dict(e, points=-26) if e["refund_id"] == "R1" else e for e in seen.points.ledger]
    refunds = [dict(r, points_reversed=26) for r in seen.points.refunds]
    orders = [dict(o, points_reversed=26) if o["order_id"] == "B" else o for o in seen.points.orders]
    lots = [dict(lot, remaining=24) if lot["order_id"] == "B" else lot for lot in seen.points.lots]
    points = dataclasses.replace(seen.points, ledger=ledger, refunds=refunds, orders=orders, lots=lots)
    found = check(dataclasses.replace(seen, points=points))
    assert about(found, "mismatch", "refund R1 of order B", "moves -26", "gives -25"), found
    assert about(found, "mismatch", "refund R1 of order B recorded 26", "gives 25"), found
    assert not about(found, "mismatch", "Σ lots"), found
    assert figures(found)["lost"] == figures(found)["duplicated"] == 0


def test_an_outbox_event_missing_from_its_topic_is_reported() -> None:
    seen = consistent()
    missing = seen.points_topic[1].event
    topic = [r for r in seen.points_topic if r.event.id != missing.id]
    found = check(dataclasses.replace(seen, points_topic=topic))
    assert found == [
        Mismatch(
            "lost",
            f"points outbox row {missing.id} (points.earned) is marked published but is not on 'loyalty.points'",
        )
    ]


def test_an_order_event_a_service_never_consumed_is_lost() -> None:
    seen = consistent()
    inbox = seen.tiers.inbox[1:]
    found = check(dataclasses.replace(seen, tiers=dataclasses.replace(seen.tiers, inbox=inbox)))
    assert about(found, "lost", "tiers never consumed", seen.published[0].id), found


def test_an_effect_published_under_two_event_ids_is_duplicated() -> None:
    seen = consistent()
    first = seen.points_topic[0].event
    copy = first.model_copy(update={"id": "another-id"})
    outbox_rows = [*seen.points.outbox, {**seen.points.outbox[0], "event_id": copy.id, "event": copy}]
    topic = [*seen.points_topic, Record("loyalty.points", 0, 50, copy)]
    points = dataclasses.replace(seen.points, outbox=outbox_rows)
    found = check(dataclasses.replace(seen, points=points, points_topic=topic))
    assert about(found, "duplicated", "points.earned", "'A'", "2 event ids"), found


def test_an_order_earned_at_a_tier_tiers_had_not_decided_is_reported() -> None:
    seen = consistent()
    orders = [
        dict(o, tier_multiplier=Decimal("1.25"), points_earned=125) if o["order_id"] == "A" else o
        for o in seen.points.orders
    ]
    ledger = [
        dict(e, points=125) if (e["entry_type"], e["order_id"]) == ("earn", "A") else e
        for e in seen.points.ledger
    ]
    lots = [dict(lot, remaining=125) if lot["order_id"] == "A" else lot for lot in seen.points.lots]
    points = dataclasses.replace(seen.points, orders=orders, ledger=ledger, lots=lots)
    found = check(dataclasses.replace(seen, points=points))
    assert about(found, "mismatch", "order A", "multiplier 1.25", "no tier"), found


def test_tiers_qualifying_spend_off_by_a_cent_is_reported() -> None:
    seen = consistent()
    orders = [dict(o, refunded=Decimal("25.01")) if o["order_id"] == "B" else o for o in seen.tiers.orders]
    found = check(dataclasses.replace(seen, tiers=dataclasses.replace(seen.tiers, orders=orders)))
    assert about(found, "mismatch", "tiers order B"), found
    assert about(found, "mismatch", f"tiers {MEMBER}: qualifying spend"), found


def test_a_refund_rewards_counted_twice_is_reported() -> None:
    seen = consistent()
    assert seen.rewards is not None
    orders = [dict(o, refunded=Decimal("50.00")) if o["order_id"] == "B" else o for o in seen.rewards.orders]
    found = check(dataclasses.replace(seen, rewards=dataclasses.replace(seen.rewards, orders=orders)))
    assert about(found, "mismatch", "rewards order B"), found


def test_an_order_rewards_never_counted_is_lost() -> None:
    seen = consistent()
    assert seen.rewards is not None
    orders = [o for o in seen.rewards.orders if o["order_id"] != "C"]
    inbox = seen.rewards.inbox[1:]
    found = check(dataclasses.replace(seen, rewards=RewardsState(orders=orders, inbox=inbox)))
    assert about(found, "lost", "rewards never counted order C"), found
    assert about(found, "lost", "rewards never consumed", seen.published[0].id), found
