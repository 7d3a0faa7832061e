"""``loyalty simulate``: publish realistic key-account order events to the ``orders`` topic, and
show the busiest members' balances and tiers as the services work through them.

With no flags it finds the running ``loyalty dev`` (its ``dev-platform.json``): the broker, the
service URLs and the crm key. ``generate_orders`` is pure (no IO) and seeded, so the benchmark and
the tests reuse it; the table (``render_table``) and the settling (``Settle``) are pure too.

With the rewards service there (unless ``--no-rewards``), it first sets up a demo program set
(``loyalty_cli.demo``), shows the rewards issued and the budgets burning below the table, and once
the figures settle closes the quarter (a settable rewards clock only) to show a rebate statement.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any, TextIO

from loyalty_cli import demo, scheme
from loyalty_cli.dev import PLATFORM_FILE, LocalPlatform, default_home, read_platform
from loyalty_cli.services import SERVICES
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

POLL_S = 0.5  # how often the services are asked while watching
LOG_EVERY_S = 5.0  # how often the table is printed when stdout is not a terminal
QUIET_S = 3.0  # settled: nothing changed for this long, with every member seen by every service
UNSEEN_QUIET_S = 10.0  # ... or for this long while some service still has nothing for a member
DEFAULT_WAIT_S = 60.0
NOT_YET = "…"  # a figure the service does not have yet
NONE = "-"  # a figure there is none of (service not reachable, no next tier)
NOTHING_YET = "nothing yet (the service may not have processed the member's events yet)"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="publish realistic order events and watch balances and tiers move",
        description="Publish seeded, realistic key-account order events (paid, refunded, "
        "cancelled) to the 'orders' topic, keyed by member id, and show the busiest members' "
        "balances and tiers as the services work through them. With the rewards service, it "
        "first sets up demo programs (a quarterly volume rebate for key accounts, a threshold gift, "
        "a tier-upgrade gift, their catalog), shows the rewards issued and the budgets burning, and "
        "then closes the quarter (a settable rewards clock, as `loyalty dev` runs it) to show a "
        "rebate statement. With no flags it uses the running `loyalty dev` (its broker, its "
        "services and its crm key); each flag overrides one setting.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the data directory of the `loyalty dev` to use (default: $LOYALTY_HOME or "
        "~/.local/share/loyalty)",
    )
    parser.add_argument(
        "--bootstrap",
        help="Kafka bootstrap servers (default: the running loyalty dev's broker, else "
        "$LOYALTY_KAFKA_BOOTSTRAP_SERVERS)",
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
        default=None,
        help="idempotent producer (default: as the running loyalty dev, else off unless "
        "LOYALTY_KAFKA_ENABLE_IDEMPOTENCE=true; tansu rejects it)",
    )
    parser.add_argument(
        "--api-key", help="API key (crm scope) for every service (default: the running loyalty dev's crm key)"
    )
    for source in SOURCES:
        parser.add_argument(
            source.flag,
            dest=source.dest,
            metavar="URL",
            help=f"{source.service} service URL, e.g. {_example_url(source)} (default: the running "
            "loyalty dev's)",
        )
        if source.key_flag:
            parser.add_argument(
                source.key_flag,
                dest=source.key_dest,
                metavar="KEY",
                help=f"API key (crm scope) for {source.flag} (default: --api-key)",
            )
    parser.add_argument(
        REWARDS.flag,
        dest=REWARDS.dest,
        metavar="URL",
        help=f"rewards service URL, e.g. {_example_url(REWARDS)} (default: the running loyalty dev's)",
    )
    parser.add_argument(
        "--rewards-api-key",
        dest=REWARDS.key_dest,
        metavar="KEY",
        help=f"API key (crm scope) for {REWARDS.flag} (default: --api-key)",
    )
    parser.add_argument(
        "--no-rewards",
        action="store_true",
        help="leave the rewards service out: no demo programs, no rewards or budgets shown, no "
        "quarter closed",
    )
    parser.add_argument(
        "--show", type=_positive_int, default=5, help="how many of the busiest members to show (default: 5)"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="after publishing, wait at most this long for the figures to stop changing "
        "(default: %(default).0f; 0: show them once)",
    )
    # The services' LOYALTY_TOPIC_PREFIX (several environments on one cluster; the tests use it).
    parser.add_argument("--topic-prefix", default="", help=argparse.SUPPRESS)
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


def _env_flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def run(args: argparse.Namespace) -> int:
    if args.rate < 0 or args.wait < 0:
        print("--rate and --wait must be 0 or more", file=sys.stderr)
        return 2
    data_dir = (args.data_dir or default_home()).expanduser().absolute()
    try:
        target = resolve(args, read_platform(data_dir), data_dir)
    except NoPlatform as exc:
        print(exc, file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    events = generate_orders(members=args.members, orders=args.orders, seed=seed)
    print(f"seed {seed}: {len(events)} events for {args.orders} orders, {args.members} members")
    print(target.describe())
    demo_set = None
    if target.rewards is not None:
        demo_set = set_up_rewards(target.rewards)
        if demo_set is None:
            target = replace(target, rewards=None)
        elif events and (start := demo.orders_start(events[0][1].time, demo_set.floor)) is not None:
            events = generate_orders(members=args.members, orders=args.orders, seed=seed, start=start)
            print(
                f"the orders are dated from {start:%Y-%m-%d %H:%M} UTC, the start of the programs' "
                f"schedule, to {events[-1][1].time:%Y-%m-%d %H:%M} UTC (some after now)"
            )
    elif not args.no_rewards and target.feeds:
        print(f"rewards: not shown (no {REWARDS.flag}, and the running loyalty dev has no rewards service)")
    members = busiest_members(events, args.show)
    try:
        if not (target.feeds or target.rewards) or not members:
            asyncio.run(publish(events, target.bootstrap, args.rate, target.idempotence, topic=target.topic))
            print(counts(events, target.topic))
        else:
            watched = [*target.feeds, *([target.rewards] if target.rewards else [])]
            shown = ", ".join(f"{feed.source.what} from {feed.url}" for feed in watched)
            print(f"{shown}, for the {len(members)} busiest members")
            for feed in watched:
                if feed.source.legend:
                    print(f"  {feed.source.legend}")
            programs = demo_set.programs if demo_set else ()
            asyncio.run(publish_and_watch(events, target, members, args.rate, args.wait, programs=programs))
            if demo_set is not None and target.rewards is not None:
                close_the_quarter(target, demo_set, events, args.wait)
                tour_the_scheme(target, events, data_dir)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


# --- the rewards demo ------------------------------------------------------------------------------


def _api(feed: Feed) -> demo.Api:
    return demo.Api(feed.url, feed.key)


def set_up_rewards(feed: Feed, now: datetime | None = None) -> demo.DemoSet | None:
    """The demo program set in the rewards service at ``feed`` (created where missing), said in a few
    lines; None, with a line saying why, when rewards cannot be used."""
    import httpx

    async def go() -> demo.DemoSet:
        async with httpx.AsyncClient(timeout=10) as client:
            return await demo.set_up(client, _api(feed), now or datetime.now(UTC))

    try:
        found = asyncio.run(go())
    except demo.Unavailable as exc:
        print(f"rewards: {exc}; going on without the rewards demo (--no-rewards leaves it out)")
        return None
    for line in demo.setup_lines(feed.url, found):
        print(line)
    return found


def close_the_quarter(
    target: Target, demo_set: demo.DemoSet, events: list[tuple[str, CloudEvent]], wait: float
) -> bool:
    """After the orders: close the quarter they were paid in and show a rebate statement."""
    assert target.rewards is not None
    paid = [event.time for _, event in events if event.type == "order.paid"]
    if not paid:
        return False
    quarter = demo.quarter_of(min(paid))
    if wait == 0:
        print(
            f"rewards: --wait 0 does not wait for the services, so {quarter.label} is not closed "
            "(no rebate statement this run)"
        )
        return False
    points = next((feed for feed in target.feeds if feed.source.service == "points"), None)
    budget_feed = Feed(BUDGETS, target.rewards.url, target.rewards.key)

    async def budgets() -> list[str]:
        import httpx

        async with httpx.AsyncClient(timeout=5) as client:
            snapshot = await poll(client, [budget_feed], [p.id for p in demo_set.programs])
        return render_budgets(demo_set.programs, snapshot)

    closing = demo.Closing(
        rewards=_api(target.rewards),
        points=_api(points) if points else None,
        demo=demo_set,
        quarter=quarter,
        members=busiest_members(events, STATEMENT_CANDIDATES),
        bootstrap=target.bootstrap,
        topic_prefix=target.topic.removesuffix(ORDERS_TOPIC),
        budgets=budgets,
    )
    return asyncio.run(demo.close_quarter(closing))


STATEMENT_CANDIDATES = 25  # the busiest members looked at for a rebate statement to show


def tour_the_scheme(target: Target, events: list[tuple[str, CloudEvent]], data_dir: Path) -> list[str]:
    """After the quarter: a launch's priority window, documents for the top accounts, an exchange
    event filling up (``loyalty_cli.scheme``); what was shown."""
    assert target.rewards is not None
    tour = scheme.Tour(
        rewards=_api(target.rewards),
        members=busiest_members(events, scheme.INVITED),
        documents_dir=data_dir / "documents",
    )
    return asyncio.run(scheme.show(tour))


def render_budgets(programs: Sequence[demo.DemoProgram], snapshot: Snapshot) -> list[str]:
    """The demo programs' budget table from the snapshot's budget readings; pure."""
    got: dict[str, demo.Got] = {}
    for program in programs:
        one = snapshot.get((BUDGETS.service, program.id))
        if one is not None:
            got[program.id] = (one.cells, one.note)
    return demo.render_budgets(programs, got)


def render_figures(
    members: Sequence[str],
    sources: Sequence[Source],
    snapshot: Snapshot,
    *,
    rewards: bool = False,
    programs: Sequence[demo.DemoProgram] = (),
) -> list[str]:
    """The members' table, then (with rewards) their rewards and the programs' budgets; pure."""
    blocks = []
    if sources:
        blocks.append(render_table(members, sources, snapshot))
    if rewards:
        blocks.append(render_table(members, [REWARDS], snapshot))
    if programs:
        blocks.append(render_budgets(programs, snapshot))
    lines: list[str] = []
    for block in blocks:
        lines += [*([""] if lines else []), *block]
    return lines


# --- where to publish, and which services to show -----------------------------------------------


@dataclass(frozen=True)
class Source:
    """One service's columns in the table: where a member's figures are and how they read.
    A new service adds one entry to SOURCES (its flag, path and columns), nothing else."""

    service: str  # its name in LocalPlatform.services
    what: str  # the heading says "<what> from <URL>"
    flag: str  # the option giving its URL
    key_flag: str | None  # the option giving its own API key (else --api-key)
    path: str  # a member's figures, with {member}
    columns: tuple[tuple[str, str], ...]  # (heading, alignment "<" or ">")
    cells: Callable[[dict[str, Any]], tuple[str, ...]]  # one per column, from a 200 body
    seen: Callable[[dict[str, Any]], bool]  # the body shows some of the member's events
    legend: str = ""  # what its columns mean, said once above the table

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def key_dest(self) -> str:
        return (self.key_flag or "--api-key").lstrip("-").replace("-", "_")


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _whole(text: object, rounding: str = ROUND_FLOOR) -> str:
    """A money amount in whole units: spend rounded down, what is missing rounded up."""
    try:
        return f"{Decimal(str(text)).to_integral_value(rounding):,}"
    except ArithmeticError:
        return str(text)


def _points_cells(body: dict[str, Any]) -> tuple[str, ...]:
    return _count(body.get("available")), _count(body.get("pending"))


def _points_seen(body: dict[str, Any]) -> bool:
    return any(body.get(k) for k in ("available", "pending", "debt", "lifetime_earned", "lifetime_reversed"))


def _next_tier_gap(following: dict[str, Any] | None, currency: str) -> str:
    if not following:
        return NONE
    gaps = []
    if following.get("missing_spend") is not None:
        gaps.append(f"{_whole(following['missing_spend'], ROUND_CEILING)} {currency}")
    if following.get("missing_orders") is not None:
        gaps.append(f"{following['missing_orders']} orders")
    joiner = " or " if following.get("requires") == "any" else " and "
    return f"{following.get('tier')}: {joiner.join(gaps) or 'met'}"


def _tier_cells(body: dict[str, Any]) -> tuple[str, ...]:
    currency = str(body.get("currency", ""))
    return (
        str(body.get("tier")),
        f"{_whole(body.get('qualifying_spend'))} {currency}".rstrip(),
        _count(body.get("qualifying_orders")),
        _next_tier_gap(body.get("next_tier"), currency),
    )


SOURCES: tuple[Source, ...] = (
    Source(
        "points",
        "balances",
        "--api",
        None,
        "/v1/members/{member}/points",
        (("available", ">"), ("pending", ">")),
        _points_cells,
        _points_seen,
    ),
    Source(
        "tiers",
        "tiers",
        "--tiers-api",
        "--tiers-api-key",
        "/v1/members/{member}/tier",
        (("tier", "<"), ("spend", ">"), ("orders", ">"), ("next tier: missing", "<")),
        _tier_cells,
        lambda body: bool(body.get("known", True)),
        legend="spend, orders: what counts towards a tier (in the ladder's window)",
    ),
)


# The rewards service's tables: not in SOURCES (they are tables of their own, below the members').
REWARDS = Source(
    "rewards",
    "rewards issued",
    "--rewards-api",
    "--rewards-api-key",
    "/v1/members/{member}/rewards",
    demo.REWARD_COLUMNS,
    demo.reward_cells,
    lambda body: True,  # no reward yet is a figure too
    legend="rewards: what the demo programs gave (gifts by catalog item; rebates when the quarter closes)",
)
BUDGETS = Source(
    "rewards:budget",
    "program budgets",
    "--rewards-api",
    None,
    "/v1/programs/{member}/budget",  # {member}: the program's id
    demo.BUDGET_COLUMNS,
    demo.budget_cells,
    lambda body: True,
)


def _example_url(source: Source) -> str:
    ports = {spec.name: spec.port for spec in SERVICES}
    return f"http://127.0.0.1:{ports.get(source.service, 8000)}"


@dataclass(frozen=True)
class Feed:
    """A source to show, with where its service is and the key to read it with."""

    source: Source
    url: str
    key: str | None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


@dataclass(frozen=True)
class Target:
    """Where simulate publishes and what it shows, from the flags and the running loyalty dev."""

    bootstrap: str
    idempotence: bool
    topic: str
    feeds: tuple[Feed, ...]
    platform_dir: Path | None = None  # the loyalty dev it took settings from, if any
    rewards: Feed | None = None  # the rewards service, for the demo programs (None: left out)

    def describe(self) -> str:
        where = f" (the loyalty dev running in {self.platform_dir})" if self.platform_dir else ""
        producer = "idempotent producer" if self.idempotence else "producer without idempotence"
        return f"publishing to '{self.topic}' on {self.bootstrap}{where}, {producer}"


class NoPlatform(Exception):
    """No running loyalty dev, and no flags saying where the platform is."""


def resolve(
    args: argparse.Namespace,
    platform: LocalPlatform | None,
    data_dir: Path,
    environ: Mapping[str, str] = os.environ,
) -> Target:
    """Each setting from its flag, else from the running loyalty dev (``platform``), else from the
    environment. No broker at all: NoPlatform, saying how to start one or where to point."""
    settings: dict[str, Any] = {}  # what came from the running loyalty dev
    local = platform or LocalPlatform("", False, {}, {})

    def pick(name: str, flag: object, local_value: object) -> Any:
        if flag not in (None, ""):
            return flag
        if local_value not in (None, ""):
            settings[name] = local_value
            return local_value
        return None

    bootstrap = pick("bootstrap", args.bootstrap, local.bootstrap)
    bootstrap = bootstrap or environ.get("LOYALTY_KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        raise NoPlatform(no_platform_hint(data_dir))
    idempotence = pick("idempotence", args.idempotence, platform and platform.idempotence)
    if idempotence is None:
        idempotence = _env_flag(environ.get("LOYALTY_KAFKA_ENABLE_IDEMPOTENCE"))
    feeds = []
    for source in SOURCES:
        url = pick(source.dest, getattr(args, source.dest, None), local.services.get(source.service))
        if url:
            own_key = getattr(args, source.key_dest, None) or args.api_key
            feeds.append(Feed(source, url, pick("key", own_key, local.keys.get("crm"))))
    rewards = None
    if not getattr(args, "no_rewards", False):
        url = pick(REWARDS.dest, getattr(args, REWARDS.dest, None), local.services.get(REWARDS.service))
        if url:
            own_key = getattr(args, REWARDS.key_dest, None) or args.api_key
            rewards = Feed(REWARDS, url, pick("key", own_key, local.keys.get("crm")))
    return Target(
        str(bootstrap),
        bool(idempotence),
        args.topic_prefix + ORDERS_TOPIC,
        tuple(feeds),
        platform_dir=data_dir if settings else None,
        rewards=rewards,
    )


def no_platform_hint(data_dir: Path) -> str:
    flags = " ".join(f"{s.flag} {_example_url(s).replace('127.0.0.1', 'HOST')}" for s in (*SOURCES, REWARDS))
    default = data_dir == default_home().expanduser().absolute()
    return "\n".join(
        [
            f"error: no `loyalty dev` is running on {data_dir} (no live {PLATFORM_FILE} there),",
            "and no --bootstrap says where else to publish. Start the local platform in another",
            "terminal, then run this again:",
            "    ./loyalty dev" + ("" if default else f" --data-dir {data_dir}"),
            "For a platform elsewhere, say where it is:",
            f"    ./loyalty simulate --bootstrap HOST:9092 {flags} --api-key CRM_KEY",
            "(add --no-idempotence for tansu; --bootstrap alone publishes and shows nothing)",
        ]
    )


# --- publishing ---------------------------------------------------------------------------------


class PublishError(RuntimeError):
    pass


class Progress:
    """How far publishing is. Drawn as a plain-text bar on stderr, redrawn with \\r at most ten
    times a second on a terminal, unless ``draw`` is off (the live table shows it instead)."""

    def __init__(self, total: int, *, draw: bool = True) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.finished: float | None = None
        self._drawn = 0.0
        self._draw = draw
        self._live = draw and sys.stderr.isatty()

    def line(self) -> str:
        width = 30
        filled = width * self.done // self.total if self.total else width
        rate = self.done / max((self.finished or time.monotonic()) - self.started, 1e-6)
        bar = "#" * filled + "-" * (width - filled)
        return f"[{bar}] {self.done}/{self.total} events  {rate:,.0f}/s"

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if not self._draw or (not force and (not self._live or now - self._drawn < 0.1)):
            return
        self._drawn = now
        sys.stderr.write(f"\r{self.line()} ")
        sys.stderr.flush()

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        self.finished = time.monotonic()
        if self._draw:
            sys.stderr.write("\n")


async def publish(
    events: list[tuple[str, CloudEvent]],
    bootstrap: str,
    rate: float,
    idempotence: bool,
    *,
    topic: str = ORDERS_TOPIC,
    progress: Progress | None = None,
) -> None:
    """Publish to ``topic`` (key = member id), pacing ``order.paid`` events at ``rate`` per s."""
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
        await _send_all(producer, events, rate, topic, progress or Progress(len(events)))
    except KafkaError as exc:
        raise PublishError(f"publishing failed: {exc!r}") from exc
    finally:
        await producer.stop()


async def _send_all(
    producer: Any, events: list[tuple[str, CloudEvent]], rate: float, topic: str, progress: Progress
) -> None:
    pending: list[asyncio.Future[Any]] = []
    paid = 0
    started = time.monotonic()
    for done, (member_id, event) in enumerate(events):
        if rate > 0 and event.type == "order.paid":
            delay = started + paid / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            paid += 1
        pending.append(await producer.send(topic, event.to_bytes(), member_id.encode()))
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending.clear()
        progress.update(done + 1)
    await asyncio.gather(*pending)
    progress.finish(len(events))


ORDER_EVENT_TYPES = ("order.paid", "order.refunded", "order.cancelled")


def counts(events: list[tuple[str, CloudEvent]], topic: str = ORDERS_TOPIC) -> str:
    """How many events of each type were published, as lines."""
    by_type = Counter(event.type for _, event in events)
    lines = [f"  {kind:<16} {by_type.get(kind, 0):>7}" for kind in ORDER_EVENT_TYPES]
    lines.append(f"  {'total':<16} {len(events):>7}  published to '{topic}'")
    return "\n".join(lines)


def busiest_members(events: list[tuple[str, CloudEvent]], count: int) -> list[str]:
    paid = Counter(member for member, event in events if event.type == "order.paid")
    return [member for member, _ in paid.most_common(count)]


# --- watching the figures move ------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """What one service says about one member: its cells, or why there are none."""

    cells: tuple[str, ...] | None
    note: str = ""
    pending: bool = False  # the member's events may not have reached the service yet


Snapshot = dict[tuple[str, str], Reading]  # (service, member) -> reading


def reading(source: Source, status: int, body: object) -> Reading:
    """A service's answer (status and JSON body, or text) as a reading; pure."""
    if status == 200 and isinstance(body, dict):
        if source.seen(body):
            return Reading(source.cells(body))
        return Reading(None, NOTHING_YET, pending=True)
    if status == 404:
        return Reading(None, NOTHING_YET, pending=True)
    if status in (401, 403):
        return Reading(None, f"HTTP {status}: the API key was refused (use the crm key)")
    return Reading(None, f"HTTP {status}: {str(body)[:120]}")


def render_table(members: Sequence[str], sources: Sequence[Source], snapshot: Snapshot) -> list[str]:
    """The table (a heading, a row per member), then a note per service and problem; pure."""
    heading = ["member", *(name for s in sources for name, _ in s.columns)]
    aligns = ["<", *(align for s in sources for _, align in s.columns)]
    got = {
        (source.service, member): snapshot.get((source.service, member), Reading(None, pending=True))
        for source in sources
        for member in members
    }
    rows: list[list[str]] = []
    for member in members:
        row = [member]
        for source in sources:
            one = got[source.service, member]
            filler = NOT_YET if one.pending else NONE
            row += one.cells if one.cells is not None else [filler] * len(source.columns)
        rows.append(row)
    notes: dict[tuple[str, str], list[str]] = {}  # (service, note) -> members, in the sources' order
    for (service, member), one in got.items():
        if one.note:
            notes.setdefault((service, one.note), []).append(member)
    widths = [max(len(row[i]) for row in (heading, *rows)) for i in range(len(heading))]
    lines = [
        "  ".join(
            f"{cell:{align}{width}}" for cell, align, width in zip(row, aligns, widths, strict=False)
        ).rstrip()
        for row in (heading, *rows)
    ]
    lines += [f"  {service} ({', '.join(who)}): {note}" for (service, note), who in notes.items()]
    return lines


class Settle:
    """Settled: publishing is over and the figures have not changed for ``quiet`` seconds
    (``unseen_quiet`` while a service still has nothing for some member); pure."""

    def __init__(self, quiet: float = QUIET_S, unseen_quiet: float = UNSEEN_QUIET_S) -> None:
        self.quiet = quiet
        self.unseen_quiet = unseen_quiet
        self._last: Snapshot | None = None
        self._since = 0.0

    def observe(self, snapshot: Snapshot, now: float, *, publishing: bool) -> bool:
        if publishing or snapshot != self._last:
            self._last = snapshot
            self._since = now
            return False
        unseen = any(r.pending for r in snapshot.values())
        return now - self._since >= (self.unseen_quiet if unseen else self.quiet)

    def quiet_for(self, now: float) -> float:
        return now - self._since


class LiveView:
    """The table on stdout as it moves: redrawn in place on a terminal (\\r and cursor-up, no
    curses), printed every ``every`` seconds otherwise (a log keeps every copy)."""

    def __init__(self, out: TextIO, *, every: float = LOG_EVERY_S, live: bool | None = None) -> None:
        self.out = out
        self.every = every
        self.live = out.isatty() if live is None else live
        self._height = 0  # lines of the block now on the screen
        self._block: list[str] = []
        self._printed: float | None = None

    def _erase(self) -> None:
        if self.live and self._height:
            self.out.write(f"\x1b[{self._height}A\r\x1b[J")
        self._height = 0

    def _write(self, lines: Sequence[str]) -> None:
        self.out.write("".join(line + "\n" for line in lines))
        self.out.flush()

    def _draw(self) -> None:
        width = max(20, shutil.get_terminal_size().columns - 1)
        block = [line[:width] for line in self._block]  # a wrapped line would break the redraw
        self._write(block)
        self._height = len(block)

    def show(self, lines: Sequence[str], now: float) -> None:
        """The latest figures: drawn over the last ones (terminal) or printed if it is time (log)."""
        self._block = list(lines)
        if self.live:
            self._erase()
            self._draw()
        elif self._printed is None or now - self._printed >= self.every:
            self._printed = now
            self._write(self._block)

    def say(self, text: str) -> None:
        """A line above the table (which stays below, on a terminal)."""
        self._erase()
        self._write([text])
        if self.live and self._block:
            self._draw()

    def final(self, lines: Sequence[str]) -> None:
        """The last figures, printed once for good."""
        self._erase()
        self._block = []
        self._write(lines)


async def poll(client: Any, feeds: Sequence[Feed], members: Sequence[str]) -> Snapshot:
    """Every feed's reading of every member, asked concurrently; a service down is a reading."""
    import httpx

    async def one(feed: Feed, member: str) -> Reading:
        url = feed.url.rstrip("/") + feed.source.path.format(member=member)
        try:
            response = await client.get(url, headers=feed.headers())
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return Reading(None, f"not reachable at {feed.url} ({type(exc).__name__})")
        try:
            body: object = response.json()
        except ValueError:
            body = response.text
        return reading(feed.source, response.status_code, body)

    pairs = [(feed, member) for feed in feeds for member in members]
    found = await asyncio.gather(*(one(feed, member) for feed, member in pairs))
    return {(feed.source.service, member): got for (feed, member), got in zip(pairs, found, strict=True)}


async def publish_and_watch(
    events: list[tuple[str, CloudEvent]],
    target: Target,
    members: Sequence[str],
    rate: float,
    wait: float,
    *,
    view: LiveView | None = None,
    poll_every: float = POLL_S,
    programs: Sequence[demo.DemoProgram] = (),
) -> bool:
    """Publish while showing the figures (with rewards: the members' rewards and the ``programs``'
    budgets too); then watch until they settle or ``wait`` runs out. Prints the final tables once;
    True when the figures settled."""
    import httpx

    view = view or LiveView(sys.stdout)
    progress = Progress(len(events), draw=False)
    sources = [feed.source for feed in target.feeds]
    feeds = [*target.feeds, *([target.rewards] if target.rewards else [])]
    budgets = Feed(BUDGETS, target.rewards.url, target.rewards.key) if target.rewards and programs else None
    program_ids = [p.id for p in programs]

    def figures(snapshot: Snapshot) -> list[str]:
        return render_figures(
            members,
            sources,
            snapshot,
            rewards=target.rewards is not None,
            programs=programs if budgets else (),
        )

    async def look(client: Any) -> Snapshot:
        if budgets is None:
            return await poll(client, feeds, members)
        found, burning = await asyncio.gather(
            poll(client, feeds, members), poll(client, [budgets], program_ids)
        )
        return found | burning

    publishing = asyncio.create_task(
        publish(events, target.bootstrap, rate, target.idempotence, topic=target.topic, progress=progress)
    )
    settle = Settle()
    started = time.monotonic()
    deadline: float | None = None  # set when publishing is over
    settled = False
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            while True:
                snapshot = await look(client)
                now = time.monotonic()
                if deadline is None and publishing.done():
                    await publishing  # re-raises its PublishError
                    view.say(counts(events, target.topic))
                    deadline = now + wait
                settled = settle.observe(snapshot, now, publishing=deadline is None)
                if settled or (deadline is not None and now >= deadline):
                    break
                status = progress.line() if deadline is None else "published; the services are catching up"
                view.show([f"[{now - started:5.1f} s] {status}", *figures(snapshot)], now)
                await asyncio.sleep(poll_every)
        finally:
            publishing.cancel()  # only when we stop early (Ctrl-C); a no-op once it is done
    if settled:
        head = f"settled after {now - started:.1f} s (nothing changed for {settle.quiet_for(now):.1f} s):"
    elif wait == 0:
        head = f"after {now - started:.1f} s (--wait 0: not waiting for the services):"
    else:
        head = f"still changing after {now - started:.1f} s (--wait {wait:g}): the services are behind:"
    view.final([head, *figures(snapshot)])
    return settled
