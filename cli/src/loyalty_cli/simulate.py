"""``loyalty simulate``: publish realistic key-account order events to the ``orders`` topic.

``generate_orders`` is pure (no IO) and seeded, so the benchmark and the tests reuse it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from loyalty_shared.envelope import CloudEvent, new_event
from loyalty_shared.events import (
    ORDERS_TOPIC,
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderRefunded,
    schema_uri,
)

CURRENCY = "EUR"
DEFAULT_SOURCE = "loyalty-simulate"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

# category: (sku prefix, lowest unit price in cents, highest unit price in cents, max quantity)
CATEGORIES: dict[str, tuple[str, int, int, int]] = {
    "electronics": ("EL", 4_900, 249_900, 5),
    "office-supplies": ("OF", 150, 8_900, 40),
    "industrial": ("IN", 1_500, 180_000, 10),
    "services": ("SV", 12_000, 480_000, 3),
    "gift-cards": ("GC", 2_500, 50_000, 4),
}
CATEGORY_WEIGHTS = (25, 30, 20, 10, 15)
GIFT_CARD_CENTS = (2_500, 5_000, 10_000, 25_000, 50_000)
CHANNELS = ("web", "sales-rep", "edi", "marketplace")
CHANNEL_WEIGHTS = (50, 25, 15, 10)
# The top tenth of members by purchase weight are key accounts: they buy four times as often and
# in bulk (each line's quantity times 1 to KEY_ACCOUNT_QUANTITY). Against the tiers service's default
# ladder (Silver 50,000 EUR or 24 orders, Gold 200,000 EUR or 60 orders, Platinum 1,000,000 EUR, in
# 12 months, gift cards excluded) a default run (DEFAULT_MEMBERS, DEFAULT_ORDERS) ends with about
# 37 Standard, 5 Silver, 3 Gold and 1 to 3 Platinum members (seeds 0-9): every key account reaches
# Gold or Platinum, a few other members Silver. An order averages about 6,300 EUR, a key account's
# about 19,000 EUR.
KEY_ACCOUNT_SHARE = 0.10
KEY_ACCOUNT_QUANTITY = 5
DEFAULT_MEMBERS = 50
DEFAULT_ORDERS = 500


@dataclass
class _Member:
    member_id: str
    weight: float
    key_account: bool = False


@dataclass
class _Order:
    order_id: str
    member_id: str
    lines: list[OrderLine]
    channel: str
    at: float  # seconds after the first event
    refunded: dict[int, int] = field(default_factory=dict)  # line index -> quantity refunded

    @property
    def amount(self) -> Decimal:
        return _line_sum(self.lines)


def _line_sum(lines: list[OrderLine]) -> Decimal:
    return sum((line.quantity * line.unit_price for line in lines), Decimal("0.00"))


def _cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)  # always exactly two places: 150 -> 1.50


def _token(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{rng.getrandbits(40):010X}"


def _event_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _members(rng: random.Random, count: int) -> list[_Member]:
    members = [_Member(f"M-{i:04d}", rng.lognormvariate(0, 0.8)) for i in range(1, count + 1)]
    cutoff = sorted((m.weight for m in members), reverse=True)[max(0, int(count * KEY_ACCOUNT_SHARE) - 1)]
    for member in members:
        member.key_account = member.weight >= cutoff
    return members


def _line(rng: random.Random, key_account: bool) -> OrderLine:
    category = rng.choices(list(CATEGORIES), weights=CATEGORY_WEIGHTS)[0]
    prefix, low, high, max_quantity = CATEGORIES[category]
    if category == "gift-cards":
        cents = rng.choice(GIFT_CARD_CENTS)
    else:
        cents = round(rng.triangular(low, high, low + (high - low) / 8))
    quantity = rng.randint(1, max_quantity)
    if key_account:
        quantity *= rng.randint(1, KEY_ACCOUNT_QUANTITY)
    sku = f"{prefix}-{rng.randint(1, 400):04d}"
    return OrderLine(sku=sku, category=category, quantity=quantity, unit_price=_cents(cents))


def _order(rng: random.Random, member: _Member, at: float) -> _Order:
    lines = [_line(rng, member.key_account) for _ in range(rng.randint(1, 5))]
    channel = rng.choices(CHANNELS, weights=CHANNEL_WEIGHTS)[0]
    return _Order(_token(rng, "SO"), member.member_id, lines, channel, at)


@dataclass
class _Planned:
    at: float
    seq: int
    type: str
    member_id: str
    data: OrderPaid | OrderRefunded | OrderCancelled


def _paid(order: _Order) -> OrderPaid:
    return OrderPaid(
        order_id=order.order_id,
        member_id=order.member_id,
        currency=CURRENCY,
        amount=order.amount,
        lines=order.lines,
        channel=order.channel,
    )


def _cancelled(order: _Order) -> OrderCancelled:
    return OrderCancelled(
        order_id=order.order_id,
        member_id=order.member_id,
        currency=CURRENCY,
        amount=order.amount,
        lines=order.lines,
        channel=order.channel,
    )


def _refund(rng: random.Random, order: _Order, lines: list[OrderLine]) -> OrderRefunded:
    return OrderRefunded(
        order_id=order.order_id,
        member_id=order.member_id,
        currency=CURRENCY,
        amount=_line_sum(lines),
        lines=lines,
        channel=order.channel,
        refund_id=_token(rng, "RF"),
    )


def _full_refund_lines(order: _Order) -> list[OrderLine]:
    """Everything not refunded yet."""
    lines = []
    for index, line in enumerate(order.lines):
        left = line.quantity - order.refunded.get(index, 0)
        if left > 0:
            lines.append(line.model_copy(update={"quantity": left}))
            order.refunded[index] = line.quantity
    return lines


def _partial_refund_lines(rng: random.Random, order: _Order) -> list[OrderLine]:
    """Some units of one line that still has units left (a returned item)."""
    open_lines = [i for i, line in enumerate(order.lines) if line.quantity > order.refunded.get(i, 0)]
    if not open_lines:
        return []
    index = rng.choice(open_lines)
    already = order.refunded.get(index, 0)
    left = order.lines[index].quantity - already
    quantity = rng.randint(1, max(1, left // 2))
    order.refunded[index] = already + quantity
    return [order.lines[index].model_copy(update={"quantity": quantity})]


def _aftermath(
    rng: random.Random, order: _Order, refund_rate: float, cancel_rate: float
) -> list[tuple[float, str, OrderRefunded | OrderCancelled]]:
    """What happens to a paid order later: nothing, a cancel, or one to three refunds."""
    roll = rng.random()
    if roll < cancel_rate:
        return [(order.at + rng.uniform(60, 6 * 3600), "order.cancelled", _cancelled(order))]
    if roll >= cancel_rate + refund_rate:
        return []
    events: list[tuple[float, str, OrderRefunded | OrderCancelled]] = []
    at = order.at
    partials = 0 if rng.random() < 0.35 else rng.randint(1, 3)
    for _ in range(partials):
        lines = _partial_refund_lines(rng, order)
        if not lines:
            break
        at += rng.uniform(3600, 5 * 86400)
        events.append((at, "order.refunded", _refund(rng, order, lines)))
    if partials == 0:
        at += rng.uniform(3600, 5 * 86400)
        events.append((at, "order.refunded", _refund(rng, order, _full_refund_lines(order))))
    return events


def _plan(
    rng: random.Random, members: int, orders: int, refund_rate: float, cancel_rate: float
) -> list[_Planned]:
    people = _members(rng, members)
    weights = [m.weight * (4 if m.key_account else 1) for m in people]
    planned: list[_Planned] = []
    at = 0.0
    for _ in range(orders):
        at += rng.expovariate(1 / 30)  # an order every 30 s on average
        member = rng.choices(people, weights=weights)[0]
        order = _order(rng, member, at)
        planned.append(_Planned(at, len(planned), "order.paid", member.member_id, _paid(order)))
        for when, kind, data in _aftermath(rng, order, refund_rate, cancel_rate):
            planned.append(_Planned(when, len(planned), kind, member.member_id, data))
    planned.sort(key=lambda p: (p.at, p.seq))
    return planned


def generate_orders(
    *,
    members: int,
    orders: int,
    seed: int,
    refund_rate: float = 0.15,
    cancel_rate: float = 0.05,
    start: datetime | None = None,
    source: str = DEFAULT_SOURCE,
) -> list[tuple[str, CloudEvent]]:
    """Order events for ``orders`` paid orders among ``members`` members, in publish order.

    Everything (ids, amounts, order of events) follows from ``seed``; event times start at
    ``start`` (default: chosen so that the last event happens now), so pass ``start`` too for
    byte-identical output. Each refund and cancel comes after its own ``order.paid``; refunds of
    an order never add up to more than was paid; a cancelled order is not refunded.
    """
    if members < 1 or orders < 0:
        raise ValueError("need members >= 1 and orders >= 0")
    if not (0 <= refund_rate <= 1 and 0 <= cancel_rate <= 1 and refund_rate + cancel_rate <= 1):
        raise ValueError("refund_rate and cancel_rate must be in [0, 1] and add up to at most 1")
    rng = random.Random(seed)
    planned = _plan(rng, members, orders, refund_rate, cancel_rate)
    if start is None:
        last = planned[-1].at if planned else 0.0
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=last)
    result: list[tuple[str, CloudEvent]] = []
    for item in planned:
        event = new_event(
            item.type,
            source,
            item.member_id,
            item.data,
            id=_event_id(rng),
            time=start + timedelta(seconds=round(item.at, 3)),
            dataschema=schema_uri(item.type),
        )
        result.append((item.member_id, event))
    return result


# --- the command --------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="publish realistic order events to the orders topic",
        description="Publish seeded, realistic key-account order events (paid, refunded, "
        "cancelled) to the 'orders' topic, keyed by member id.",
    )
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("LOYALTY_KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP),
        help="Kafka bootstrap servers (default: $LOYALTY_KAFKA_BOOTSTRAP_SERVERS or %(default)s)",
    )
    parser.add_argument("--members", type=_positive_int, default=DEFAULT_MEMBERS, help="default: %(default)s")
    parser.add_argument(
        "--orders", type=_non_negative_int, default=DEFAULT_ORDERS, help="default: %(default)s"
    )
    parser.add_argument(
        "--rate", type=float, default=100.0, help="orders per second, 0 = as fast as possible"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed (default: a new one each run). The same seed gives the same event ids, "
        "which the services deduplicate: re-running a seed changes nothing.",
    )
    parser.add_argument(
        "--idempotence",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("LOYALTY_KAFKA_ENABLE_IDEMPOTENCE"),
        help="idempotent producer (default: off unless LOYALTY_KAFKA_ENABLE_IDEMPOTENCE=true; "
        "tansu rejects it)",
    )
    parser.add_argument("--api", help="points service URL, e.g. http://127.0.0.1:8001")
    parser.add_argument("--api-key", help="API key (crm scope) for --api and --tiers-api")
    parser.add_argument("--tiers-api", help="tiers service URL, e.g. http://127.0.0.1:8002")
    parser.add_argument("--tiers-api-key", help="API key (crm scope) for --tiers-api (default: --api-key)")
    parser.add_argument(
        "--show",
        type=_positive_int,
        default=5,
        help="members to show with --api/--tiers-api (default: 5)",
    )
    parser.set_defaults(func=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def run(args: argparse.Namespace) -> int:
    if args.rate < 0:
        print("--rate must be 0 or more", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    events = generate_orders(members=args.members, orders=args.orders, seed=seed)
    print(f"seed {seed}: {len(events)} events for {args.orders} orders, {args.members} members")
    try:
        asyncio.run(publish(events, args.bootstrap, args.rate, args.idempotence))
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_counts(events)
    members = busiest_members(events, args.show)
    if args.api:
        show("balances", "points", args.api, args.api_key, members, _balance)
    if args.tiers_api:
        show("tiers", "tiers", args.tiers_api, args.tiers_api_key or args.api_key, members, _tier)
    return 0


class PublishError(RuntimeError):
    pass


class Progress:
    """A plain-text progress bar on stderr, redrawn with \\r at most ten times a second."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()
        self._drawn = 0.0
        self._live = sys.stderr.isatty()

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (not self._live or now - self._drawn < 0.1):
            return
        self._drawn = now
        width = 30
        filled = width * done // self.total if self.total else width
        rate = done / max(now - self.started, 1e-6)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r[{bar}] {done}/{self.total} events  {rate:,.0f}/s ")
        sys.stderr.flush()

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        sys.stderr.write("\n")


async def publish(
    events: list[tuple[str, CloudEvent]], bootstrap: str, rate: float, idempotence: bool
) -> None:
    """Publish to ``orders`` (key = member id), pacing ``order.paid`` events at ``rate`` per s."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=idempotence,
        client_id="loyalty-simulate",
        linger_ms=5,
    )
    try:
        await producer.start()
    except (KafkaError, OSError) as exc:
        await producer.stop()
        hint = " (tansu rejects the idempotent producer: use --no-idempotence)" if idempotence else ""
        raise PublishError(f"cannot connect to Kafka at {bootstrap}: {exc!r}{hint}") from exc
    try:
        await _send_all(producer, events, rate)
    except KafkaError as exc:
        raise PublishError(f"publishing failed: {exc!r}") from exc
    finally:
        await producer.stop()


async def _send_all(producer: Any, events: list[tuple[str, CloudEvent]], rate: float) -> None:
    progress = Progress(len(events))
    pending: list[asyncio.Future[Any]] = []
    paid = 0
    started = time.monotonic()
    for done, (member_id, event) in enumerate(events):
        if rate > 0 and event.type == "order.paid":
            delay = started + paid / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            paid += 1
        pending.append(await producer.send(ORDERS_TOPIC, event.to_bytes(), member_id.encode()))
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending.clear()
        progress.update(done + 1)
    await asyncio.gather(*pending)
    progress.finish(len(events))


def print_counts(events: list[tuple[str, CloudEvent]]) -> None:
    counts = Counter(event.type for _, event in events)
    for kind in ("order.paid", "order.refunded", "order.cancelled"):
        print(f"  {kind:<16} {counts.get(kind, 0):>7}")
    print(f"  {'total':<16} {len(events):>7}  published to '{ORDERS_TOPIC}'")


def busiest_members(events: list[tuple[str, CloudEvent]], count: int) -> list[str]:
    paid = Counter(member for member, event in events if event.type == "order.paid")
    return [member for member, _ in paid.most_common(count)]


def show(what: str, service: str, api: str, api_key: str | None, members: list[str], line: Any) -> None:
    """Print ``line(client, member)`` for a few members; a service not up is not an error."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    print(f"{what} from {api} (the services may still be working through the events):")
    try:
        with httpx.Client(base_url=api.rstrip("/"), headers=headers, timeout=5) as client:
            for member in members:
                print(f"  {member:<8} {line(client, member)}")
    except httpx.TransportError as exc:
        print(f"  {service} service not reachable at {api} ({exc!r}); is `loyalty dev` running?")


def _balance(client: Any, member: str) -> str:
    response = client.get(f"/v1/members/{member}/points")
    if response.status_code == 200:
        body = response.json()
        return f"available {body.get('available')}  pending {body.get('pending')}"
    if response.status_code == 404:
        return "no account yet (its events may not be processed yet)"
    return _problem(response)


def _problem(response: Any) -> str:
    if response.status_code in (401, 403):
        return f"HTTP {response.status_code}: the API key was refused (use the crm key)"
    return f"HTTP {response.status_code}: {response.text[:200]}"


def _money(text: object) -> str:
    try:
        return f"{Decimal(str(text)):,.2f}"
    except ArithmeticError:
        return str(text)


def _tier(client: Any, member: str) -> str:
    response = client.get(f"/v1/members/{member}/tier")
    if response.status_code != 200:
        return _problem(response)
    body = response.json()
    if not body.get("known", True):
        return f"{body.get('tier')} (no order counted yet: its events may not be processed yet)"
    currency = body.get("currency", "")
    text = (
        f"{body.get('tier'):<10} qualifying {_money(body.get('qualifying_spend')):>14} {currency}, "
        f"{body.get('qualifying_orders')} orders"
    )
    following = body.get("next_tier")
    if following:
        gaps = []
        if following.get("missing_spend") is not None:
            gaps.append(f"{_money(following['missing_spend'])} {currency}")
        if following.get("missing_orders") is not None:
            gaps.append(f"{following['missing_orders']} orders")
        joiner = " or " if following.get("requires") == "any" else " and "
        if gaps:
            text += f"  (next: {following['tier']} with {joiner.join(gaps)} more)"
    return text
