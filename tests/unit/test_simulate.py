"""The order generator behind ``loyalty simulate`` and the benchmark."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from loyalty_cli.simulate import DEFAULT_MEMBERS, DEFAULT_ORDERS, generate_orders
from loyalty_shared.envelope import CloudEvent, parse_event
from loyalty_shared.events import EVENT_TYPES, TOPICS, OrderLine, OrderPaid, OrderRefunded
from tiers_service import domain

START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
ORDER_TYPES = set(TOPICS["orders"])


def events(seed: int = 42, **kwargs: object) -> list[tuple[str, CloudEvent]]:
    options: dict[str, object] = {"members": 30, "orders": 400, "seed": seed, "start": START}
    options.update(kwargs)
    return generate_orders(**options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stream() -> list[tuple[str, CloudEvent]]:
    return events(refund_rate=0.3, cancel_rate=0.1)


def test_same_seed_same_events() -> None:
    first = [(key, event.to_bytes()) for key, event in events(seed=7)]
    second = [(key, event.to_bytes()) for key, event in events(seed=7)]
    assert first == second


def test_other_seed_other_events() -> None:
    first = {event.id for _, event in events(seed=7)}
    second = {event.id for _, event in events(seed=8)}
    assert not first & second


def test_counts_and_types(stream: list[tuple[str, CloudEvent]]) -> None:
    counts = Counter(event.type for _, event in stream)
    assert counts["order.paid"] == 400
    assert counts["order.refunded"] > 0
    assert counts["order.cancelled"] > 0
    assert set(counts) <= ORDER_TYPES


def test_no_refunds_or_cancels_when_rates_are_zero() -> None:
    stream = events(refund_rate=0, cancel_rate=0)
    assert {event.type for _, event in stream} == {"order.paid"}


def test_ids_unique_and_key_is_subject(stream: list[tuple[str, CloudEvent]]) -> None:
    assert len({event.id for _, event in stream}) == len(stream)
    for key, event in stream:
        assert key == event.subject == event.data["member_id"]
        assert key.startswith("M-") and len(key) == 6


def test_events_validate_against_shared_models(stream: list[tuple[str, CloudEvent]]) -> None:
    for _, event in stream:
        parsed = parse_event(event.to_bytes())
        assert parsed == event
        EVENT_TYPES[parsed.type].model_validate(parsed.data)


def test_refunds_and_cancels_follow_their_paid_order(
    stream: list[tuple[str, CloudEvent]],
) -> None:
    paid_by_member: dict[str, set[str]] = {}
    for member, event in stream:
        order_id = event.data["order_id"]
        if event.type == "order.paid":
            assert order_id not in paid_by_member.get(member, set())
            paid_by_member.setdefault(member, set()).add(order_id)
        else:
            assert order_id in paid_by_member.get(member, set()), event


def test_times_follow_publish_order(stream: list[tuple[str, CloudEvent]]) -> None:
    times = [event.time for _, event in stream]
    assert times == sorted(times)
    assert times[0] >= START


def test_refunds_never_exceed_what_was_paid(stream: list[tuple[str, CloudEvent]]) -> None:
    paid: dict[str, Decimal] = {}
    refunded: Counter[str] = Counter()
    refund_ids: set[str] = set()
    cancelled: set[str] = set()
    for _, event in stream:
        order_id = event.data["order_id"]
        if event.type == "order.paid":
            paid[order_id] = OrderPaid.model_validate(event.data).amount
        elif event.type == "order.refunded":
            refund = OrderRefunded.model_validate(event.data)
            assert refund.refund_id not in refund_ids
            refund_ids.add(refund.refund_id)
            assert order_id not in cancelled
            refunded[order_id] += refund.amount
            assert 0 < refunded[order_id] <= paid[order_id]
        else:
            assert order_id not in cancelled and refunded[order_id] == 0
            cancelled.add(order_id)
    assert any(refunded[o] == paid[o] for o in refunded), "some refunds are full"
    assert any(refunded[o] < paid[o] for o in refunded), "some refunds are partial"


def test_amounts_are_exact_and_equal_the_line_sum(stream: list[tuple[str, CloudEvent]]) -> None:
    for _, event in stream:
        model: Any = EVENT_TYPES[event.type].model_validate(event.data)
        amount, lines = model.amount, model.lines
        assert isinstance(amount, Decimal) and amount.as_tuple().exponent == -2
        assert 1 <= len(lines) <= 5
        for line in lines:
            assert line.unit_price.as_tuple().exponent == -2
        assert amount == sum(line.quantity * line.unit_price for line in lines)
        assert isinstance(event.data["amount"], str)


def test_lines_use_known_categories(stream: list[tuple[str, CloudEvent]]) -> None:
    categories = {line["category"] for _, event in stream for line in event.data["lines"]}
    assert {"electronics", "office-supplies", "industrial", "services", "gift-cards"} >= categories
    assert len(categories) >= 4


def test_key_accounts_buy_much_more(stream: list[tuple[str, CloudEvent]]) -> None:
    orders = Counter(member for member, event in stream if event.type == "order.paid")
    counts = sorted(orders.values(), reverse=True)
    assert counts[0] >= 5 * counts[len(counts) // 2]


def test_default_start_ends_now() -> None:
    stream = generate_orders(members=5, orders=20, seed=1)
    last = stream[-1][1].time
    assert abs((datetime.now(UTC) - last).total_seconds()) < 5


def test_source_is_used() -> None:
    stream = generate_orders(members=2, orders=3, seed=1, source="bench")
    assert {event.source for _, event in stream} == {"bench"}


def test_empty_and_invalid() -> None:
    assert generate_orders(members=3, orders=0, seed=1) == []
    with pytest.raises(ValueError):
        generate_orders(members=0, orders=1, seed=1)
    with pytest.raises(ValueError):
        generate_orders(members=1, orders=1, seed=1, refund_rate=0.8, cancel_rate=0.3)


# --- crossing tiers ------------------------------------------------------------------------------


def _non_gift_card(lines: list[OrderLine]) -> Decimal:
    return sum(
        (line.quantity * line.unit_price for line in lines if line.category != "gift-cards"), Decimal(0)
    )


def net_spend(stream: list[tuple[str, CloudEvent]]) -> tuple[dict[str, Decimal], Counter[str]]:
    """Per member: non-gift-card spend net of refunds, cancelled orders out; orders still counting."""
    orders: dict[str, tuple[str, Decimal]] = {}
    refunded: Counter[str] = Counter()
    cancelled: set[str] = set()
    for member, event in stream:
        model: Any = EVENT_TYPES[event.type].model_validate(event.data)
        if event.type == "order.paid":
            orders[model.order_id] = (member, _non_gift_card(model.lines))
        elif event.type == "order.refunded":
            refunded[model.order_id] += _non_gift_card(model.lines)
        else:
            cancelled.add(model.order_id)
    spend: dict[str, Decimal] = defaultdict(Decimal)
    counted: Counter[str] = Counter()
    for order_id, (member, amount) in orders.items():
        if order_id in cancelled:
            continue
        spend[member] += amount - refunded[order_id]
        counted[member] += amount - refunded[order_id] > 0
    return spend, counted


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_default_run_has_members_past_50000_and_200000_eur(seed: int) -> None:
    """With `loyalty simulate`'s defaults some members cross the default ladder's Silver and Gold
    spend thresholds (non-gift-card spend net of refunds and cancels), and most do not."""
    spend, _ = net_spend(generate_orders(members=DEFAULT_MEMBERS, orders=DEFAULT_ORDERS, seed=seed))
    amounts = sorted(spend.values(), reverse=True)
    assert sum(a >= 50_000 for a in amounts) >= 4
    assert sum(a >= 200_000 for a in amounts) >= 2
    assert sum(a < 50_000 for a in amounts) >= len(amounts) // 2


def test_default_runs_spread_over_the_default_ladder() -> None:
    """Run through the tiers service's own rules: Standard, Silver and Gold in every run, and key
    accounts past Platinum's 1,000,000 EUR in most."""
    ladder = domain.DEFAULT_LADDER
    now = datetime.now(UTC)
    platinum_runs = 0
    for seed in range(1, 6):
        spend, counted = net_spend(generate_orders(members=DEFAULT_MEMBERS, orders=DEFAULT_ORDERS, seed=seed))
        tiers = Counter(
            domain.qualified_tier(ladder, domain.Figures(spend[m], counted[m], now)).name for m in spend
        )
        assert {"Standard", "Silver", "Gold"} <= set(tiers), (seed, tiers)
        assert tiers["Standard"] > len(spend) // 2, (seed, tiers)
        platinum_runs += tiers["Platinum"] > 0
    assert platinum_runs >= 4
