"""The order generator behind ``loyalty simulate`` and the benchmark."""

from __future__ import annotations

import argparse
import io
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from loyalty_cli import simulate
from loyalty_cli.dev import LocalPlatform
from loyalty_cli.main import build_parser
from loyalty_cli.simulate import (
    DEFAULT_MEMBERS,
    DEFAULT_ORDERS,
    SOURCES,
    LiveView,
    NoPlatform,
    Reading,
    Settle,
    Source,
    generate_orders,
    reading,
    render_table,
    resolve,
)
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


# --- where simulate publishes and what it shows ---------------------------------------------------

LOCAL = LocalPlatform(
    bootstrap="127.0.0.1:19092",
    idempotence=False,
    services={"points": "http://127.0.0.1:18001", "tiers": "http://127.0.0.1:18002", "feedback": "http://x"},
    keys={"crm": "local-crm", "ecommerce": "local-shop", "partner": "local-partner"},
)
HOME = Path("/home/someone/.local/share/loyalty")


def options(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["simulate", *argv])


def feeds(target: simulate.Target) -> list[tuple[str, str, str | None]]:
    return [(feed.source.service, feed.url, feed.key) for feed in target.feeds]


def test_no_flags_take_everything_from_the_running_dev() -> None:
    target = resolve(options(), LOCAL, HOME, environ={"LOYALTY_KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092"})
    assert (target.bootstrap, target.idempotence, target.topic) == ("127.0.0.1:19092", False, "orders")
    assert feeds(target) == [
        ("points", "http://127.0.0.1:18001", "local-crm"),
        ("tiers", "http://127.0.0.1:18002", "local-crm"),
    ]  # a service simulate has no columns for (feedback) is not shown
    assert target.platform_dir == HOME
    assert str(HOME) in target.describe()


def test_each_flag_wins_over_the_running_dev() -> None:
    argv = ["--bootstrap", "kafka:9092", "--idempotence", "--api", "http://p", "--tiers-api", "http://t"]
    target = resolve(options(*argv, "--api-key", "k", "--tiers-api-key", "tk"), LOCAL, HOME, environ={})
    assert (target.bootstrap, target.idempotence) == ("kafka:9092", True)
    assert feeds(target) == [("points", "http://p", "k"), ("tiers", "http://t", "tk")]
    assert target.platform_dir is None  # nothing came from it

    some = resolve(options("--api-key", "k", "--tiers-api", "http://t"), LOCAL, HOME, environ={})
    assert some.bootstrap == LOCAL.bootstrap
    assert feeds(some) == [("points", "http://127.0.0.1:18001", "k"), ("tiers", "http://t", "k")]
    assert (
        resolve(options("--no-idempotence"), replace_idempotence(True), HOME, environ={}).idempotence is False
    )
    assert resolve(options(), replace_idempotence(True), HOME, environ={}).idempotence is True


def replace_idempotence(value: bool) -> LocalPlatform:
    return LocalPlatform(LOCAL.bootstrap, value, LOCAL.services, LOCAL.keys)


def test_no_dev_and_no_flags_say_how_to_start_one() -> None:
    for argv in ([], ["--api", "http://p", "--api-key", "k"]):
        with pytest.raises(NoPlatform) as raised:
            resolve(options(*argv), None, Path("/tmp/elsewhere"), environ={})
        hint = str(raised.value)
        assert "./loyalty dev --data-dir /tmp/elsewhere" in hint
        for flag in ("--bootstrap", "--api", "--tiers-api", "--api-key", "--no-idempotence"):
            assert f"{flag} " in hint, flag


def test_an_explicit_broker_without_a_dev_just_publishes() -> None:
    target = resolve(options("--bootstrap", "kafka:9092"), None, HOME, environ={})
    assert (target.bootstrap, target.idempotence, target.feeds) == ("kafka:9092", False, ())
    env = {"LOYALTY_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "LOYALTY_KAFKA_ENABLE_IDEMPOTENCE": "true"}
    from_env = resolve(options("--tiers-api", "http://t"), None, HOME, environ=env)
    assert (from_env.bootstrap, from_env.idempotence) == ("kafka:9092", True)
    assert feeds(from_env) == [("tiers", "http://t", None)]
    assert resolve(options("--topic-prefix", "t1."), LOCAL, HOME, environ={}).topic == "t1.orders"


FEEDBACK = Source(
    "feedback",
    "feedback",
    "--feedback-api",
    None,
    "/v1/members/{member}/feedback",
    (("feedback", ">"),),
    lambda body: (str(body["open"]),),
    lambda body: True,
)


def test_a_new_service_is_one_more_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulate, "SOURCES", (*SOURCES, FEEDBACK))
    platform = LocalPlatform(LOCAL.bootstrap, False, {**LOCAL.services, "feedback": "http://f"}, LOCAL.keys)
    target = resolve(options(), platform, HOME, environ={})
    assert [feed.source.service for feed in target.feeds] == ["points", "tiers", "feedback"]
    table = render_table(
        ["M-0001"], [FEEDBACK], {("feedback", "M-0001"): reading(FEEDBACK, 200, {"open": 3})}
    )
    assert table == ["member  feedback", "M-0001         3"]


# --- the table ----------------------------------------------------------------------------------

POINTS, TIERS = SOURCES
POINTS_BODY = {
    "member_id": "M-0001",
    "available": 1_234_567,
    "pending": 1_050,
    "debt": 0,
    "lifetime_earned": 1,
}
GOLD = {
    "member_id": "M-0001",
    "known": True,
    "tier": "Gold",
    "currency": "EUR",
    "qualifying_spend": "250000.40",
    "qualifying_orders": 31,
    "next_tier": {
        "tier": "Platinum",
        "requires": "any",
        "missing_spend": "749999.60",
        "missing_orders": None,
    },
}
STANDARD = {
    **GOLD,
    "tier": "Standard",
    "qualifying_spend": "20087.85",
    "qualifying_orders": 3,
    "next_tier": {"tier": "Silver", "requires": "any", "missing_spend": "29912.15", "missing_orders": 21},
}


def test_the_table_from_the_services_bodies() -> None:
    snapshot = {
        ("points", "M-0001"): reading(POINTS, 200, POINTS_BODY),
        ("tiers", "M-0001"): reading(TIERS, 200, GOLD),
        ("points", "M-0002"): reading(POINTS, 200, {**POINTS_BODY, "available": 9_050, "pending": 0}),
        ("tiers", "M-0002"): reading(TIERS, 200, STANDARD),
    }
    assert render_table(["M-0001", "M-0002"], SOURCES, snapshot) == [
        "member  available  pending  tier            spend  orders  next tier: missing",
        "M-0001  1,234,567    1,050  Gold      250,000 EUR      31  Platinum: 750,000 EUR",
        "M-0002      9,050        0  Standard   20,087 EUR       3  Silver: 29,913 EUR or 21 orders",
    ]  # spend rounded down, what is missing rounded up


def test_next_tier_gap_says_and_for_all_and_dash_at_the_top() -> None:
    both = {**STANDARD, "next_tier": {**STANDARD["next_tier"], "requires": "all"}}
    assert reading(TIERS, 200, both).cells == (
        "Standard",
        "20,087 EUR",
        "3",
        "Silver: 29,913 EUR and 21 orders",
    )
    top = {**GOLD, "tier": "Platinum", "next_tier": None}
    assert reading(TIERS, 200, top).cells == ("Platinum", "250,000 EUR", "31", "-")


def test_members_not_seen_yet_errors_and_services_down_are_shown_not_raised() -> None:
    unknown_tier = {**STANDARD, "known": False, "qualifying_spend": "0.00", "qualifying_orders": 0}
    empty_balance = {"member_id": "M-0002", "available": 0, "pending": 0, "debt": 0, "lifetime_earned": 0}
    assert reading(TIERS, 200, unknown_tier).pending
    assert reading(POINTS, 200, empty_balance).pending
    assert reading(POINTS, 404, {"title": "not found"}).pending
    down = Reading(None, "not reachable at http://127.0.0.1:18002 (ConnectError)")
    snapshot = {
        ("points", "M-0001"): reading(POINTS, 401, {"title": "unauthorized"}),
        ("points", "M-0002"): reading(POINTS, 200, empty_balance),
        ("tiers", "M-0001"): down,
        ("tiers", "M-0002"): down,
    }
    lines = render_table(["M-0001", "M-0002"], SOURCES, snapshot)
    assert lines[1].split() == ["M-0001", "-", "-", "-", "-", "-", "-"]
    assert lines[2].split() == ["M-0002", "…", "…", "-", "-", "-", "-"]
    assert lines[3:] == [
        "  points (M-0001): HTTP 401: the API key was refused (use the crm key)",
        f"  points (M-0002): {simulate.NOTHING_YET}",
        "  tiers (M-0001, M-0002): not reachable at http://127.0.0.1:18002 (ConnectError)",
    ]
    assert reading(TIERS, 500, "Internal Server Error").note == "HTTP 500: Internal Server Error"
    assert not reading(TIERS, 500, "Internal Server Error").pending


# --- settling -----------------------------------------------------------------------------------


def snap(available: int, *, pending: bool = False) -> simulate.Snapshot:
    return {("points", "M-0001"): Reading(None, pending=True) if pending else Reading((str(available), "0"))}


def test_settled_once_nothing_changed_for_a_while_after_publishing() -> None:
    settle = Settle(quiet=3, unseen_quiet=10)
    assert not settle.observe(snap(1), 0, publishing=True)
    assert not settle.observe(snap(1), 5, publishing=True)  # never while publishing
    assert not settle.observe(snap(1), 6, publishing=False)
    assert not settle.observe(snap(1), 7.5, publishing=False)
    assert not settle.observe(snap(2), 8, publishing=False)  # moved: start again
    assert not settle.observe(snap(2), 10.9, publishing=False)
    assert settle.observe(snap(2), 11, publishing=False)
    assert settle.quiet_for(11) == 3


def test_a_member_not_seen_yet_holds_settling_longer() -> None:
    settle = Settle(quiet=3, unseen_quiet=10)
    settle.observe(snap(0, pending=True), 0, publishing=True)
    assert not settle.observe(snap(0, pending=True), 9, publishing=False)
    assert settle.observe(snap(0, pending=True), 10, publishing=False)


# --- the live view ------------------------------------------------------------------------------


def test_on_a_terminal_the_table_is_redrawn_in_place() -> None:
    out = io.StringIO()
    view = LiveView(out, live=True)
    view.show(["status", "table"], 0)
    view.show(["status 2", "table 2"], 0.5)
    view.say("counts")
    view.final(["final"])
    up = "\x1b[2A\r\x1b[J"
    assert out.getvalue() == (
        "status\ntable\n" + up + "status 2\ntable 2\n" + up + "counts\nstatus 2\ntable 2\n" + up + "final\n"
    )


def test_in_a_log_the_table_is_printed_every_few_seconds_without_escapes() -> None:
    out = io.StringIO()
    view = LiveView(out, every=5, live=False)
    for now in (0, 1, 4.9, 5, 6):
        view.show([f"at {now}"], now)
    view.say("counts")
    view.final(["final"])
    assert out.getvalue() == "at 0\nat 5\ncounts\nfinal\n"
