"""The rewards phases: the rewards service with a realistic program set, alone and next to points
and tiers on one orders topic (three processes, three databases, one prefix), draining a backlog;
then the three fed at paced rates: publish -> order counted by rewards, publish -> ``reward.issued``
for the orders that earn a gift (and, through tiers' ``tier.changed``, for promotions' upgrade gifts).

The programs are created over REST with the crm key before any order is consumed. Rewards decides
by an order's *event time*: every order is dated inside the programs' schedules, and each paced run's
orders in a calendar month of their own (the history's too), so that a threshold gift, once per member
and month, can be earned again in every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from bench.config import (
    API_KEY,
    COUNT_POLL_S,
    POINTS_ORDERS,
    POINTS_TABLE,
    REWARDS,
    REWARDS_ORDERS,
    REWARDS_STOCK,
    REWARDS_TOPIC,
    SEGMENT_DAYS,
    TIER_WATCH_FETCH_WAIT_MS,
    TIERS_TABLE,
    Message,
)
from bench.load import producer_for, publish_all, publish_paced
from bench.measure import (
    CpuMeter,
    OrderWatcher,
    Paced,
    Received,
    TierChangeWatcher,
    batch_figures,
    connection,
    count_rows,
    metrics_delta,
    percentiles,
    scrape_metrics,
    wait_for_count,
)
from bench.phases_tiers import (
    first_tx_start,
    inbox_times,
    tier_changes,
    wait_outbox_published,
    wait_points_projected,
)
from bench.services import Service, service_process, trio_services
from bench.stack import Context, PhaseEnv, TrioEnv, new_rewards_env, new_trio_env
from loyalty_cli.simulate import generate_orders
from loyalty_shared.dates import add_months
from loyalty_shared.envelope import CloudEvent
from tiers_service.domain import DEFAULT_LADDER

# --- the orders -----------------------------------------------------------------------------------


@dataclass
class Orders:
    messages: list[Message]
    order_of: dict[str, str]  # event id -> order id
    times: list[datetime]  # each message's event time
    first: datetime  # the earliest event time
    last: datetime

    @property
    def event_of(self) -> dict[str, str]:
        return {order: event for event, order in self.order_of.items()}


def orders_of(events: Sequence[tuple[str, CloudEvent]]) -> Orders:
    messages = [(member.encode(), event.id, event.to_bytes()) for member, event in events]
    order_of = {event.id: str(event.data["order_id"]) for _, event in events}
    times = [event.time for _, event in events]
    return Orders(messages, order_of, times, min(times), max(times))


def generated(orders: int, members: int, seed: int) -> list[tuple[str, CloudEvent]]:
    return generate_orders(members=members, orders=orders, seed=seed, refund_rate=0, cancel_rate=0)


def month_starts(segments: int, now: datetime) -> list[datetime]:
    """The first moments of ``segments`` consecutive calendar months (UTC), the last one the month
    before ``now``'s: every order is in the past."""
    this_month = datetime(now.year, now.month, 1, tzinfo=UTC)
    return [add_months(this_month, index - segments) for index in range(segments)]


def redated(events: Sequence[tuple[str, CloudEvent]], start: datetime) -> list[tuple[str, CloudEvent]]:
    """The same events, moved to begin at ``start`` (their spacing kept, squeezed when they would not
    fit in SEGMENT_DAYS days: one calendar month)."""
    if not events:
        return []
    first, last = events[0][1].time, events[-1][1].time
    span = timedelta(days=SEGMENT_DAYS)
    scale = 1.0 if last - first <= span else span / (last - first)
    return [
        (member, event.model_copy(update={"time": start + (event.time - first) * scale}))
        for member, event in events
    ]


# --- the program set ------------------------------------------------------------------------------

CURRENCY = "EUR"
HAMPER, VOUCHER, KEY_GIFT = "gift-hamper", "spend-voucher", "key-account-gift"
KEY_ACCOUNT_TIERS = ["Gold", "Platinum"]
# (item id, name, value EUR): the tiers default ladder's upgrade_gift benefits, what tiers names on a
# promotion's tier.changed and rewards gives from the catalog (a missing item would be refused)
UPGRADE_VALUES = {"Silver": "25.00", "Gold": "75.00", "Platinum": "250.00"}


def upgrade_gifts() -> list[tuple[str, str, str]]:
    return [
        (t.benefits.upgrade_gift, f"{t.name} welcome gift", UPGRADE_VALUES.get(t.name, "500.00"))
        for t in DEFAULT_LADDER.tiers
        if t.benefits.upgrade_gift
    ]


def catalog_items() -> list[dict[str, Any]]:
    """POST /v1/catalog bodies: the programs' gifts, with a stock that is never the limit."""
    gifts = [
        (HAMPER, "Gift hamper", "40.00"),
        (VOUCHER, "Monthly spend voucher box", "25.00"),
        (KEY_GIFT, "Key account gift", "150.00"),
        *upgrade_gifts(),
    ]
    return [
        {
            "item_id": item_id,
            "kind": "gift",
            "name": name,
            "currency": CURRENCY,
            "value": value,
            "stock": REWARDS_STOCK,
        }
        for item_id, name, value in gifts
    ]


def program_documents(starts: datetime) -> list[dict[str, Any]]:
    """POST /v1/programs documents: five programs a CRM would run for key-account buyers, all from
    ``starts`` (open-ended). Budgets are sized not to run out in a default run (refusals would stop
    the gifts the latency figure needs); the stock neither."""
    at = starts.astimezone(UTC).isoformat()
    monthly = {"starts": at, "cycle": "month"}
    quarterly = {"starts": at, "cycle": "quarter"}
    return [
        {
            "name": "Big orders: a gift hamper",
            "objective": "More big orders: a hamper for an order of 10,000 EUR or more, once a month",
            "targets": [{"metric": "sales_uplift_pct", "target": "5"}],
            "measures": [
                {
                    "id": "big-order",
                    "kind": "threshold-gift",
                    "basis": "order",
                    "min": "10000",
                    "item": HAMPER,
                }
            ],
            "schedule": monthly,
            "budget": {"currency": CURRENCY, "cap": "500000.00", "per_member_cap": "1000.00"},
        },
        {
            "name": "Monthly spend: a voucher box at 25,000 EUR",
            "objective": "Keep active buyers buying: a voucher box when a month's spend reaches 25,000 EUR",
            "targets": [{"metric": "retention_pct", "target": "90"}],
            "target_group": {"min_spend": "5000", "months": 12},
            "measures": [
                {
                    "id": "month-spend",
                    "kind": "threshold-gift",
                    "basis": "cycle-spend",
                    "min": "25000",
                    "item": VOUCHER,
                }
            ],
            "schedule": monthly,
            "budget": {"currency": CURRENCY, "cap": "300000.00"},
        },
        {
            "name": "Key accounts: a gift for an order of 50,000 EUR",
            "objective": "Bigger orders from Gold and Platinum accounts",
            "targets": [{"metric": "sales_uplift_pct", "target": "10"}],
            "target_group": {"tiers": KEY_ACCOUNT_TIERS, "min_spend": "200000", "months": 12},
            "control_share": "0.1",
            "measures": [
                {
                    "id": "key-order",
                    "kind": "threshold-gift",
                    "basis": "order",
                    "min": "50000",
                    "item": KEY_GIFT,
                }
            ],
            "schedule": quarterly,
            "budget": {"currency": CURRENCY, "cap": "300000.00"},
        },
        {
            "name": "Tier upgrades: a welcome gift",
            "objective": "Welcome members to their new tier: the tier's upgrade gift on each promotion",
            "targets": [{"metric": "retention_pct", "target": "95"}],
            "measures": [{"id": "upgrade", "kind": "tier-upgrade-gift"}],
            "schedule": quarterly,
            "budget": {"currency": CURRENCY, "cap": "500000.00"},
        },
        {
            "name": "Key accounts: quarterly volume rebate",
            "objective": "Grow Gold and Platinum accounts' volume: a rebate on each quarter's net spend, "
            "paid as points at the quarter's close",
            "targets": [{"metric": "sales_uplift_pct", "target": "15"}],
            "target_group": {"tiers": KEY_ACCOUNT_TIERS},
            "control_share": "0.1",
            "measures": [
                {
                    "id": "volume-rebate",
                    "kind": "rebate",
                    "basis": "volume",
                    "steps": [
                        {"min": "100000", "value": "0.5"},
                        {"min": "500000", "value": "1"},
                        {"min": "1000000", "value": "1.5"},
                    ],
                    "pay_as": "points",
                }
            ],
            "schedule": quarterly,
            "budget": {"currency": CURRENCY, "cap": "2000000.00", "point_value": "0.01"},
        },
    ]


def quarter_start(moment: datetime) -> datetime:
    at = moment.astimezone(UTC)
    return datetime(at.year, (at.month - 1) // 3 * 3 + 1, 1, tzinfo=UTC)


async def set_up_programs(service: Service, starts: datetime) -> dict[str, str]:
    """The catalog and the program set, over REST with the crm key, each program activated; the
    programs' ids by name."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    ids: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30) as client:
        for item in catalog_items():
            response = await client.post("/v1/catalog", json=item)
            if response.status_code != 201:
                raise RuntimeError(f"POST /v1/catalog {item['item_id']}: {response.text}")
        for document in program_documents(starts):
            response = await client.post("/v1/programs", json=document)
            if response.status_code != 201:
                raise RuntimeError(f"POST /v1/programs {document['name']!r}: {response.text}")
            program_id = str(response.json()["id"])
            response = await client.post(f"/v1/programs/{program_id}/lifecycle", json={"action": "activate"})
            if response.status_code != 200:
                raise RuntimeError(f"activating {document['name']!r}: {response.text}")
            ids[document["name"]] = program_id
    return ids


async def prepare_programs(ctx: Context, env: PhaseEnv, starts: datetime) -> dict[str, str]:
    """Start rewards' API on ``env`` (no consumer: a member that joined the consumer group would
    hold up the next one's join on tansu for some 13 s), set the programs up, stop it: the orders
    published next wait as a backlog for the service started afterwards."""
    async with service_process(ctx.stack, env, ctx.workdir, ctx.started, REWARDS, consume=False) as service:
        return await set_up_programs(service, starts)


# --- what the rewards database holds --------------------------------------------------------------


async def rewards_summary(conn: asyncpg.Connection) -> dict[str, Any]:
    """Rewards issued per measure, refusals per reason, enrolments per program and group, and the
    events rewards published (its outbox)."""
    issued = await conn.fetch(
        "SELECT coalesce(measure_id, '-') AS measure, kind, count(*) AS n, sum(cost) AS cost "
        "FROM rewards GROUP BY 1, 2 ORDER BY 3 DESC"
    )
    refused = await conn.fetch(
        "SELECT coalesce(measure_id, '-') AS measure, reason, count(*) AS n FROM refusals GROUP BY 1, 2"
    )
    enrolled = await conn.fetch(
        "SELECT p.name, e.grp, count(*) AS n FROM participants AS e JOIN programs AS p "
        "ON p.id = e.program_id GROUP BY 1, 2 ORDER BY 1, 2"
    )
    published = await conn.fetch("SELECT event_type, count(*) AS n FROM outbox GROUP BY 1 ORDER BY 2 DESC")
    return {
        "rewards_by_measure": {
            f"{r['measure']} ({r['kind']})": {"issued": int(r["n"]), "cost": str(r["cost"])} for r in issued
        },
        "refusals": {f"{r['measure']}: {r['reason']}": int(r["n"]) for r in refused},
        "participants": {f"{r['name']} / {r['grp']}": int(r["n"]) for r in enrolled},
        "published": {r["event_type"]: int(r["n"]) for r in published},
    }


# The rewards consumer's per-batch read when programs are active (services/rewards facts.py,
# _ORDERS_AND_HISTORY): the batch's orders, and every order of the batch's members since
# history_since (12 months and a day before the batch's first event), FOR UPDATE.
HISTORY_QUERY = (
    "SELECT order_id, member_id, currency, amount, refunded, paid_at, cancelled_at FROM orders "
    "WHERE order_id = ANY($1::text[]) OR (member_id = ANY($2::text[]) AND paid_at >= $3) FOR UPDATE"
)
ORDERS_QUERY = (
    "SELECT order_id, member_id, currency, amount, refunded, paid_at, cancelled_at FROM orders "
    "WHERE order_id = ANY($1::text[]) FOR UPDATE"
)


async def explain(conn: asyncpg.Connection, query: str, *args: Any) -> dict[str, Any]:
    """EXPLAIN ANALYZE of ``query`` in a transaction rolled back (its row locks are let go)."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}", *args)
    finally:
        await transaction.rollback()
    top = (plan if isinstance(plan, list) else json.loads(plan))[0]
    return {
        "rows": int(top["Plan"]["Actual Rows"]),
        "ms": round(float(top["Execution Time"]), 2),
        "shared_buffers": int(top["Plan"].get("Shared Hit Blocks", 0))
        + int(top["Plan"].get("Shared Read Blocks", 0)),
    }


async def history_probe(conn: asyncpg.Connection, orders: Orders, batch: int) -> dict[str, Any]:
    """The per-batch history read for a batch like the drain's last one (its last ``batch`` orders),
    once the drain is over: how many rows it locks and what it costs, against reading just the
    batch's own orders."""
    tail = orders.messages[-batch:]
    members = sorted({key.decode() for key, _, _ in tail})
    order_ids = sorted(orders.order_of[event_id] for _, event_id, _ in tail)
    since = add_months(min(orders.times[-batch:]), -12) - timedelta(days=1)  # issuing.history_since
    with_history = await explain(conn, HISTORY_QUERY, order_ids, members, since)
    alone = await explain(conn, ORDERS_QUERY, order_ids)
    per_member = await conn.fetchval(
        "SELECT count(*)::float / greatest(count(DISTINCT member_id), 1) FROM orders"
    )
    return {
        "batch_orders": len(tail),
        "batch_members": len(members),
        "with_history": with_history,
        "orders_only": alone,
        "orders_per_member_in_db": round(float(per_member), 1),
        "note": "facts.py _ORDERS_AND_HISTORY as the consumer runs it when programs are active, on "
        "the drained database, for the members of the last batch-sized slice of orders (EXPLAIN "
        "ANALYZE, rolled back); orders_only: the same batch without the history",
    }


# --- draining a backlog ---------------------------------------------------------------------------


async def wait_counting(
    conn: asyncpg.Connection, table: str, target: int, timeout: float, samples: list[tuple[float, int]]
) -> float | None:
    """As ``wait_for_count``, noting (time.time(), count) at every poll."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = await count_rows(conn, table)
        now = time.time()
        samples.append((now, done))
        if done >= target:
            return now
        await asyncio.sleep(COUNT_POLL_S)
    return None


def quarter_rates(samples: list[tuple[float, int]], first: float, n: int) -> list[float | None]:
    """Orders/s in each quarter of the drain (the first N/4 counted, the next, ...): a drain that
    slows as history piles up shows falling figures."""
    rates: list[float | None] = []
    previous = first
    for quarter in range(1, 5):
        mark = next((t for t, done in samples if done >= n * quarter / 4), None)
        if mark is None or mark <= previous:
            rates.append(None)
            continue
        rates.append(round((n / 4) / (mark - previous), 1))
        previous = mark
    return rates


async def rewards_alone(ctx: Context, name: str, orders: Orders, programs: bool) -> dict[str, Any]:
    """Rewards alone (no tiers: no tier.changed, so tier-targeted programs reach nobody) drains the
    orders, with the program set or without any program."""
    env = await new_rewards_env(ctx.stack, name)
    ids = await prepare_programs(ctx, env, quarter_start(orders.first)) if programs else {}
    n = len(orders.messages)
    async with producer_for(ctx.stack) as producer:
        await publish_all(producer, env.topic("orders"), orders.messages)
    samples: list[tuple[float, int]] = []
    async with (
        connection(env.dsn) as conn,
        service_process(ctx.stack, env, ctx.workdir, ctx.started, REWARDS) as service,
    ):
        meter = CpuMeter(ctx.stack, {"rewards": service.pids})
        meter.start()
        before = await scrape_metrics(service)
        end = await wait_counting(conn, REWARDS_ORDERS, n, ctx.args.timeout, samples)
        cpu = meter.used()
        rss = meter.peak_rss_mb()
        delta = metrics_delta(before, await scrape_metrics(service))
        first = await first_tx_start(conn, "inbox", "processed_at")
        done = await count_rows(conn, REWARDS_ORDERS)
        figures = batch_figures(delta, done)
        summary = await rewards_summary(conn) if programs else {}
        batch = int(figures.get("avg_batch_size") or 500)
        probe = await history_probe(conn, orders, batch) if programs else None
    if first is None:
        raise RuntimeError(f"the rewards service processed nothing:\n{service.tail()}")
    seconds = (end or time.time()) - first
    return {
        "programs": len(ids),
        "orders": n,
        "processed": done,
        "complete": end is not None,
        "ready_s": round(service.ready_s, 2),
        "seconds": round(seconds, 3),
        "orders_per_s": round(done / seconds, 1),
        "orders_per_s_by_quarter": quarter_rates(samples, first, n),
        **figures,
        "cpu_s": cpu,
        "peak_rss_mb": rss,
        **({"rewards_db": summary, "history_query_at_end": probe} if programs else {}),
    }


async def trio_backlog(ctx: Context, orders: Orders) -> dict[str, Any]:
    """The orders on one topic; points, tiers and rewards (programs set up before) start together."""
    trio = await new_trio_env(ctx.stack, "rewards-backlog")
    ids = await prepare_programs(ctx, trio.rewards, quarter_start(orders.first))
    n = len(orders.messages)
    async with producer_for(ctx.stack) as producer:
        await publish_all(producer, trio.topic("orders"), orders.messages)
    samples: list[tuple[float, int]] = []
    async with (
        connection(trio.points.dsn) as pconn,
        connection(trio.tiers.dsn) as tconn,
        connection(trio.rewards.dsn) as rconn,
        trio_services(ctx, trio) as services,
    ):
        points, tiers, rewards = services
        meter = CpuMeter(ctx.stack, {"points": points.pids, "tiers": tiers.pids, "rewards": rewards.pids})
        meter.start()
        before = [await scrape_metrics(s) for s in services]
        points_end, tiers_end, rewards_end = await asyncio.gather(
            wait_counting(pconn, POINTS_ORDERS, n, ctx.args.timeout, []),
            wait_counting(tconn, TIERS_TABLE, n, ctx.args.timeout, []),
            wait_counting(rconn, REWARDS_ORDERS, n, ctx.args.timeout, samples),
        )
        # rewards is done when it has also consumed every tier.changed tiers published (its upgrade
        # gifts and tier targeting come from them); then points, which consumes them too
        rewards_caught_up = await wait_points_projected(rconn, tconn, ctx.args.timeout)
        cpu = meter.used()
        rss = meter.peak_rss_mb()
        deltas = [metrics_delta(b, await scrape_metrics(s)) for b, s in zip(before, services, strict=True)]
        points_caught_up = await wait_points_projected(pconn, tconn, ctx.args.timeout)
        rewards_published = time.time() if await wait_outbox_published(rconn, ctx.args.timeout) else None
        firsts = (
            await first_tx_start(pconn, POINTS_TABLE, "created_at"),
            await first_tx_start(tconn, "inbox", "processed_at"),
            await first_tx_start(rconn, "inbox", "processed_at"),
        )
        dones = (
            await count_rows(pconn, POINTS_ORDERS),
            await count_rows(tconn, TIERS_TABLE),
            await count_rows(rconn, REWARDS_ORDERS),
        )
        changes = await tier_changes(tconn)
        summary = await rewards_summary(rconn)
        points_inbox = await pconn.fetch("SELECT event_type, count(*) AS n FROM inbox GROUP BY 1")
        probe = await history_probe(
            rconn, orders, int(batch_figures(deltas[2], dones[2]).get("avg_batch_size") or 500)
        )
    for service, first in zip(services, firsts, strict=True):
        if first is None:
            raise RuntimeError(f"the {service.name} processed nothing:\n{service.tail()}")
    now = time.time()
    rewards_done = (
        None if rewards_end is None or rewards_caught_up is None else max(rewards_end, rewards_caught_up)
    )
    per_service: dict[str, Any] = {}
    for label, service, first, end, done, delta in zip(
        ("points", "tiers", "rewards"),
        services,
        firsts,
        (points_end, tiers_end, rewards_end),
        dones,
        deltas,
        strict=True,
    ):
        assert first is not None
        seconds = (end or now) - first
        per_service[label] = {
            "processed": done,
            "complete": end is not None,
            "ready_s": round(service.ready_s, 2),
            "seconds": round(seconds, 3),
            "orders_per_s": round(done / seconds, 1),
            **batch_figures(delta, done),
        }
    start = min(f for f in firsts if f is not None)
    per_service["rewards"]["orders_per_s_by_quarter"] = quarter_rates(samples, firsts[2] or start, n)
    per_service["rewards"]["caught_up_after_s"] = (
        None if rewards_done is None else round(rewards_done - start, 3)
    )
    all_s = max(points_end or now, tiers_end or now, rewards_done or now) - start
    return {
        "programs": len(ids),
        "orders": n,
        "complete": None not in (points_end, tiers_end, rewards_done),
        **per_service,
        "all_three": {
            "seconds": round(all_s, 3),
            "orders_per_s": round(n / all_s, 1),
            "events_handled_per_s": round(sum(dones) / all_s, 1),
        },
        "tier_changed_consumed_by_points_after_s": None
        if points_caught_up is None
        else round(points_caught_up - start, 3),
        "rewards_outbox_published_after_s": None
        if rewards_published is None
        else round(rewards_published - start, 3),
        "points_inbox": {r["event_type"]: int(r["n"]) for r in points_inbox},
        "cpu_s": cpu,
        "peak_rss_mb": rss,
        "tier_changes": changes,
        "rewards_db": summary,
        "history_query_at_end": probe,
        "note": "per service: its first batch's transaction start to count = N (points: orders, tiers: "
        "qualifying_orders, rewards: orders). rewards caught_up: also every tier.changed tiers "
        "published consumed (rewards inbox). all_three: the earliest first start to the latest done "
        "(rewards: caught up). cpu_s and peak_rss_mb until rewards caught up.",
    }


async def rewards_backlog(ctx: Context) -> dict[str, Any]:
    """The orders of the points and tiers backlog phases (same seed, so the same orders): rewards
    alone without programs, rewards alone with the program set, then points + tiers + rewards."""
    events = generated(ctx.args.orders, ctx.args.members, ctx.args.seed + 2)
    orders = orders_of(events)
    results: dict[str, Any] = {}
    print("... rewards-backlog: rewards alone, no programs", file=sys.stderr, flush=True)
    results["alone_no_programs"] = await rewards_alone(ctx, "rewards-bare", orders, programs=False)
    print("... rewards-backlog: rewards alone, programs", file=sys.stderr, flush=True)
    results["alone"] = await rewards_alone(ctx, "rewards-alone", orders, programs=True)
    print("... rewards-backlog: points + tiers + rewards", file=sys.stderr, flush=True)
    results["all_three"] = await trio_backlog(ctx, orders)
    results["orders_dated"] = [orders.first.isoformat(), orders.last.isoformat()]
    return results


# --- fed at paced rates ---------------------------------------------------------------------------

ORDER_IN_REASON = re.compile(r"\border (\S+)")
PROMOTED = "promoted to "


def gift_figures(
    received: list[Received], changes: list[Received], paced: Paced, event_of: dict[str, str]
) -> dict[str, Any]:
    """Latencies from an order's send to the ``reward.issued`` it earned. A threshold gift names its
    order in its reason; an upgrade gift ("promoted to Gold") is matched to the order that promoted
    the member through the run's tier.changed (member, tier -> figures.order_id). Three moments of
    the event: its envelope time (the rewards clock when the handler issued it, before the commit:
    a lower bound), the record's timestamp (the relay's producer, after the commit) and when our
    consumer got it (an upper bound)."""
    promoted_by = {
        (str(c.data.get("member_id")), str(c.data.get("to_tier"))): str(
            (c.data.get("figures") or {}).get("order_id")
        )
        for c in changes
    }
    out: dict[str, Any] = {}
    measures = Counter[str]()
    for kind in ("threshold", "upgrade"):
        issued, on_topic, arrived = [], [], []
        for item in received:
            if item.type != "reward.issued":
                continue
            reason = str(item.data.get("reason") or "")
            found = ORDER_IN_REASON.search(reason)
            if kind == "threshold" and found:
                order_id: str | None = found.group(1)
            elif kind == "upgrade" and not found and reason.startswith(PROMOTED):
                order_id = promoted_by.get((str(item.data.get("member_id")), reason.removeprefix(PROMOTED)))
            else:
                continue
            event_id = event_of.get(order_id or "")
            sent = paced.sent_at.get(event_id) if event_id else None
            if sent is None:
                continue
            measures[str(item.data.get("measure_id"))] += 1
            if item.time is not None:
                issued.append(1000 * (item.time - sent))
            on_topic.append(1000 * (item.timestamp - sent))
            arrived.append(1000 * (item.at - sent))
        out[kind] = {
            "events": len(arrived),
            "latency_issued_envelope": percentiles(issued),
            "latency_on_topic": percentiles(on_topic),
            "latency_received": percentiles(arrived),
        }
    out["by_measure"] = dict(measures.most_common())
    out["reward_issued_seen"] = sum(1 for item in received if item.type == "reward.issued")
    out["enrolments_seen"] = sum(1 for item in received if item.type == "program.member_enrolled")
    return out


async def sample_trio(
    paced: Paced,
    conns: tuple[asyncpg.Connection, asyncpg.Connection],
    bases: tuple[int, int],
    counted: OrderWatcher,
    samples: list[tuple[float, int, int, int, int]],
    stop: asyncio.Event,
) -> None:
    """Every second: (seconds, sent, points orders, tiers counted, rewards counted) of this run."""
    start = time.time()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        points = await count_rows(conns[0], POINTS_ORDERS) - bases[0]
        tiers = await count_rows(conns[1], TIERS_TABLE) - bases[1]
        samples.append((round(time.time() - start, 1), len(paced.sent), points, tiers, len(counted.seen)))


async def wait_counts(
    conns: tuple[asyncpg.Connection, asyncpg.Connection, asyncpg.Connection],
    targets: tuple[int, int, int],
    timeout: float,
) -> list[float | None]:
    """Until points' orders, tiers' qualifying_orders and rewards' orders reach their targets."""
    return list(
        await asyncio.gather(
            wait_for_count(conns[0], POINTS_ORDERS, targets[0], timeout),
            wait_for_count(conns[1], TIERS_TABLE, targets[1], timeout),
            wait_for_count(conns[2], REWARDS_ORDERS, targets[2], timeout),
        )
    )


async def wait_settled(
    conns: tuple[asyncpg.Connection, asyncpg.Connection, asyncpg.Connection], timeout: float
) -> bool:
    """Rewards and points have consumed every tier.changed, and rewards' events are on the topic."""
    pconn, tconn, rconn = conns
    rewards = await wait_points_projected(rconn, tconn, timeout)
    points = await wait_points_projected(pconn, tconn, timeout)
    return rewards is not None and points is not None and await wait_outbox_published(rconn, timeout)


async def trio_latency_run(
    ctx: Context,
    trio: TrioEnv,
    conns: tuple[asyncpg.Connection, asyncpg.Connection, asyncpg.Connection],
    services: tuple[Service, Service, Service],
    producer: AIOKafkaProducer,
    rate: float,
    orders: Orders,
) -> dict[str, Any]:
    pconn, tconn, rconn = conns
    n = len(orders.messages)
    paced, stop = Paced(), asyncio.Event()
    samples: list[tuple[float, int, int, int, int]] = []
    bases = (
        await count_rows(pconn, POINTS_ORDERS),
        await count_rows(tconn, TIERS_TABLE),
        await count_rows(rconn, REWARDS_ORDERS),
    )
    rewards_before = await count_rows(rconn, "rewards")
    meter = CpuMeter(
        ctx.stack, dict(zip(("points", "tiers", "rewards"), (s.pids for s in services), strict=True))
    )
    before = [await scrape_metrics(s) for s in services]
    issued = TierChangeWatcher(ctx.stack, trio.topic(REWARDS_TOPIC), client_id="loyalty-bench-rewards-watch")
    changes = TierChangeWatcher(ctx.stack, trio.topic("loyalty.tiers"))
    try:
        await issued.start()
        await changes.start()
        async with (
            connection(trio.rewards.dsn) as rwatch,
            connection(trio.points.dsn) as psample,
            connection(trio.tiers.dsn) as tsample,
        ):
            counted = OrderWatcher(rwatch, paced, orders.order_of, REWARDS_ORDERS)
            tasks = [
                asyncio.create_task(counted.run(stop)),
                asyncio.create_task(issued.run(stop)),
                asyncio.create_task(changes.run(stop)),
                asyncio.create_task(
                    sample_trio(paced, (psample, tsample), bases[:2], counted, samples, stop)
                ),
            ]
            meter.start()
            try:
                await publish_paced(producer, trio.topic("orders"), orders.messages, rate, paced)
                targets = (bases[0] + n, bases[1] + n, bases[2] + n)
                ends = await wait_counts(conns, targets, ctx.args.timeout)
                settled = await wait_settled(conns, ctx.args.timeout)
                await asyncio.sleep(0.3)  # the last reward.issued reach our consumer
            finally:
                stop.set()
                await asyncio.gather(*tasks)
    finally:
        await issued.stop()
        await changes.stop()
    cpu = meter.used()
    rss = meter.peak_rss_mb()
    deltas = [metrics_delta(b, await scrape_metrics(s)) for b, s in zip(before, services, strict=True)]
    sent_ids = list(paced.sent_at)
    window = paced.last - paced.first
    rewards_tx = await inbox_times(rconn, sent_ids)
    counted_figures = {
        "processed": len(counted.seen),
        "latency_tx_start": percentiles(
            [1000 * (rewards_tx[i] - t) for i, t in paced.sent_at.items() if i in rewards_tx]
        ),
        "latency_visible": percentiles(
            [1000 * (counted.seen[i] - t) for i, t in paced.sent_at.items() if i in counted.seen]
        ),
    }
    at_end = [s for s in samples if s[0] <= window] or samples[:1]
    now = time.time()
    per_service: dict[str, Any] = {}
    for index, label in enumerate(("points", "tiers", "rewards")):
        end = ends[index]
        done = (
            await count_rows(conns[index], (POINTS_ORDERS, TIERS_TABLE, REWARDS_ORDERS)[index]) - bases[index]
        )
        backlog_end = at_end[-1][1] - at_end[-1][2 + index] if at_end else 0
        per_service[label] = {
            "processed": done,
            "achieved_rate": round(done / ((end or now) - paced.first), 1),
            "drain_s_after_last_send": round((end or now) - paced.last, 2),
            "backlog_at_end_of_publishing": backlog_end,
            "max_backlog": max((s[1] - s[2 + index] for s in samples), default=0),
            "kept_up": end is not None and backlog_end <= rate * 0.5,
            **batch_figures(deltas[index], done),
        }
    per_service["rewards"]["order_counted"] = counted_figures
    per_service["rewards"]["gifts"] = gift_figures(issued.received, changes.received, paced, orders.event_of)
    per_service["rewards"]["rewards_recorded"] = await count_rows(rconn, "rewards") - rewards_before
    return {
        "rate": rate,
        "seconds": ctx.args.rate_seconds,
        "sent": len(sent_ids),
        "publish_rate": round(len(sent_ids) / window, 1) if window else None,
        "complete": None not in ends and settled,
        "orders_dated": [orders.first.isoformat(), orders.last.isoformat()],
        **per_service,
        "cpu_s": cpu,
        "peak_rss_mb": rss,
        "backlog_samples": samples,
        "note": "order_counted: tx_start = rewards inbox processed_at (transaction START: a lower "
        "bound); visible = first seen committed by a 20 ms poller (upper bound). gifts: from the send "
        "of the order that earned it to its reward.issued on <prefix>loyalty.rewards: "
        "issued_envelope = the event's time (the rewards clock in the handler, before the commit: a "
        "lower bound), on_topic = the record's timestamp (the relay's producer, after the commit), "
        f"received = our consumer got it (fetch_max_wait {TIER_WATCH_FETCH_WAIT_MS} ms: an upper bound). "
        "threshold: the order is named in the reward's reason; upgrade: the order whose tier.changed "
        "(figures.order_id) promoted the member. rewards_recorded = reward rows written meanwhile "
        "(compare with gifts.reward_issued_seen). Send time = time.time() before producer.send.",
    }


async def rewards_latency(ctx: Context) -> dict[str, Any]:
    """Points, tiers and rewards running, the program set in place; a history of orders first
    (members exist, some hold tiers, some were enrolled), then one paced run per --rewards-rate.
    History and runs come from one generator run (the same key accounts keep buying), each dated in
    a calendar month of its own, consecutive months ending last month."""
    trio = await new_trio_env(ctx.stack, "rewards-latency")
    history_n = ctx.args.rewards_history
    run_sizes = [int(rate * ctx.args.rate_seconds) for rate in ctx.args.rewards_rate]
    events = generated(history_n + sum(run_sizes), ctx.args.members, ctx.args.seed + 90)
    cuts, offset = [], 0
    for size in ([history_n] if history_n else []) + run_sizes:
        cuts.append(events[offset : offset + size])
        offset += size
    months = month_starts(len(cuts), datetime.now(UTC))
    segments = [
        orders_of(redated(cut, month + timedelta(hours=1))) for cut, month in zip(cuts, months, strict=True)
    ]
    history = segments.pop(0) if history_n else None
    results: dict[str, Any] = {}
    async with (
        connection(trio.points.dsn) as pconn,
        connection(trio.tiers.dsn) as tconn,
        connection(trio.rewards.dsn) as rconn,
        trio_services(ctx, trio) as services,
        producer_for(ctx.stack) as producer,
    ):
        conns = (pconn, tconn, rconn)
        results["programs"] = await set_up_programs(services[2], months[0])
        if history is not None:
            started = time.time()
            await publish_all(producer, trio.topic("orders"), history.messages)
            ends = await wait_counts(conns, (history_n, history_n, history_n), ctx.args.timeout)
            if None in ends or not await wait_settled(conns, ctx.args.timeout):
                raise RuntimeError("the services did not process the history")
            await asyncio.sleep(1.0)  # all idle
            results["history"] = {
                "orders": history_n,
                "orders_dated": [history.first.isoformat(), history.last.isoformat()],
                "seconds": round(max(e or 0.0 for e in ends) - started, 2),
                "ready_s": {s.name: round(s.ready_s, 2) for s in services},
                "tier_changes": await tier_changes(tconn),
                "rewards_db": await rewards_summary(rconn),
            }
        runs = []
        for rate, run in zip(ctx.args.rewards_rate, segments, strict=True):
            print(f"... rewards-latency @ {rate:g}/s", file=sys.stderr, flush=True)
            runs.append(await trio_latency_run(ctx, trio, conns, services, producer, rate, run))
        results["runs"] = runs
        results["rewards_db_at_end"] = await rewards_summary(rconn)
    return results
