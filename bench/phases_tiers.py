"""The points + tiers phases: tiers alone draining a backlog, then points and tiers (own processes and
databases, one topic prefix) draining the same backlog, then both fed at paced rates."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.config import (
    COUNT_POLL_S,
    POINTS_ORDERS,
    POINTS_TABLE,
    TIER_WATCH_FETCH_WAIT_MS,
    TIERS,
    TIERS_TABLE,
    Message,
)
from bench.load import make_messages, make_orders, producer_for, publish_all, publish_paced
from bench.measure import (
    CommitWatcher,
    CpuMeter,
    OrderWatcher,
    Paced,
    Received,
    TierChangeWatcher,
    batch_figures,
    commit_times,
    connection,
    count_rows,
    latency_figures,
    metrics_delta,
    percentiles,
    scrape_metrics,
    wait_for_count,
)
from bench.services import Service, both_services, service_process
from bench.stack import Context, DuoEnv, new_duo_env, new_phase_env

# --- tiers alone, and both draining one backlog ---------------------------------------------------


async def first_tx_start(conn: asyncpg.Connection, table: str, column: str) -> float | None:
    value = await conn.fetchval(f"SELECT extract(epoch FROM min({column})) FROM {table}")
    return None if value is None else float(value)


async def tier_changes(conn: asyncpg.Connection) -> dict[str, Any]:
    """What the tiers database recorded: joins (first order: entry tier), promotions, tiers held."""
    joins = await conn.fetchval("SELECT count(*) FROM tier_history WHERE from_tier IS NULL")
    moves = await conn.fetch(
        "SELECT from_tier, to_tier, count(*) AS n FROM tier_history WHERE from_tier IS NOT NULL "
        "GROUP BY 1, 2 ORDER BY 3 DESC"
    )
    held = await conn.fetch("SELECT tier, count(*) AS n FROM members GROUP BY 1 ORDER BY 2 DESC")
    return {
        "joins": int(joins),
        "promotions": sum(int(r["n"]) for r in moves),
        "promotions_by_step": {f"{r['from_tier']}->{r['to_tier']}": int(r["n"]) for r in moves},
        "members_by_tier": {r["tier"]: int(r["n"]) for r in held},
    }


async def wait_outbox_published(conn: asyncpg.Connection, timeout: float) -> bool:
    """Until the relay has published every outbox row (tier.changed) to the broker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
            return True
        await asyncio.sleep(COUNT_POLL_S)
    return False


async def tiers_solo_backlog(ctx: Context) -> dict[str, Any]:
    """The tiers service alone drains the orders of the points backlog phase (same seed)."""
    env = await new_phase_env(ctx.stack, "tiers-backlog", package=TIERS)
    messages = make_messages(ctx.args.orders, ctx.args.members, ctx.args.seed + 2)
    async with producer_for(ctx.stack) as producer:
        await publish_all(producer, env.topic("orders"), messages)
    async with (
        connection(env.dsn) as conn,
        service_process(ctx.stack, env, ctx.workdir, ctx.started, TIERS) as service,
    ):
        meter = CpuMeter(ctx.stack, {"service": service.pids})
        meter.start()
        before = await scrape_metrics(service)
        end = await wait_for_count(conn, TIERS_TABLE, len(messages), ctx.args.timeout)
        cpu = meter.used()
        rss = meter.peak_rss_mb()
        delta = metrics_delta(before, await scrape_metrics(service))
        first = await first_tx_start(conn, "inbox", "processed_at")
        done = await count_rows(conn, TIERS_TABLE)
        changes = await tier_changes(conn)
    if first is None:
        raise RuntimeError(f"the tiers service processed nothing:\n{service.tail()}")
    seconds = (end or time.time()) - first
    return {
        "orders": len(messages),
        "processed": done,
        "complete": end is not None,
        "ready_s": round(service.ready_s, 2),
        "seconds": round(seconds, 3),
        "orders_per_s": round(done / seconds, 1),
        **batch_figures(delta, done),
        "cpu_s": cpu,
        "peak_rss_mb": rss,
        "tier_changes": changes,
        "note": "from the first batch's transaction start (min inbox processed_at) to "
        "count(qualifying_orders) = N",
    }


async def both_backlog(ctx: Context) -> dict[str, Any]:
    """Publish N orders, then start points and tiers together: both drain the same backlog."""
    duo = await new_duo_env(ctx.stack, "both-backlog")
    messages = make_messages(ctx.args.orders, ctx.args.members, ctx.args.seed + 2)
    n = len(messages)
    async with producer_for(ctx.stack) as producer:
        await publish_all(producer, duo.topic("orders"), messages)
    async with (
        connection(duo.points.dsn) as pconn,
        connection(duo.tiers.dsn) as tconn,
        both_services(ctx, duo) as (points, tiers),
    ):
        meter = CpuMeter(ctx.stack, {"points": points.pids, "tiers": tiers.pids})
        meter.start()
        before = [await scrape_metrics(points), await scrape_metrics(tiers)]
        points_end, tiers_end = await asyncio.gather(
            wait_for_count(pconn, POINTS_ORDERS, n, ctx.args.timeout),
            wait_for_count(tconn, TIERS_TABLE, n, ctx.args.timeout),
        )
        cpu = meter.used()
        rss = meter.peak_rss_mb()
        deltas = [
            metrics_delta(before[0], await scrape_metrics(points)),
            metrics_delta(before[1], await scrape_metrics(tiers)),
        ]
        projected_at_end = await pconn.fetchval(
            "SELECT count(*) FROM inbox WHERE event_type = 'tier.changed'"
        )
        projected_all = await wait_points_projected(pconn, tconn, ctx.args.timeout)
        points_first = await first_tx_start(pconn, POINTS_TABLE, "created_at")
        tiers_first = await first_tx_start(tconn, "inbox", "processed_at")
        points_done = await count_rows(pconn, POINTS_ORDERS)
        tiers_done = await count_rows(tconn, TIERS_TABLE)
        changes = await tier_changes(tconn)
    if points_first is None or tiers_first is None:
        which = points if points_first is None else tiers
        raise RuntimeError(f"the {which.name} processed nothing:\n{which.tail()}")
    now = time.time()
    per_service = {}
    for label, service, first, end, done, delta in (
        ("points", points, points_first, points_end, points_done, deltas[0]),
        ("tiers", tiers, tiers_first, tiers_end, tiers_done, deltas[1]),
    ):
        seconds = (end or now) - first
        per_service[label] = {
            "processed": done,
            "complete": end is not None,
            "ready_s": round(service.ready_s, 2),
            "seconds": round(seconds, 3),
            "orders_per_s": round(done / seconds, 1),
            **batch_figures(delta, done),
        }
    start = min(points_first, tiers_first)
    both_s = max(points_end or now, tiers_end or now) - start
    return {
        "orders": n,
        "complete": points_end is not None and tiers_end is not None,
        **per_service,
        "both": {
            "seconds": round(both_s, 3),
            "orders_per_s": round(n / both_s, 1),
            "events_handled_per_s": round((points_done + tiers_done) / both_s, 1),
        },
        "cpu_s": cpu,
        "peak_rss_mb": rss,
        "tier_changes": changes,
        "tier_changed_consumed_by_points": {
            "when_both_done": int(projected_at_end),
            "all_after_s": None if projected_all is None else round(projected_all - start, 3),
        },
        "note": "per service: its first batch's transaction start to count = N; both: the earlier "
        "first start to the later count = N. Points also consumes the tier.changed events tiers "
        "publishes meanwhile (its own extra work); all_after_s: from the same start until points has "
        "consumed every one of them.",
    }


# --- both fed at paced rates ----------------------------------------------------------------------


def tier_changed_figures(
    received: list[Received], paced: Paced, event_of: dict[str, str], projected: dict[str, float]
) -> dict[str, Any]:
    """Latencies from an order's send to the tier.changed it caused, split into promotions (a tier
    above the one held) and joins (a member's first order: the entry tier); and to the points
    service's transaction that consumed it (``projected``: tier.changed id -> that transaction's start)."""
    out: dict[str, Any] = {}
    for kind in ("promotion", "join"):
        on_topic, arrived, in_points, steps = [], [], [], Counter[str]()
        for item in received:
            is_join = item.data.get("from_tier") is None
            if is_join != (kind == "join"):
                continue
            event_id = event_of.get(str((item.data.get("figures") or {}).get("order_id")))
            sent = paced.sent_at.get(event_id) if event_id else None
            if sent is None:
                continue
            on_topic.append(1000 * (item.timestamp - sent))
            arrived.append(1000 * (item.at - sent))
            if item.event_id in projected:
                in_points.append(1000 * (projected[item.event_id] - sent))
            steps[f"{item.data.get('from_tier')}->{item.data.get('to_tier')}"] += 1
        out[kind] = {
            "events": len(arrived),
            "latency_on_topic": percentiles(on_topic),
            "latency_received": percentiles(arrived),
            "latency_projected_by_points_tx_start": percentiles(in_points),
            **({"steps": dict(steps.most_common())} if kind == "promotion" else {}),
        }
    return out


async def recorded_changes(conn: asyncpg.Connection, order_ids: list[str]) -> dict[str, int]:
    """Promotions and joins the tiers database recorded for these orders."""
    rows = await conn.fetch(
        "SELECT from_tier IS NULL AS join, count(*) AS n FROM tier_history "
        "WHERE figures->>'order_id' = ANY($1::text[]) GROUP BY 1",
        order_ids,
    )
    counts = {bool(r["join"]): int(r["n"]) for r in rows}
    return {"promotions": counts.get(False, 0), "joins": counts.get(True, 0)}


async def inbox_times(conn: asyncpg.Connection, event_ids: list[str]) -> dict[str, float]:
    rows = await conn.fetch(
        "SELECT event_id, extract(epoch FROM processed_at) AS at FROM inbox WHERE event_id = ANY($1::text[])",
        event_ids,
    )
    return {row["event_id"]: float(row["at"]) for row in rows}


async def wait_points_projected(
    pconn: asyncpg.Connection, tconn: asyncpg.Connection, timeout: float
) -> float | None:
    """Until the points service has consumed every tier.changed the tiers service published;
    returns time.time() then, or None on timeout."""
    if not await wait_outbox_published(tconn, timeout):
        return None
    total = int(await tconn.fetchval("SELECT count(*) FROM outbox"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = await pconn.fetchval("SELECT count(*) FROM inbox WHERE event_type = 'tier.changed'")
        if int(done) >= total:
            return time.time()
        await asyncio.sleep(COUNT_POLL_S)
    return None


async def sample_both(
    paced: Paced,
    counted: OrderWatcher,
    ledger: CommitWatcher,
    samples: list[tuple[float, int, int, int]],
    stop: asyncio.Event,
) -> None:
    """Every second: (seconds, sent, counted by tiers, in the points ledger)."""
    start = time.time()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        samples.append((round(time.time() - start, 1), len(paced.sent), len(counted.seen), len(ledger.seen)))


async def both_latency_run(
    ctx: Context,
    duo: DuoEnv,
    conns: tuple[asyncpg.Connection, asyncpg.Connection],
    services: tuple[Service, Service],
    producer: AIOKafkaProducer,
    rate: float,
    orders: tuple[list[Message], dict[str, str]],
) -> dict[str, Any]:
    pconn, tconn = conns
    points, tiers = services
    messages, order_of = orders
    event_of = {order_of[event_id]: event_id for _, event_id, _ in messages}
    paced, stop = Paced(), asyncio.Event()
    samples: list[tuple[float, int, int, int]] = []
    points_target = await count_rows(pconn, POINTS_TABLE) + len(messages)
    tiers_target = await count_rows(tconn, TIERS_TABLE) + len(messages)
    meter = CpuMeter(ctx.stack, {"points": points.pids, "tiers": tiers.pids})
    before = [await scrape_metrics(points), await scrape_metrics(tiers)]
    changes = TierChangeWatcher(ctx.stack, duo.topic("loyalty.tiers"))
    try:
        await changes.start()
        async with connection(duo.points.dsn) as pwatch, connection(duo.tiers.dsn) as twatch:
            ledger = CommitWatcher(pwatch)
            await ledger.skip_existing()
            counted = OrderWatcher(twatch, paced, order_of)
            tasks = [
                asyncio.create_task(ledger.run(stop)),
                asyncio.create_task(counted.run(stop)),
                asyncio.create_task(changes.run(stop)),
                asyncio.create_task(sample_both(paced, counted, ledger, samples, stop)),
            ]
            meter.start()
            try:
                await publish_paced(producer, duo.topic("orders"), messages, rate, paced)
                points_end, tiers_end = await asyncio.gather(
                    wait_for_count(pconn, POINTS_TABLE, points_target, ctx.args.timeout),
                    wait_for_count(tconn, TIERS_TABLE, tiers_target, ctx.args.timeout),
                )
                published = await wait_points_projected(pconn, tconn, ctx.args.timeout) is not None
                await asyncio.sleep(0.3)  # the last tier.changed reach our consumer
            finally:
                stop.set()
                await asyncio.gather(*tasks)
    finally:
        await changes.stop()
    cpu = meter.used()
    rss = meter.peak_rss_mb()
    deltas = [
        metrics_delta(before[0], await scrape_metrics(points)),
        metrics_delta(before[1], await scrape_metrics(tiers)),
    ]
    sent_ids = list(paced.sent_at)
    window = paced.last - paced.first
    tiers_tx = await inbox_times(tconn, sent_ids)
    tiers_counted = {
        "processed": len(counted.seen),
        "latency_tx_start": percentiles(
            [1000 * (tiers_tx[i] - t) for i, t in paced.sent_at.items() if i in tiers_tx]
        ),
        "latency_visible": percentiles(
            [1000 * (counted.seen[i] - t) for i, t in paced.sent_at.items() if i in counted.seen]
        ),
    }
    points_ledger = latency_figures(paced, await commit_times(pconn), ledger.seen)
    at_end = [s for s in samples if s[0] <= window] or samples[:1]
    tiers_backlog_end = at_end[-1][1] - at_end[-1][2] if at_end else 0
    points_backlog_end = at_end[-1][1] - at_end[-1][3] if at_end else 0
    now = time.time()
    return {
        "rate": rate,
        "seconds": ctx.args.rate_seconds,
        "sent": len(sent_ids),
        "publish_rate": round(len(sent_ids) / window, 1) if window else None,
        "complete": points_end is not None and tiers_end is not None and published,
        "tiers": {
            "achieved_rate": round(len(counted.seen) / ((tiers_end or now) - paced.first), 1),
            "drain_s_after_last_send": round((tiers_end or now) - paced.last, 2),
            "backlog_at_end_of_publishing": tiers_backlog_end,
            "max_backlog": max((s[1] - s[2] for s in samples), default=0),
            "kept_up": tiers_end is not None and tiers_backlog_end <= rate * 0.5,
            "order_counted": tiers_counted,
            "tier_changed": tier_changed_figures(
                changes.received,
                paced,
                event_of,
                await inbox_times(pconn, [item.event_id for item in changes.received]),
            ),
            "recorded": await recorded_changes(tconn, [order_of[i] for i in sent_ids]),
            **batch_figures(deltas[1], len(counted.seen)),
        },
        "points": {
            "achieved_rate": round(points_ledger["processed"] / ((points_end or now) - paced.first), 1),
            "drain_s_after_last_send": round((points_end or now) - paced.last, 2),
            "backlog_at_end_of_publishing": points_backlog_end,
            "kept_up": points_end is not None and points_backlog_end <= rate * 0.5,
            **points_ledger,
            **batch_figures(deltas[0], points_ledger["processed"]),
        },
        "cpu_s": cpu,
        "peak_rss_mb": rss,
        "backlog_samples": samples,
        "note": "order_counted: tx_start = tiers inbox processed_at (transaction START: a lower bound); "
        "visible = first seen committed by a 20 ms poller (upper bound). tier_changed: on_topic = the "
        "record's timestamp, stamped by the relay's producer when it sends (lower bound); received = "
        f"our consumer got it (fetch_max_wait {TIER_WATCH_FETCH_WAIT_MS} ms: upper bound). Promotions "
        "only; joins = a member's first order (entry tier). projected_by_points_tx_start: the points "
        "service's transaction that consumed the tier.changed (inbox processed_at, its START). "
        "recorded = tier_history rows of these orders (compare with tier_changed.*.events). Send "
        "time = time.time() before producer.send.",
    }


async def both_latency(ctx: Context) -> dict[str, Any]:
    """Points and tiers running; a history of orders first (members exist, some hold tiers), then
    one paced run per --tiers-rate. History and runs come from one generator run, so the same key
    accounts keep buying and climb the ladder."""
    duo = await new_duo_env(ctx.stack, "both-latency")
    history_n = ctx.args.tiers_history
    run_sizes = [int(rate * ctx.args.rate_seconds) for rate in ctx.args.tiers_rate]
    messages, order_of = make_orders(history_n + sum(run_sizes), ctx.args.members, ctx.args.seed + 80)
    history = messages[:history_n]
    results: dict[str, Any] = {}
    async with (
        connection(duo.points.dsn) as pconn,
        connection(duo.tiers.dsn) as tconn,
        both_services(ctx, duo) as (points, tiers),
        producer_for(ctx.stack) as producer,
    ):
        started = time.time()
        await publish_all(producer, duo.topic("orders"), history)
        ends = await asyncio.gather(
            wait_for_count(pconn, POINTS_TABLE, history_n, ctx.args.timeout),
            wait_for_count(tconn, TIERS_TABLE, history_n, ctx.args.timeout),
        )
        if None in ends or await wait_points_projected(pconn, tconn, ctx.args.timeout) is None:
            raise RuntimeError("the services did not process the history")
        await asyncio.sleep(1.0)  # both idle
        results["history"] = {
            "orders": history_n,
            "seconds": round(max(e or 0.0 for e in ends) - started, 2),
            "ready_s": {"points": round(points.ready_s, 2), "tiers": round(tiers.ready_s, 2)},
            "tier_changes": await tier_changes(tconn),
        }
        runs, offset = [], history_n
        for rate, size in zip(ctx.args.tiers_rate, run_sizes, strict=True):
            print(f"... both-latency @ {rate:g}/s", file=sys.stderr, flush=True)
            chunk = messages[offset : offset + size]
            offset += size
            runs.append(
                await both_latency_run(
                    ctx, duo, (pconn, tconn), (points, tiers), producer, rate, (chunk, order_of)
                )
            )
        results["runs"] = runs
        results["tier_changes_at_end"] = await tier_changes(tconn)
    return results
