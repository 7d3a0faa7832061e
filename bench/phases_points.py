"""The points phases: the reference loop (throughput and latency floor), the points service draining
a backlog and fed live, latency at a paced rate, balance reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.config import HOST, READY_TIMEOUT_S, TARGET_READ_RATE, WARM_UP_EVENTS
from bench.load import (
    ReadSpec,
    bare_route,
    make_messages,
    producer_for,
    publish_all,
    publish_paced,
    read_path,
    run_reads,
    run_wrk,
)
from bench.measure import (
    CommitWatcher,
    CpuMeter,
    Paced,
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
from bench.services import Service, points_service
from bench.stack import Context, PhaseEnv, Stack, new_phase_env
from loyalty_shared.settings import ConsumerSettings

# --- warm-up --------------------------------------------------------------------------------------


async def warm_up(producer: AIOKafkaProducer, env: PhaseEnv, conn: asyncpg.Connection, seed: int) -> None:
    """A few events through the running service, so it has joined its group before we measure."""
    await publish_all(producer, env.topic("orders"), make_messages(WARM_UP_EVENTS, 50, seed))
    if await wait_for_count(conn, "ledger_entries", WARM_UP_EVENTS, READY_TIMEOUT_S) is None:
        raise RuntimeError("the service did not process the warm-up events")


# --- phase 1: the reference loop ------------------------------------------------------------------


REF_TABLE = """CREATE TABLE ref_points (
    event_id text PRIMARY KEY, member_id text NOT NULL, amount numeric(18, 4) NOT NULL,
    points integer NOT NULL)"""


REF_INSERT = """INSERT INTO ref_points (event_id, member_id, amount, points)
    SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::int[])
    ON CONFLICT DO NOTHING"""


def decode_paid(value: bytes) -> tuple[str, str, Decimal, int]:
    event = json.loads(value)
    amount = Decimal(event["data"]["amount"])
    return event["id"], event["data"]["member_id"], amount, math.floor(amount)


async def insert_batch(conn: asyncpg.Connection, rows: list[tuple[str, str, Decimal, int]]) -> None:
    ids, members, amounts, points = (list(column) for column in zip(*rows, strict=True))
    async with conn.transaction():
        await conn.execute(REF_INSERT, ids, members, amounts, points)


OnCommit = Callable[[list[str], float], None]


def reference_fetch_settings() -> dict[str, int]:
    """The service's own consumer settings (and LOYALTY_CONSUMER_* overrides), so both loops poll alike."""
    settings = ConsumerSettings()
    return {
        "max_records": settings.batch_max_records,
        "poll_timeout_ms": settings.poll_timeout_ms,
        # aiokafka's default where the service does not set it
        "fetch_max_wait_ms": getattr(settings, "fetch_max_wait_ms", 500),
    }


async def reference_consume(
    stack: Stack, env: PhaseEnv, target: int, timeout: float, on_commit: OnCommit | None = None
) -> tuple[int, float]:
    """getmany → one multi-row INSERT in one transaction → commit offsets; returns (rows, seconds).

    ``on_commit(event_ids, time.time())`` is called right after each database commit."""
    conn = await asyncpg.connect(env.dsn)
    fetch = reference_fetch_settings()
    consumer = AIOKafkaConsumer(
        env.topic("orders"),
        bootstrap_servers=stack.bootstrap,
        group_id=env.prefix + "reference",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=fetch["max_records"],
        fetch_max_wait_ms=fetch["fetch_max_wait_ms"],
        isolation_level="read_committed",
    )
    await consumer.start()
    done, first = 0, 0.0
    deadline = time.monotonic() + timeout
    try:
        while done < target and time.monotonic() < deadline:
            batch = await consumer.getmany(
                timeout_ms=fetch["poll_timeout_ms"], max_records=fetch["max_records"]
            )
            if not batch:
                continue
            first = first or time.perf_counter()
            rows = [decode_paid(r.value) for records in batch.values() for r in records]
            await insert_batch(conn, rows)
            if on_commit is not None:
                on_commit([row[0] for row in rows], time.time())
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
            done += sum(len(records) for records in batch.values())
        elapsed = time.perf_counter() - first
        return await count_rows(conn, "ref_points"), elapsed
    finally:
        await consumer.stop()
        await conn.close()


async def phase_reference(ctx: Context) -> dict[str, Any]:
    env = await new_phase_env(ctx.stack, "reference", migrate=False)
    async with connection(env.dsn) as conn:
        await conn.execute(REF_TABLE)
    messages = make_messages(ctx.args.orders, ctx.args.members, ctx.args.seed + 1)
    async with producer_for(ctx.stack) as producer:
        publish_s = await publish_all(producer, env.topic("orders"), messages)
    meter = CpuMeter(ctx.stack)
    meter.start()
    rows, seconds = await reference_consume(ctx.stack, env, len(messages), ctx.args.timeout)
    return {
        "orders": len(messages),
        "rows": rows,
        "complete": rows == len(messages),
        "seconds": round(seconds, 3),
        "orders_per_s": round(rows / seconds, 1),
        "publish_per_s": round(len(messages) / publish_s, 1),
        "consumer_settings": reference_fetch_settings(),
        "cpu_s": meter.used(),
    }


async def reference_latency(ctx: Context, rate: float, index: int) -> dict[str, Any]:
    """The reference loop fed at a paced rate: the latency floor of broker + consumer + one INSERT."""
    env = await new_phase_env(ctx.stack, f"reflatency{index}", migrate=False)
    async with connection(env.dsn) as conn:
        await conn.execute(REF_TABLE)
    messages = make_messages(int(rate * ctx.args.rate_seconds), ctx.args.members, ctx.args.seed + 60 + index)
    paced, warm = Paced(), asyncio.Event()
    lat: list[float] = []

    def on_commit(ids: list[str], now: float) -> None:
        lat.extend(1000 * (now - paced.sent_at[i]) for i in ids if i in paced.sent_at)
        warm.set()

    target = WARM_UP_EVENTS + len(messages)
    consume = asyncio.create_task(reference_consume(ctx.stack, env, target, ctx.args.timeout, on_commit))
    try:
        async with producer_for(ctx.stack) as producer:
            await publish_all(producer, env.topic("orders"), make_messages(WARM_UP_EVENTS, 50, ctx.args.seed))
            await asyncio.wait_for(warm.wait(), READY_TIMEOUT_S)
            await publish_paced(producer, env.topic("orders"), messages, rate, paced)
        rows, _ = await consume
    finally:
        consume.cancel()
    sent = len(paced.sent_at)
    return {
        "rate": rate,
        "sent": sent,
        "publish_rate": round(sent / (paced.last - paced.first), 1),
        "complete": rows == target,
        "latency_commit": percentiles(lat),
        "note": "commit = time.time() right after the INSERT transaction committed",
    }


async def phase_reference_latency(ctx: Context) -> list[dict[str, Any]]:
    return [await reference_latency(ctx, rate, i) for i, rate in enumerate(ctx.args.rate)]


# --- phase 2: backlog drain and live publishing ---------------------------------------------------


async def phase_backlog(ctx: Context) -> dict[str, Any]:
    """Publish N orders, then start the service: a backlog drain from the first batch to the last."""
    env = await new_phase_env(ctx.stack, "backlog")
    messages = make_messages(ctx.args.orders, ctx.args.members, ctx.args.seed + 2)
    async with producer_for(ctx.stack) as producer:
        await publish_all(producer, env.topic("orders"), messages)
    async with (
        connection(env.dsn) as conn,
        points_service(ctx.stack, env, ctx.workdir, ctx.started) as service,
    ):
        meter = CpuMeter(ctx.stack, {"service": service.pids})
        meter.start()
        before = await scrape_metrics(service)
        end = await wait_for_count(conn, "ledger_entries", len(messages), ctx.args.timeout)
        cpu = meter.used()
        rss = meter.peak_rss_mb()
        delta = metrics_delta(before, await scrape_metrics(service))
        first = await conn.fetchval("SELECT extract(epoch FROM min(created_at)) FROM ledger_entries")
        done = await count_rows(conn, "ledger_entries")
    if first is None:
        raise RuntimeError(f"the service processed nothing:\n{service.tail()}")
    seconds = (end or time.time()) - float(first)
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
        "note": "from the first batch's transaction start (min ledger created_at) to count = N",
    }


async def phase_live(ctx: Context) -> dict[str, Any]:
    """With the service running and warmed up, publish N orders as fast as possible."""
    env = await new_phase_env(ctx.stack, "live")
    messages = make_messages(ctx.args.orders, ctx.args.members, ctx.args.seed + 3)
    async with (
        connection(env.dsn) as conn,
        points_service(ctx.stack, env, ctx.workdir, ctx.started) as service,
        producer_for(ctx.stack) as producer,
    ):
        await warm_up(producer, env, conn, ctx.args.seed + 30)
        meter = CpuMeter(ctx.stack, {"service": service.pids})
        meter.start()
        before = await scrape_metrics(service)
        start = time.time()
        publish_s = await publish_all(producer, env.topic("orders"), messages)
        target = len(messages) + WARM_UP_EVENTS
        end = await wait_for_count(conn, "ledger_entries", target, ctx.args.timeout)
        cpu = meter.used()
        rss = meter.peak_rss_mb()
        delta = metrics_delta(before, await scrape_metrics(service))
        done = await count_rows(conn, "ledger_entries") - WARM_UP_EVENTS
    seconds = (end or time.time()) - start
    return {
        "orders": len(messages),
        "processed": done,
        "complete": end is not None,
        "publish_s": round(publish_s, 3),
        "seconds": round(seconds, 3),
        "orders_per_s": round(done / seconds, 1),
        **batch_figures(delta, done),
        "cpu_s": cpu,
        "peak_rss_mb": rss,
        "note": "from the first publish to count = N; publishing competes with the service for CPU",
    }


# --- phase 3: latency at a fixed rate -------------------------------------------------------------


async def sample_backlog(
    paced: Paced, watcher: CommitWatcher, samples: list[tuple[float, int, int]], stop: asyncio.Event
) -> None:
    start = time.time()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        samples.append((round(time.time() - start, 1), len(paced.sent_at), len(watcher.seen)))


async def run_paced(
    ctx: Context, env: PhaseEnv, conn: asyncpg.Connection, producer: AIOKafkaProducer, rate: float, seed: int
) -> tuple[Paced, CommitWatcher, list[tuple[float, int, int]], float | None]:
    messages = make_messages(int(rate * ctx.args.rate_seconds), ctx.args.members, seed)
    paced, stop = Paced(), asyncio.Event()
    samples: list[tuple[float, int, int]] = []
    target = await count_rows(conn, "ledger_entries") + len(messages)
    async with connection(env.dsn) as watch_conn:
        watcher = CommitWatcher(watch_conn)
        await watcher.skip_existing()
        tasks = [
            asyncio.create_task(watcher.run(stop)),
            asyncio.create_task(sample_backlog(paced, watcher, samples, stop)),
        ]
        try:
            await publish_paced(producer, env.topic("orders"), messages, rate, paced)
            end = await wait_for_count(conn, "ledger_entries", target, ctx.args.timeout)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    return paced, watcher, samples, end


def backlog_at(samples: list[tuple[float, int, int]], moment: float) -> int:
    before = [s for s in samples if s[0] <= moment] or samples[:1]
    return before[-1][1] - before[-1][2] if before else 0


async def phase_latency(
    ctx: Context, env: PhaseEnv, conn: asyncpg.Connection, service: Service, rate: float, seed: int
) -> dict[str, Any]:
    meter = CpuMeter(ctx.stack, {"service": service.pids})
    meter.start()
    before = await scrape_metrics(service)
    async with producer_for(ctx.stack) as producer:
        paced, watcher, samples, end = await run_paced(ctx, env, conn, producer, rate, seed)
    cpu = meter.used()
    rss = meter.peak_rss_mb()
    delta = metrics_delta(before, await scrape_metrics(service))
    sent = len(paced.sent_at)
    publish_window = paced.last - paced.first
    figures = latency_figures(paced, await commit_times(conn), watcher.seen)
    backlog_end = backlog_at(samples, publish_window)
    return {
        "rate": rate,
        "seconds": ctx.args.rate_seconds,
        "sent": sent,
        "publish_rate": round(sent / publish_window, 1) if publish_window else None,
        "achieved_rate": round(figures["processed"] / ((end or time.time()) - paced.first), 1),
        "complete": end is not None,
        "drain_s_after_last_send": round((end or time.time()) - paced.last, 2),
        "backlog_at_end_of_publishing": backlog_end,
        "max_backlog": max((s[1] - s[2] for s in samples), default=0),
        "kept_up": end is not None and backlog_end <= rate * 0.5,
        **figures,
        **batch_figures(delta, figures["processed"]),
        "cpu_s": cpu,
        "peak_rss_mb": rss,
        "backlog_samples": samples,
        "note": "tx_start = ledger created_at (now() = transaction START, so it omits the batch's "
        "own processing and commit: a lower bound); visible = first seen by a 20 ms poller "
        "after commit (an upper bound). Send time = time.time() before producer.send (linger 5 ms).",
    }


# --- phase 4: balance reads -----------------------------------------------------------------------


async def phase_reads(ctx: Context, service: Service, members: list[str]) -> dict[str, Any]:
    port = int(service.url.rsplit(":", 1)[1])
    results: dict[str, Any] = {}
    async with bare_route(ctx) as bare_port:
        spec = ReadSpec("raw", HOST, bare_port, members, ctx.args.reads_seconds, ctx.args.read_concurrency)
        results["bare"] = await run_reads(ctx, spec, ctx.started)
    paced = ReadSpec(
        "raw", HOST, port, members, ctx.args.reads_seconds, ctx.args.read_concurrency, TARGET_READ_RATE
    )
    results["paced"] = await run_reads(ctx, paced, ctx.started)
    for client in ctx.args.read_clients:
        spec = ReadSpec(client, HOST, port, members, ctx.args.reads_seconds, ctx.args.read_concurrency)
        meter = CpuMeter(ctx.stack, {"service": service.pids})
        meter.start()
        before = await scrape_metrics(service)
        result = await run_reads(ctx, spec, ctx.started)
        delta = metrics_delta(before, await scrape_metrics(service))
        result["cpu_s"] = meter.used()
        result["peak_rss_mb"] = meter.peak_rss_mb()
        if delta["http_requests"]:
            result["server_mean_ms"] = round(1000 * delta["http_seconds"] / delta["http_requests"], 2)
        results[client] = result
    url = f"{service.url}{read_path(members[0])}"
    wrk = await asyncio.to_thread(run_wrk, url, ctx.args.reads_seconds, ctx.args.read_concurrency)
    results["wrk"] = wrk or "wrk not installed"
    results["members"] = len(members)
    results["note"] = "one uvicorn worker; the load generator runs on the same 2 cores"
    return results


async def phase_latency_and_reads(ctx: Context, phases: list[str]) -> dict[str, Any]:
    env = await new_phase_env(ctx.stack, "latency")
    results: dict[str, Any] = {}
    async with (
        connection(env.dsn) as conn,
        points_service(ctx.stack, env, ctx.workdir, ctx.started) as service,
    ):
        async with producer_for(ctx.stack) as producer:
            await warm_up(producer, env, conn, ctx.args.seed + 40)
        if "latency" in phases:
            results["latency"] = [
                await phase_latency(ctx, env, conn, service, rate, ctx.args.seed + 50 + i)
                for i, rate in enumerate(ctx.args.rate)
            ]
        if "reads" in phases:
            members = [row["member_id"] for row in await conn.fetch("SELECT member_id FROM accounts")]
            results["reads"] = await phase_reads(ctx, service, members)
    return results
